"""A kidnap on the demo world: query_offpath frames 0-39, then 70-99 (the camera carried
about 3 m), through the default `pram` localizer at the sequence's 10 Hz stamps; prints
the states and errors around the cut.

    .venv/bin/python tools/kidnap_check.py --map demo/map.npz --sequence demo/world/query_offpath
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pram_ros.geometry import pose_difference
from pram_ros.io.imageset import images_from_folder
from pram_ros.io.tum import load_tum
from pram_ros.localization import load_localizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--map", type=Path, required=True)
    parser.add_argument("--sequence", type=Path, required=True, help="a demo query folder (images/, poses.tum)")
    parser.add_argument("--cut", type=int, nargs=2, default=(40, 70), help="last frame before, first after")
    parser.add_argument("--drop", type=int, default=0, help="camera periods dropped at the cut (0: none)")
    args = parser.parse_args()
    images = images_from_folder(args.sequence / "images", poses_tum=args.sequence / "poses.tum")
    stamps, _ = load_tum(args.sequence / "poses.tum")
    period = int(np.median(np.diff(stamps)))
    frames = dict(images.frames())
    order = list(range(args.cut[0])) + list(range(args.cut[1], len(images.names)))
    localizer = load_localizer(args.map, method="pram", num_threads=2)
    localizer.set_camera(images.K, images.width, images.height)
    print(f"kidnap after frame {args.cut[0] - 1} to frame {args.cut[1]}: "
          f"{pose_difference(images.world_from_cam[args.cut[0] - 1], images.world_from_cam[args.cut[1]])[0]:.2f} m")
    for step, index in enumerate(order):
        stamp = step * period + (args.drop * period if index >= args.cut[1] else 0)
        result = localizer.process(frames[index], stamp)
        if args.cut[0] - 3 <= step <= args.cut[0] + 3:
            error = pose_difference(result.world_from_cam, images.world_from_cam[index]) if result.localized else None
            where = f"{100 * error[0]:.1f} cm, {error[1]:.2f} deg" if error else result.message
            print(f"frame {index:3d}: {result.state.name:11s} {where}")


if __name__ == "__main__":
    main()
