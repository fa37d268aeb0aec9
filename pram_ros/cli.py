"""`pram`: the offline command line of pram_ros.

Subcommands exist only for stages that are built:
  pram world --out DIR          render the demo world (images, depth, poses, bags)
  pram map build ... --out MAP  build a PRAM map from images or a rosbag2
  pram map info MAP             describe a map file
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


def _cmd_map_build(args: argparse.Namespace) -> int:
    from pram_ros.mapping.build import MapBuildConfig, build_map, images_from_bag, images_from_folder
    from pram_ros.mapping.landmarks import LandmarkConfig
    from pram_ros.mapping.mapfile import save_map

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists: pass --overwrite to replace it")
    if args.bag:
        if not args.image_topic:
            raise ValueError("--bag needs --image-topic")
        images = images_from_bag(Path(args.bag), args.image_topic, args.camera_info_topic, args.pose_topic,
                                 Path(args.poses) if args.poses else None)
    else:
        if not args.images:
            raise ValueError("give --images DIR or --bag BAG")
        images = images_from_folder(Path(args.images), Path(args.camera) if args.camera else None,
                                    Path(args.poses) if args.poses else None)
    config = MapBuildConfig(extractor=args.extractor, landmarks=LandmarkConfig(num_landmarks=args.landmarks))
    pram_map, summary = build_map(images, config, align_tum=Path(args.align) if args.align else None,
                                  work_dir=Path(args.work_dir) if args.work_dir else None)
    size = save_map(pram_map, out)
    print(summary.describe())
    print(f"wrote {out} ({size / 1e6:.2f} MB)")
    return 0


def _cmd_map_info(args: argparse.Namespace) -> int:
    from pram_ros.mapping.mapfile import describe_map, load_map

    print(describe_map(load_map(Path(args.map)), Path(args.map)))
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

    map_parser = commands.add_parser("map", help="build or inspect a PRAM map")
    map_commands = map_parser.add_subparsers(dest="map_command", required=True)
    build = map_commands.add_parser("build", help="images or a rosbag2 -> a compressed PRAM map file")
    source = build.add_argument_group("input (a folder of images, or a rosbag2)")
    source.add_argument("--images", help="folder of images (sorted by name)")
    source.add_argument("--camera", help="camera.yaml (ROS calibration format; default: beside the images)")
    source.add_argument("--bag", help="rosbag2 folder (mcap or sqlite3)")
    source.add_argument("--image-topic", help="image topic in the bag")
    source.add_argument("--camera-info-topic", help="CameraInfo topic (default: <image topic's namespace>/camera_info)")
    source.add_argument("--pose-topic", help="PoseStamped topic with the camera's poses in the map (bag only)")
    build.add_argument("--poses", help="TUM file, world_from_camera per image: triangulate with these poses fixed")
    build.add_argument("--align", help="TUM file: Sim3-align a map built without poses to these camera centres")
    build.add_argument("--landmarks", type=_positive_int, default=None, help="number of landmarks K (default: from the scene's size)")
    build.add_argument("--extractor", default="xfeat", help="feature preset: xfeat (default), xfeat-1024, sift")
    build.add_argument("--work-dir", help="keep the COLMAP database and model here (default: a temporary folder)")
    build.add_argument("--out", required=True, help="map file to write (.npz)")
    build.add_argument("--overwrite", action="store_true", help="replace an existing map file")
    build.set_defaults(run=_cmd_map_build)
    info = map_commands.add_parser("info", help="describe a map file")
    info.add_argument("map", help="map file (.npz)")
    info.set_defaults(run=_cmd_map_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return args.run(args)
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError) as error:
        logger.error("%s", error)
        return 2


if __name__ == "__main__":
    sys.exit(main())
