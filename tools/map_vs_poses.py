"""How a map's camera poses compare with reference poses: the scale of the similarity that
fits its camera centres to the reference ones, and the centres' errors after it.

    .venv/bin/python tools/map_vs_poses.py --map out/odo/map.npz --poses demo/world/mapping/poses.tum

For a map built in metres (given poses, or odometry in the bag) the scale should be 1;
`pram map build --align` reports the errors of an up-to-scale map itself. Map images are
matched to the reference by stamp when their names are stamps (maps from bags), else by
their order among the reference's images.
"""

import argparse
from pathlib import Path

import numpy as np

from pram_ros.geometry import fit_similarity, invert, transform_from_quat
from pram_ros.io.tum import load_tum
from pram_ros.mapping.mapfile import load_map


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--map", type=Path, required=True)
    parser.add_argument("--poses", type=Path, required=True, help="reference poses (TUM, world_from_camera)")
    args = parser.parse_args()

    pram_map = load_map(args.map)
    stamps, world_from_cam = load_tum(args.poses)
    names = pram_map.image_names
    by_stamp = {int(stamp): index for index, stamp in enumerate(stamps)}
    if all(name.isdigit() and int(name) in by_stamp for name in names):
        rows = np.array([by_stamp[int(name)] for name in names])
    elif len(names) == len(stamps):
        rows = np.arange(len(names))
    else:
        raise SystemExit(f"{args.map}: its {len(names)} image names are not stamps of {args.poses} "
                         f"({len(stamps)} poses)")
    centres = np.array([invert(transform_from_quat(pose[4:], pose[:4]))[:3, 3]
                        for pose in pram_map.image_cam_from_world])
    reference = world_from_cam[rows, :3, 3]
    scale, rotation, translation = fit_similarity(centres, reference)
    errors = np.linalg.norm(centres @ (scale * rotation).T + translation - reference, axis=1)
    print(f"{args.map}: {len(names)} images, {len(stamps)} reference poses")
    print(f"scale against the reference: {scale:.4f} ({100 * abs(scale - 1):.2f}% off)")
    print(f"camera centres after the similarity: median {100 * np.median(errors):.1f} cm, "
          f"90th percentile {100 * np.percentile(errors, 90):.1f} cm, max {100 * errors.max():.1f} cm")


if __name__ == "__main__":
    main()
