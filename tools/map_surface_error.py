"""Distance of a map's points from the rendered surfaces of a demo-world sequence.

    .venv/bin/python tools/map_surface_error.py demo/map.npz demo/world/mapping

For every observation of a map point in a database image, compares the point's depth
in that camera with the rendered depth at its projection; prints the median and 90th
percentile. The map must have been built from that sequence's images and poses.
"""

import argparse
from pathlib import Path

import numpy as np

from pram_ros.mapping.mapfile import load_map
from pram_ros.world.io import load_depth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("map", type=Path)
    parser.add_argument("sequence", type=Path, help="demo-world sequence folder (with depth/)")
    args = parser.parse_args()
    pram_map = load_map(args.map)
    K = pram_map.K(0)
    errors = []
    for image in range(pram_map.num_images):
        observed = np.flatnonzero(np.add.reduceat(pram_map.point_obs_images == image,
                                                  pram_map.point_obs_offsets[:-1]) > 0)
        cam_from_world = pram_map.cam_from_world(image)
        xyz_cam = pram_map.point_xyz[observed] @ cam_from_world[:3, :3].T + cam_from_world[:3, 3]
        uv = xyz_cam @ K.T
        uv = np.rint(uv[:, :2] / uv[:, 2:]).astype(int)
        depth = load_depth(args.sequence / "depth" / pram_map.image_names[image])
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < depth.shape[1]) & (uv[:, 1] >= 0) & (uv[:, 1] < depth.shape[0])
        errors.append(np.abs(xyz_cam[inside, 2] - depth[uv[inside, 1], uv[inside, 0]]))
    errors = np.concatenate(errors)
    print(f"{len(errors)} observations: median {100 * np.median(errors):.2f} cm, "
          f"90th percentile {100 * np.percentile(errors, 90):.2f} cm")


if __name__ == "__main__":
    main()
