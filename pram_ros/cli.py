"""`pram`: the offline command line of pram_ros.

Subcommands exist only for stages that are built:
  pram world --out DIR   render the demo world (images, depth, poses, bags)
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

logger = logging.getLogger("pram")


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _cmd_world(args: argparse.Namespace) -> int:
    from pram_ros.world.generate import WorldConfig, generate_world

    defaults = WorldConfig()
    config = WorldConfig(
        seed=args.seed,
        rooms=args.rooms if args.rooms is not None else defaults.rooms,
        frames=args.frames,
        storage=args.storage,
        write_bags=not args.no_bags,
    )
    summary = generate_world(Path(args.out), config)
    print(summary.describe())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pram", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    world = commands.add_parser("world", help="render the demo world with exact ground truth")
    world.add_argument("--out", required=True, help="output folder (must be empty or absent)")
    world.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    world.add_argument("--frames", type=_positive_int, default=300, help="frames of the mapping sequence")
    world.add_argument("--rooms", type=_positive_int, default=None, help="number of rooms (default: small world)")
    world.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap", help="rosbag2 storage")
    world.add_argument("--no-bags", action="store_true", help="skip writing rosbag2 files")
    world.set_defaults(run=_cmd_world)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.run(args)
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        logger.error("%s", error)
        return 2


if __name__ == "__main__":
    sys.exit(main())
