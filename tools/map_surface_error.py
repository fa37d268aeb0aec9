"""Distance of a map's points from the rendered surfaces of a demo-world sequence.

    .venv/bin/python tools/map_surface_error.py demo/map.npz demo/world/mapping

The map must have been built from that sequence's images and poses.
"""

import argparse
from pathlib import Path

import numpy as np

from pram_ros.evaluation.mapcheck import surface_errors_m
from pram_ros.mapping.mapfile import load_map


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("map", type=Path)
    parser.add_argument("sequence", type=Path, help="demo-world sequence folder (with depth/)")
    args = parser.parse_args()
    errors = surface_errors_m(load_map(args.map), args.sequence)
    print(f"{len(errors)} observations: median {100 * np.median(errors):.2f} cm, "
          f"90th percentile {100 * np.percentile(errors, 90):.2f} cm")


if __name__ == "__main__":
    main()
