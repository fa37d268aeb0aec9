"""Map/query splits of a real photo set (even images map, odd images query), benched with
every localization method.

    .venv/bin/python tools/real_split.py --scene ../shared/data/strecha_dev/fountain-P11 \
        --out out/real/fountain-P11 [--bench] [--rebuild]

A scene folder holds images/, camera.yaml and poses.tum (world_from_camera, one line per
image in name order), as ../shared/data/strecha_dev does; or images/ and
reference_poses.txt (`name fx fy cx cy qw qx qy qz tx ty tz`: each photo's own camera and
its cam_from_world, COLMAP's conventions), as ../shared/data/sacre_coeur does. The split
links the photos (symlinks: nothing is copied) into OUT/mapping and OUT/query, each with
its camera.yaml (or cameras/NAME.yaml, one per photo) and its share of the poses: the
layout `pram bench --dataset` reads. With --bench it runs
`pram bench --dataset OUT --out OUT/bench` (building the map, the recognizer and the
retrieval database in OUT when missing; --rebuild deletes them first). Commands run as
`python -m pram_ros.cli` with this interpreter, so the working directory chooses the code
measured.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from pram_ros.geometry import invert, make_transform
from pram_ros.io.camera import save_camera_yaml
from pram_ros.io.colmap import COLMAP_PIXEL_OFFSET
from pram_ros.io.images import load_image
from pram_ros.io.tum import save_tum

BUILT = ("map.npz", "map.recognizer.safetensors", "map.retrieval.npz")


def reference_cameras(scene: Path, images: list[Path]) -> tuple[list[tuple[np.ndarray, int, int]], np.ndarray]:
    """Each photo's (K, width, height) in OpenCV's pixel convention and world_from_cam, from
    reference_poses.txt."""
    rows = {}
    for line in (scene / "reference_poses.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            fields = line.split()
            rows[fields[0]] = np.array(fields[1:12], float)
    missing = [p.name for p in images if p.name not in rows]
    if missing:
        raise SystemExit(f"{scene / 'reference_poses.txt'}: no line for {len(missing)} images, e.g. {missing[0]}")
    cameras, poses = [], []
    for path in images:
        fx, fy, cx, cy, qw, qx, qy, qz, tx, ty, tz = rows[path.name]
        height, width = load_image(path).shape[:2]
        K = np.array([[fx, 0, cx - COLMAP_PIXEL_OFFSET], [0, fy, cy - COLMAP_PIXEL_OFFSET], [0, 0, 1]])
        cameras.append((K, width, height))
        cam_from_world = make_transform(Rotation.from_quat([qx, qy, qz, qw]).as_matrix(), np.array([tx, ty, tz]))
        poses.append(invert(cam_from_world))
    return cameras, np.array(poses)


def split(scene: Path, out: Path, query_parity: int = 1) -> dict[str, Path]:
    """OUT/mapping and OUT/query: even and odd images (by name order) with their poses."""
    images = sorted(p for p in (scene / "images").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    per_photo = (scene / "reference_poses.txt").is_file()
    if per_photo:
        cameras, world_from_cam = reference_cameras(scene, images)
    else:
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
        shutil.rmtree(folder / "cameras", ignore_errors=True)
        if per_photo:
            (folder / "cameras").mkdir()
            for i in keep:
                save_camera_yaml(folder / "cameras" / f"{images[i].stem}.yaml", *cameras[i], camera_name=images[i].stem)
            # Photos have no capture times: one second apart, in name order.
            save_tum(folder / "poses.tum", np.array(keep, np.int64) * 10**9, world_from_cam[keep])
        else:
            camera.symlink_to((scene / "camera.yaml").resolve())
            (folder / "poses.tum").write_text("\n".join(poses[i] for i in keep) + "\n")
        folders[part] = folder
    return folders


def _pram(*args: str) -> None:
    command = [sys.executable, "-m", "pram_ros.cli", *args]
    print("$ pram " + " ".join(args), flush=True)
    if subprocess.run(command).returncode:
        raise SystemExit(f"pram {args[0]} failed")


def extend(folders: dict[str, Path], out: Path) -> None:
    """The mapping half as a map (with its poses), then the query half added by `pram map
    extend`; prints how many query images it placed and how far from their reference
    poses, in metres and as a share of the extent of the reference camera centres."""
    from pram_ros.io.tum import load_tum
    from pram_ros.mapping.mapfile import load_map

    first, extended = out / "map.npz", out / "extended.npz"
    if not first.exists():
        _pram("map", "build", "--images", str(folders["mapping"] / "images"), "--poses",
              str(folders["mapping"] / "poses.tum"), "--out", str(first))
    _pram("map", "extend", str(first), "--images", str(folders["query"] / "images"), "--out", str(extended),
          "--overwrite")
    pram_map = load_map(extended)
    names = sorted(p.name for p in (folders["query"] / "images").iterdir())
    _, truth = load_tum(folders["query"] / "poses.tum")
    _, mapping = load_tum(folders["mapping"] / "poses.tum")
    centres = np.concatenate([truth[:, :3, 3], mapping[:, :3, 3]])
    extent = float(np.linalg.norm(centres.max(axis=0) - centres.min(axis=0)))
    errors = np.array([
        np.linalg.norm(invert(pram_map.cam_from_world(i))[:3, 3] - truth[names.index(name.split("/", 1)[1])][:3, 3])
        for i, name in enumerate(pram_map.image_names) if name.startswith("session1/")])
    looks = pram_map.num_appearances
    if not len(errors):
        print(f"extended: no query image placed (of {len(names)})")
        return
    print(f"extended: {len(errors)} of {len(names)} query images placed; centre error (in the reference's units: "
          f"metres on Strecha) median {np.median(errors):.3f} = {100 * np.median(errors) / extent:.2f}% of the "
          f"extent {extent:.2f}, max {errors.max():.3f}; "
          f"{pram_map.num_points} points, {looks} further looks; {extended.stat().st_size / 1e6:.2f} MB against "
          f"{first.stat().st_size / 1e6:.2f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, required=True,
                        help="folder with images/ and camera.yaml + poses.tum, or reference_poses.txt")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--query-parity", type=int, choices=(0, 1), default=1, help="1: odd images are queries")
    parser.add_argument("--bench", action="store_true", help="pram bench --dataset OUT (every method)")
    parser.add_argument("--method", action="append", help="with --bench: the methods (repeat; default: pram "
                                                          "bench's, every method but retrieval-lg)")
    parser.add_argument("--rebuild", action="store_true", help="delete OUT's map, recognizer and database first")
    parser.add_argument("--minutes", type=float, default=2.0, help="recognizer training budget (default 2)")
    parser.add_argument("--extend", action="store_true",
                        help="add the query half to the map as a second session (pram map extend: localized on "
                             "the map) and report how far its poses lie from the reference")
    args = parser.parse_args()
    folders = split(args.scene, args.out, args.query_parity)
    print(f"mapping: {folders['mapping']}, queries: {folders['query']}")
    if args.rebuild:
        for name in BUILT:
            (args.out / name).unlink(missing_ok=True)
    if args.extend:
        extend(folders, args.out)
    if args.bench:
        command = [sys.executable, "-m", "pram_ros.cli", "bench", "--dataset", str(args.out),
                   "--minutes", str(args.minutes), "--out", str(args.out / "bench")]
        for method in args.method or ():
            command += ["--method", method]
        print("$ pram " + " ".join(command[3:]), flush=True)
        sys.exit(subprocess.run(command).returncode)


if __name__ == "__main__":
    main()
