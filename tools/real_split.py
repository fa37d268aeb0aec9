"""Map/query splits of a real photo set (even images map, odd images query), and every
localization method run on one.

    .venv/bin/python tools/real_split.py --scene ../shared/data/strecha_dev/fountain-P11 \
        --out out/real/fountain --run [--reuse]

A scene folder holds images/, camera.yaml and poses.tum (world_from_camera, one line per
image in name order), as ../shared/data/strecha_dev does. The split links the photos
(symlinks: nothing is copied) into OUT/map and OUT/query, each with its camera.yaml and its
share of the poses. With --run: `pram map build` on the map half (with its poses),
`pram train`, then `pram eval` of each method on the query half, and a table of
localized ratio, recall at 5 cm/5 deg, wrong ratio and total p50 ms
(OUT/results.json). Commands run as `python -m pram_ros.cli` with this interpreter, so
PYTHONPATH chooses the code measured.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

METHODS = ("pram", "pram-reloc", "exhaustive", "retrieval")


def split(scene: Path, out: Path, query_parity: int = 1) -> dict[str, Path]:
    """OUT/map and OUT/query: even and odd images (by name order) with their poses."""
    images = sorted(p for p in (scene / "images").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    poses = [line for line in (scene / "poses.tum").read_text().splitlines() if line.strip() and line[0] != "#"]
    if len(poses) != len(images):
        raise SystemExit(f"{scene / 'poses.tum'}: {len(poses)} poses for {len(images)} images")
    folders = {}
    for part, parity in (("map", 1 - query_parity), ("query", query_parity)):
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


def _pram(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pram_ros.cli", *args]
    print("$ pram " + " ".join(args), flush=True)
    return subprocess.run(command, capture_output=True, text=True)


def run(folders: dict[str, Path], out: Path, minutes: float, methods: tuple[str, ...], reuse: bool = False) -> dict:
    map_path = out / "map.npz"
    if reuse and map_path.is_file() and map_path.with_name("map.recognizer.safetensors").is_file():
        return {"map": "reused", "methods": _evaluate(folders, out, map_path, methods)}
    built = _pram("map", "build", "--images", str(folders["map"] / "images"), "--poses",
                  str(folders["map"] / "poses.tum"), "--out", str(map_path), "--overwrite")
    if built.returncode != 0:
        return {"map": "not built: " + (built.stderr.strip().splitlines() or ["?"])[-1]}
    trained = _pram("train", "--map", str(map_path), "--overwrite", "--minutes", str(minutes))
    if trained.returncode != 0:
        return {"map": "built", "train": "failed: " + (trained.stderr.strip().splitlines() or ["?"])[-1]}
    return {"map": "built", "methods": _evaluate(folders, out, map_path, methods)}


def _evaluate(folders: dict[str, Path], out: Path, map_path: Path, methods: tuple[str, ...]) -> dict:
    results = {}
    for method in methods:
        report = out / "reports" / method
        done = _pram("eval", "--map", str(map_path), "--images", str(folders["query"] / "images"), "--method", method,
                     "--out", str(report))
        if done.returncode != 0:
            results[method] = {"error": (done.stderr.strip().splitlines() or ["?"])[-1]}
            continue
        metrics = json.loads((report / "metrics.json").read_text())
        results[method] = {key: metrics[key] for key in ("frames", "localized_ratio", "recall_5cm_5deg",
                                                         "wrong_ratio", "median_t_m", "median_r_deg")}
        results[method]["total_p50_ms"] = metrics["latency_ms"].get("total_ms", {}).get("p50")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, required=True, help="folder with images/, camera.yaml, poses.tum")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--query-parity", type=int, choices=(0, 1), default=1, help="1: odd images are queries")
    parser.add_argument("--run", action="store_true", help="build, train and evaluate every method")
    parser.add_argument("--minutes", type=float, default=2.0, help="recognizer training budget (default 2)")
    parser.add_argument("--reuse", action="store_true", help="evaluate with OUT's map and recognizer when present")
    parser.add_argument("--method", action="append", choices=METHODS, help="repeat; default: all four")
    args = parser.parse_args()
    folders = split(args.scene, args.out, args.query_parity)
    print(f"map: {folders['map']}, queries: {folders['query']}")
    if not args.run:
        return
    results = run(folders, args.out, args.minutes, tuple(args.method or METHODS), args.reuse)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    if "methods" not in results:
        print(f"{args.scene.name}: {results}")
        return
    print(f"{args.scene.name}: method, localized, recall 5 cm/5 deg, wrong, total p50 ms")
    for method, row in results["methods"].items():
        if "error" in row:
            print(f"  {method:11s} error: {row['error']}")
        else:
            print(f"  {method:11s} {row['localized_ratio']:.3f} {row['recall_5cm_5deg']:.3f} {row['wrong_ratio']:.3f} "
                  f"{row['total_p50_ms']}")


if __name__ == "__main__":
    main()
