"""`pram`: the offline command line of pram_ros.

Subcommands exist only for stages that are built:
  pram world --out DIR          render the demo world (images, depth, poses, bags)
  pram map build ... --out MAP  build a PRAM map from images or a rosbag2
  pram map info MAP             describe a map file
  pram train --map MAP          train the landmark recognizer for a map (or a map set)
  pram eval --map MAP (--images DIR | --bag BAG) --out REPORT   localize a query sequence, report
                                accuracy and latency
  pram eval --stage recognition evaluate the recognizer on a query sequence with ground truth
  pram report REPORT...         one table over `pram eval` report folders
  pram view (--map MAP | --report DIR | --live) (--save F.rrd | --web)   a map, a report or a live
                                node in rerun's viewer (where RViz is missing)
  pram bench                    every localization method (pram, pram-reloc, exhaustive, retrieval)
                                on the same query sequences: accuracy, latency per stage, map bytes
  pram bench --stage recognition  recognizer latency and accuracy per runtime: torch, onnxruntime, openvino
  pram bench --stage features   feature extraction latency per runtime: torch, onnxruntime, openvino
  pram bench --scale --rooms 1 2 4  each method's latency, recall and memory against map size
  pram params [--yaml]          every node and localizer parameter (default, range, doc)
  pram replay --bag BAG          publish a rosbag2 over DDS (stands in for `ros2 bag play`)
  pram record --topics T.. --out BAG  write topics from DDS to a rosbag2 (for `ros2 bag record`)
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from pram_ros import __version__
from pram_ros.cli import evaluate as eval_commands
from pram_ros.cli.argtypes import positive_float, positive_int
from pram_ros.cli.view import add_view_command
from pram_ros.mapping.sfm_config import UNPOSED_MAPPERS, SfmConfig
from pram_ros.recognition.config import DEFAULT_PRESET, PRESETS, TrainConfig

logger = logging.getLogger("pram")


# Written out: --help must not import torch.
METHOD_CHOICES = ["pram", "pram-reloc", "exhaustive", "retrieval", "retrieval-lg"]
METHOD_HELP = ("pram: with tracking (default); pram-reloc: recognition and registration every frame; exhaustive: "
               "every keypoint against every map point, every frame; retrieval: hloc-style, top-k database images by "
               "VLAD, mutual-NN matching through their observations (needs the retrieval database, built beside the "
               "map when missing); retrieval-lg: the same with LighterGlue, XFeat's learned matcher (XFeat maps; "
               "about 2 s a frame on 2 CPU cores)")


def _cmd_replay(args: argparse.Namespace) -> int:
    from pram_ros.ros.replay import ReplayConfig, run_replay

    return run_replay(ReplayConfig(bag=Path(args.bag), rate=args.rate, clock=args.clock, clock_hz=args.clock_hz,
                                   topics=tuple(args.topics) if args.topics else None, delay_s=args.delay,
                                   wait_for=tuple(args.wait_for or ())))


def _cmd_record(args: argparse.Namespace) -> int:
    from pram_ros.ros.record import RecordConfig, run_record

    return run_record(RecordConfig(topics=tuple(args.topics), out=Path(args.out), duration_s=args.duration,
                                   storage=args.storage, stamp=args.stamp))


def _add_bag_commands(commands) -> None:
    replay = commands.add_parser("replay", help="publish a rosbag2 over DDS (stands in for `ros2 bag play`)")
    replay.add_argument("--bag", required=True, help="rosbag2 folder (mcap or sqlite3)")
    replay.add_argument("--rate", type=float, default=1.0, help="playback speed factor (default 1)")
    replay.add_argument("--clock", action="store_true", help="publish /clock at the bag's time (for use_sim_time)")
    replay.add_argument("--clock-hz", type=float, default=100.0, help="/clock rate in wall time (default 100)")
    replay.add_argument("--topics", nargs="+", help="play only these topics (default: all)")
    replay.add_argument("--delay", type=float, default=0.0, help="seconds to wait before playing, for discovery")
    replay.add_argument("--wait-for", nargs="+", metavar="TOPIC",
                        help="play only once each of these topics has a subscriber (at most 30 s)")
    replay.set_defaults(run=_cmd_replay)
    record = commands.add_parser("record", help="write topics from DDS to a rosbag2 (stands in for `ros2 bag record`)")
    record.add_argument("--topics", nargs="+", required=True, help="topics to record (types found on the graph)")
    record.add_argument("--out", required=True, help="rosbag2 folder to create")
    record.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: SIGINT)")
    record.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap", help="rosbag2 storage")
    record.add_argument("--stamp", choices=["receive", "header"], default="receive",
                        help="bag time of each message: receive time (default) or its header stamp")
    record.set_defaults(run=_cmd_record)


def _cmd_world(args: argparse.Namespace) -> int:
    from pram_ros.world.generate import WorldConfig, generate_world

    defaults = WorldConfig()
    config = WorldConfig(
        seed=args.seed,
        rooms=args.rooms if args.rooms is not None else defaults.rooms,
        frames=args.frames,
        storage=args.storage,
        write_bags=not args.no_bags,
        mapping_path=args.mapping_path,
    )
    summary = generate_world(Path(args.out), config)
    print(summary.describe())
    return 0


def _cmd_map_build(args: argparse.Namespace) -> int:
    from pram_ros.io.imageset import images_from_bag, images_from_colmap, images_from_folder, join_sessions
    from pram_ros.mapping.build import MapBuildConfig, build_map
    from pram_ros.mapping.landmarks import LandmarkConfig

    _check_outputs(args)
    folders, poses = args.images or [], args.poses or []
    if len(folders) > 1 and (args.bag or args.colmap):
        raise ValueError("several --images go without --bag and --colmap")
    if len(poses) > max(len(folders), 1):
        raise ValueError(f"{len(poses)} --poses for {len(folders)} --images: give one per --images, in order")
    if args.bag:
        if not args.image_topic:
            raise ValueError("--bag needs --image-topic")
        images = images_from_bag(Path(args.bag), args.image_topic, args.camera_info_topic, args.pose_topic,
                                 Path(poses[0]) if poses else None, use_odometry=not args.no_odometry)
    elif args.colmap:
        if not folders:
            raise ValueError("--colmap needs --images DIR (the folder its image names are relative to)")
        if poses or args.align:
            raise ValueError("--colmap gives the poses: drop --poses/--align")
        images = images_from_colmap(Path(args.colmap), Path(folders[0]))
    else:
        if not folders:
            raise ValueError("give --images DIR or --bag BAG")
        if poses and len(poses) != len(folders):
            raise ValueError(f"{len(poses)} --poses for {len(folders)} --images: give one per --images, in order")
        if len(folders) > 1 and not poses:
            # Without poses nothing pairs images across sessions: SfM would not join them.
            raise ValueError(f"{len(folders)} --images without --poses: build the map from the first, then add "
                             "the others with `pram map extend MAP --images DIR`")
        if len(folders) > 1 and args.align:
            raise ValueError("--align takes one session's poses: drop it, or build each session alone")
        images = join_sessions([images_from_folder(Path(folder), Path(args.camera) if args.camera else None,
                                                   Path(poses[index]) if poses else None)
                                for index, folder in enumerate(folders)])
    sfm = SfmConfig(pair_lookat_m=args.pair_lookat_m, pair_radius_m=args.pair_radius_m, unposed_mapper=args.mapper)
    config = MapBuildConfig(extractor=args.extractor, sfm=sfm, landmarks=LandmarkConfig(num_landmarks=args.landmarks))
    features: dict = {}
    pram_map, summary = build_map(images, config, align_tum=Path(args.align) if args.align else None,
                                  work_dir=Path(args.work_dir) if args.work_dir else None,
                                  keep_features=features if args.train else None)
    _save_and_train(args, pram_map, summary, features)
    return 0


def _check_outputs(args: argparse.Namespace) -> None:
    """`--out` (and with --train its model) before any long work."""
    from pram_ros.recognition.modelfile import default_model_path

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists: pass --overwrite to replace it")
    if args.epochs and not args.train:
        raise ValueError("--epochs goes with --train")
    if args.train and default_model_path(out).exists() and not args.overwrite:
        raise FileExistsError(f"{default_model_path(out)} exists: pass --overwrite to replace it")


def _save_and_train(args: argparse.Namespace, pram_map, summary, features: dict) -> None:
    from pram_ros.mapping.mapfile import load_map, save_map
    from pram_ros.recognition.modelfile import default_model_path
    from pram_ros.recognition.train import train_and_save

    out = Path(args.out)
    size = save_map(pram_map, out)
    print(summary.describe())
    print(f"wrote {out} ({size / 1e6:.2f} MB)")
    if args.train:
        # The map as saved (its fingerprint is the model's), the build's features reused.
        config = TrainConfig(epochs=args.epochs or TrainConfig.epochs)
        model_out = default_model_path(out)
        print(train_and_save([(str(out), load_map(out))], None, model_out, config, known_features=[features]))
        print(f"wrote {model_out}")


def _cmd_map_extend(args: argparse.Namespace) -> int:
    from pram_ros.io.imageset import images_from_folder, join_sessions
    from pram_ros.mapping.build import MapBuildConfig, build_map
    from pram_ros.mapping.mapfile import load_map
    from pram_ros.mapping.sessions import localized_session, map_sessions

    _check_outputs(args)
    pram_map = load_map(Path(args.map))
    new = images_from_folder(Path(args.images), Path(args.camera) if args.camera else None,
                             Path(args.poses) if args.poses else None)
    sessions = map_sessions(pram_map)  # the map's own images, checked before the long work
    if new.world_from_cam is None:
        from pram_ros.localization.loading import create_localizer, load_parts

        # Frame by frame on every map point: no recognizer needed, no drift carried over.
        localizer = create_localizer("exhaustive", load_parts(Path(args.map), with_model=False))

        def localize(rgb, stamp_ns, camera):
            localizer.set_camera(*camera)
            result = localizer.process(rgb, stamp_ns)
            return result.cam_from_world if result.localized else None

        new = localized_session(new, localize)
        print(f"localized on {args.map}: {len(new.names)} images of the new session")
    config = MapBuildConfig(extractor=pram_map.extractor.get("preset") or "xfeat")
    features: dict = {}
    extended, summary = build_map(join_sessions([*sessions, new]), config,
                                  work_dir=Path(args.work_dir) if args.work_dir else None,
                                  keep_features=features if args.train else None)
    _save_and_train(args, extended, summary, features)
    return 0


def _cmd_map_info(args: argparse.Namespace) -> int:
    from pram_ros.mapping.mapfile import load_map
    from pram_ros.mapping.mapinfo import describe_map

    print(describe_map(load_map(Path(args.map)), Path(args.map)))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from pram_ros.mapping.mapfile import load_map
    from pram_ros.recognition.modelfile import default_model_path
    from pram_ros.recognition.train import train_and_save

    out = Path(args.out) if args.out else default_model_path(args.map[0])
    if out.exists() and not args.overwrite:
        raise FileExistsError(f"{out} exists: pass --overwrite to replace it")
    if args.images and len(args.images) != len(args.map):
        raise ValueError(f"give one --images per --map ({len(args.map)} maps, {len(args.images)} --images)")
    maps = [(path, load_map(Path(path))) for path in args.map]
    config = TrainConfig(preset=args.preset, epochs=args.epochs or TrainConfig.epochs, minutes=args.minutes,
                         seed=args.seed, num_threads=args.threads)
    print(train_and_save(maps, args.images, out, config))
    print(f"wrote {out}")
    return 0


def _cmd_params(args: argparse.Namespace) -> int:
    from pram_ros.ros.params import params_table, params_yaml

    print(params_yaml() if args.yaml else params_table(), end="\n" if not args.yaml else "")
    return 0


def _add_retrieval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--retrieval-db", help="retrieval baseline's database (default: MAP.retrieval.npz beside "
                                               "the map; built there when missing)")
    parser.add_argument("--rebuild-retrieval", action="store_true",
                        help="rebuild the retrieval database (for instance after the map changed)")
    parser.add_argument("--map-images", help="the map's database images, when not where the map was built "
                                             "(to build the retrieval database)")


def _add_map_outputs(parser: argparse.ArgumentParser, train_help: str) -> None:
    """What `pram map build` and `pram map extend` write (see _check_outputs, _save_and_train)."""
    parser.add_argument("--work-dir", help="keep the COLMAP database and model here (default: a temporary folder)")
    parser.add_argument("--out", required=True, help="map file to write (.npz)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing map file (and model, with --train)")
    parser.add_argument("--train", action="store_true", help=train_help)
    parser.add_argument("--epochs", type=positive_int,
                        help="with --train: passes over the data (default: as pram train)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pram", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"pram {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_bag_commands(commands)

    world = commands.add_parser("world", help="render the demo world with exact ground truth")
    world.add_argument("--out", required=True, help="output folder (must be empty or absent)")
    world.add_argument("--seed", type=int, default=0, help="random seed (same seed, same bytes)")
    world.add_argument("--frames", type=positive_int, default=300, help="frames of the mapping sequence")
    world.add_argument("--rooms", type=positive_int, default=None, help="number of rooms (default: small world)")
    world.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap", help="rosbag2 storage")
    world.add_argument("--no-bags", action="store_true", help="skip writing rosbag2 files")
    world.add_argument("--mapping-path", choices=["spin", "orbit"], default="spin",
                       help="mapping walk: turn round on the spot in each room (default), or walk a loop "
                            "looking outwards (more baseline: what SfM without --poses needs)")
    world.set_defaults(run=_cmd_world, out_is_file=False)

    map_parser = commands.add_parser("map", help="build or inspect a PRAM map")
    map_commands = map_parser.add_subparsers(dest="map_command", required=True)
    build = map_commands.add_parser("build", help="images or a rosbag2 -> a compressed PRAM map file")
    source = build.add_argument_group("input (a folder of images, a COLMAP model and its images, or a rosbag2)")
    source.add_argument("--images", action="append",
                        help="folder of images (sorted by name); repeat for more recording sessions of the place "
                             "(with --poses per session, or none), which become one map")
    source.add_argument("--colmap", metavar="MODEL_DIR",
                        help="a COLMAP model (COLMAP, hloc, ...): its camera and poses, with --images DIR holding "
                             "its images; our features are extracted and triangulated against those poses")
    source.add_argument("--camera", help="camera.yaml (ROS calibration format; default: beside the images)")
    source.add_argument("--bag", help="rosbag2 folder (mcap or sqlite3)")
    source.add_argument("--image-topic", help="image topic in the bag")
    source.add_argument("--camera-info-topic", help="CameraInfo topic (default: <image topic's namespace>/camera_info)")
    source.add_argument("--pose-topic", help="PoseStamped topic with the camera's poses in the map (bag only)")
    source.add_argument("--no-odometry", action="store_true",
                        help="without poses, ignore the bag's /tf odometry (by default it chooses image pairs and "
                             "gives the map metres)")
    build.add_argument("--poses", action="append",
                       help="TUM file, world_from_camera per image: triangulate with these poses fixed (one per "
                            "--images, in the same order)")
    build.add_argument("--pair-lookat-m", type=positive_float, default=None,
                       help="with poses: how far ahead the cameras look, for pairing images (default: the median "
                            "depth of a few neighbouring pairs triangulated with the poses)")
    build.add_argument("--pair-radius-m", type=positive_float, default=None,
                       help="with poses: how close two cameras' look-at points must be to pair them "
                            "(default: twice the look-at distance)")
    build.add_argument("--align", help="TUM file: Sim3-align a map built without poses to these camera centres")
    build.add_argument("--mapper", choices=UNPOSED_MAPPERS, default=SfmConfig.unposed_mapper,
                       help="without poses: pycolmap's incremental SfM (default; walks and videos) or global SfM "
                            "(GLOMAP; more accurate on photo collections, misplaces frames of walks that mostly turn)")
    build.add_argument("--landmarks", type=positive_int, default=None, help="number of landmarks K (default: one per 1,800 points, within what the points and images can teach)")
    build.add_argument("--extractor", default="xfeat", help="feature preset: xfeat (default), xfeat-1024, sift")
    _add_map_outputs(build, "then train the map's recognizer (as pram train does, reusing the build's features) "
                            "into MAP.recognizer.safetensors beside it")
    build.set_defaults(run=_cmd_map_build, out_is_file=True)
    extend = map_commands.add_parser(
        "extend", help="add a later recording session (another day, other light) to a map: its images are "
                       "localized on the map, then one map is built from every session")
    extend.add_argument("map", help="map file (.npz); its own images are read where it was built from")
    extend.add_argument("--images", required=True, help="folder of the new session's images (sorted by name)")
    extend.add_argument("--camera", help="camera.yaml of the new images (default: beside them)")
    extend.add_argument("--poses", help="TUM file, world_from_camera of each new image in the map's frame "
                                        "(default: each image localized on the map; those that are not are left out)")
    _add_map_outputs(extend, "then train the map's recognizer on every session into MAP.recognizer.safetensors")
    extend.set_defaults(run=_cmd_map_extend, out_is_file=True)
    info = map_commands.add_parser("info", help="describe a map file")
    info.add_argument("map", help="map file (.npz)")
    info.set_defaults(run=_cmd_map_info)

    train = commands.add_parser("train", help="train the landmark recognizer for a map (or a map set)")
    train.add_argument("--map", action="append", required=True,
                       help="map file; repeat for a map set (one model, one label space, several scenes)")
    train.add_argument("--images", action="append",
                       help="the map's database images (folder or bag), when not where the map was built; "
                            "one per --map")
    train.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET,
                       help=f"model size (default: {DEFAULT_PRESET})")
    budget = train.add_mutually_exclusive_group()
    budget.add_argument("--epochs", type=positive_int, help=f"passes over the data (default {TrainConfig.epochs})")
    budget.add_argument("--minutes", type=float, help="train for this long instead of a number of epochs")
    train.add_argument("--seed", type=int, default=TrainConfig.seed, help="random seed (same seed, same weights)")
    train.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: all)")
    train.add_argument("--out", help="model file (default: beside the first map, MAP.recognizer.safetensors)")
    train.add_argument("--overwrite", action="store_true", help="replace an existing model file")
    train.set_defaults(run=_cmd_train, out_is_file=True)

    evaluate = commands.add_parser("eval", help="evaluate on a query sequence with ground truth")
    evaluate.add_argument("--stage", choices=["localization", "recognition"], default="localization",
                          help="localization (default): poses against the ground truth; "
                               "recognition: landmark recognition against projected map points")
    evaluate.add_argument("--method", choices=METHOD_CHOICES, default="pram", help=METHOD_HELP)
    evaluate.add_argument("--map", action="append", required=True, help="map file; repeat for a map set")
    evaluate.add_argument("--model", help="recognizer (default: beside the first map)")
    evaluate.add_argument("--images", help="query images folder")
    evaluate.add_argument("--bag", help="localization: a rosbag2 with images and ground-truth poses")
    evaluate.add_argument("--image-topic", default="/camera/image_raw",
                          help="image topic in --bag (Image or CompressedImage; TOPIC/compressed when TOPIC is absent)")
    evaluate.add_argument("--pose-topic", default="/ground_truth/pose",
                          help="PoseStamped ground truth of the camera in the map, in --bag")
    evaluate.add_argument("--gt", help="TUM file of world_from_camera poses (default: IMAGES/../poses.tum)")
    evaluate.add_argument("--depth", help="depth images (default: IMAGES/../depth)")
    evaluate.add_argument("--scene", help="for a map set: the scene (map name) the query was taken in")
    evaluate.add_argument("--unmapped", action="store_true",
                          help="the query shows a place the map does not hold (found from sequence.yaml "
                               "for demo-world sequences)")
    evaluate.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: all)")
    evaluate.add_argument("--live", action="store_true",
                          help="replay --bag in real time through a running pram_node over DDS (method pram)")
    evaluate.add_argument("--rate", type=float, default=1.0, help="--live: replay speed factor (default 1)")
    evaluate.add_argument("--out", help="report folder: metrics.json, trajectory.tum and plots "
                                        "(recognition: recognition.json)")
    _add_retrieval_arguments(evaluate)
    evaluate.set_defaults(run=eval_commands.cmd_eval, out_is_file=False)
    eval_commands.add_report_command(commands)
    add_view_command(commands)

    localize = commands.add_parser("localize", help="localize images or a bag against a map, no ground truth needed")
    localize.add_argument("--map", required=True, help="map file")
    localize.add_argument("--model", help="recognizer (default: beside the map)")
    localize.add_argument("--method", choices=METHOD_CHOICES, default="pram", help=METHOD_HELP)
    localize.add_argument("--images", help="folder of images (sorted by name)")
    localize.add_argument("--camera", help="camera.yaml of --images (default: beside the images)")
    localize.add_argument("--rate-hz", type=positive_float, default=10.0,
                          help="--images: the capture rate, for their stamps (default 10)")
    localize.add_argument("--bag", help="a rosbag2 (stamps and camera from the bag)")
    localize.add_argument("--image-topic", default="/camera/image_raw",
                          help="image topic in --bag (Image or CompressedImage; TOPIC/compressed when TOPIC is absent)")
    localize.add_argument("--camera-info-topic", help="CameraInfo topic in --bag (default: beside the images)")
    localize.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: all)")
    localize.add_argument("--out", required=True,
                          help="output folder: trajectory.tum, frames.csv, summary.json, trajectory.png")
    _add_retrieval_arguments(localize)
    localize.set_defaults(run=eval_commands.cmd_localize, out_is_file=False)

    bench = commands.add_parser("bench", help="measure speed against accuracy")
    bench.add_argument("--stage", choices=["localization", "recognition", "features"], default="localization",
                       help="localization (default): every method (pram, pram-reloc, exhaustive, retrieval) on "
                            "the world's query sequences in one process; recognition: the recognizer alone, "
                            "torch (float32, bfloat16, int8) against onnxruntime and openvino (f32, bf16); "
                            "features: the map's extractor on --images, torch against onnxruntime and openvino")
    bench.add_argument("--map", help="map file (localization default: demo/map.npz)")
    bench.add_argument("--model", help="recognizer (default: beside the map)")
    bench.add_argument("--world", default="demo/world", help="localization: world folder with query_* sequences "
                                                             "(default demo/world)")
    bench.add_argument("--dataset", help="localization: a folder with mapping/ and query/ (each images/, "
                                         "poses.tum, camera.yaml), e.g. from tools/real_split.py; its map "
                                         "(DATASET/map.npz), recognizer and retrieval database are built there "
                                         "when missing")
    bench.add_argument("--sequence", action="append", help="localization: a sequence of the world to use "
                                                           "(repeat; default: every query_*)")
    bench.add_argument("--method", action="append", choices=METHOD_CHOICES,
                       help="localization: a method to run (repeat; default: all but retrieval-lg, which takes "
                            "seconds a frame)")
    bench.add_argument("--images", help="recognition: query images folder with poses.tum and depth/ beside it")
    bench.add_argument("--gt", help="recognition: TUM file of world_from_camera poses (default: IMAGES/../poses.tum)")
    bench.add_argument("--threads", type=positive_int, default=2, help="CPU threads (default 2)")
    bench.add_argument("--step", type=positive_int, default=1, help="recognition: use every STEP-th image")
    bench.add_argument("--out", help="localization: folder for bench.json; recognition: a JSON file for the rows; "
                                     "--scale: folder for worlds, maps, scale.json and plots (default demo/scale)")
    scale = bench.add_argument_group("--scale: each method's cost against map size, over worlds of growing size")
    scale.add_argument("--scale", action="store_true",
                       help="render worlds of --rooms rooms, build each one's map, recognizer (time-boxed) and "
                            "retrieval database (reused when present), then bench each world in its own process")
    scale.add_argument("--rooms", type=positive_int, nargs="+", default=[1, 2, 4], help="room counts (default 1 2 4)")
    scale.add_argument("--frames-per-room", type=positive_int, default=100,
                       help="mapping frames per room (default 100)")
    scale.add_argument("--minutes", type=float, default=2.0,
                       help="recognizer training budget per world (--scale) or for a --dataset without one, in minutes "
                            "(default 2)")
    scale.add_argument("--no-train-variants", action="store_true",
                       help="train each recognizer on the database images alone, without their lighting and zoom "
                            "variants (a third of the preparation time)")
    scale.add_argument("--frames-per-world", type=positive_int, default=40,
                       help="query frames per world, evenly spaced over the --sequence (default 40; "
                            "default sequence query_offpath)")
    _add_retrieval_arguments(bench)
    bench.set_defaults(run=eval_commands.cmd_bench)

    params = commands.add_parser("params", help="every pram_node and localizer parameter: default, range, doc")
    params.add_argument("--yaml", action="store_true", help="print the node's params YAML (config/pram.yaml)")
    params.set_defaults(run=_cmd_params)
    return parser


def check_out(out: str, is_file: bool | None) -> None:
    """--out before any work: not a file where a folder goes (or the reverse), under a
    writable folder. ValueError names what is wrong."""
    path = Path(out)
    if path.exists() and is_file is True and path.is_dir():
        raise ValueError(f"--out {out}: is a folder, a file is written there")
    if path.exists() and is_file is False and not path.is_dir():
        raise ValueError(f"--out {out}: is a file, a folder is written there")
    ancestor = path if path.is_dir() else path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"--out {out}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK):
        raise ValueError(f"--out {out}: {ancestor} is not writable")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if getattr(args, "out", None):
            check_out(args.out, getattr(args, "out_is_file", None))
        return args.run(args)
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError) as error:
        logger.error("%s", error)
        return 2

