"""Map/query splits of a real photo set (even images map, odd images query), benched with
every localization method.

    .venv/bin/python tools/real_split.py --scene ../shared/data/strecha_dev/fountain-P11 \
        --out out/real/fountain-P11 [--bench] [--rebuild]

A scene folder holds images/, camera.yaml and poses.tum (world_from_camera, one line per
image in name order), as ../shared/data/strecha_dev does. The split links the photos
(symlinks: nothing is copied) into OUT/mapping and OUT/query, each with its camera.yaml and
its share of the poses: the layout `pram bench --dataset` reads. With --bench it runs
`pram bench --dataset OUT --out OUT/bench` (building the map, the recognizer and the
retrieval database in OUT when missing; --rebuild deletes them first). Commands run as
`python -m pram_ros.cli` with this interpreter, so the working directory chooses the code
measured.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BUILT = ("map.npz", "map.recognizer.safetensors", "map.retrieval.npz")


def split(scene: Path, out: Path, query_parity: int = 1) -> dict[str, Path]:
    """OUT/mapping and OUT/query: even and odd images (by name order) with their poses."""
    images = sorted(p for p in (scene / "images").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    poses = [line for line in (scene / "poses.tum").read_text().splitlines() if line.strip() and line[0] != "#"]
    if len(poses) != len(images):
        raise SystemExit(f"{scene / 'poses.tum'}: {len(poses)} poses for {len(images)} images")
    folders = {}
    for part, parity in (("mapping", 1 - query_parity), ("query", query_parity)):
        folder = out / part
        (folder / "images").mkdir(parents=True, exist_ok=True)
        for stale in (folder / "images").iterdir():
            stale.unlink()
        keep = [i for i in range(len(images)) if i % 2 == parity]
        for i in keep:
            (folder / "images" / images[i].name).symlink_to(images[i].resolve())
        camera = folder / "camera.yaml"
        camera.unlink(missing_ok=True)
        camera.symlink_to((scene / "camera.yaml").resolve())
        (folder / "poses.tum").write_text("\n".join(poses[i] for i in keep) + "\n")
        folders[part] = folder
    return folders


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, required=True, help="folder with images/, camera.yaml, poses.tum")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--query-parity", type=int, choices=(0, 1), default=1, help="1: odd images are queries")
    parser.add_argument("--bench", action="store_true", help="pram bench --dataset OUT (every method)")
    parser.add_argument("--rebuild", action="store_true", help="delete OUT's map, recognizer and database first")
    parser.add_argument("--minutes", type=float, default=2.0, help="recognizer training budget (default 2)")
    args = parser.parse_args()
    folders = split(args.scene, args.out, args.query_parity)
    print(f"mapping: {folders['mapping']}, queries: {folders['query']}")
    if args.rebuild:
        for name in BUILT:
            (args.out / name).unlink(missing_ok=True)
    if args.bench:
        command = [sys.executable, "-m", "pram_ros.cli", "bench", "--dataset", str(args.out),
                   "--minutes", str(args.minutes), "--out", str(args.out / "bench")]
        print("$ pram " + " ".join(command[3:]), flush=True)
        sys.exit(subprocess.run(command).returncode)


if __name__ == "__main__":
    main()
