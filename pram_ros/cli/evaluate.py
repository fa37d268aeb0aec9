"""`pram eval` and `pram bench`: the command-line handlers of evaluation and benchmarks.

In: parsed arguments (see pram_ros/cli/__init__.py). Out: reports and tables on disk and a
summary on stdout; exit code 0, or a ValueError/FileNotFoundError with a one-line reason.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

logger = logging.getLogger("pram")


def _read_scene(sequence_dir: Path) -> str | None:
    """The demo world's scene name of a sequence folder, if it has a sequence.yaml."""
    import yaml

    path = sequence_dir / "sequence.yaml"
    if not path.is_file():
        return None
    with open(path) as handle:
        return (yaml.safe_load(handle) or {}).get("scene")


def _unmapped(query_dir: Path, map_meta: dict) -> bool:
    """A demo-world sequence of another scene than the map's: a place the map does not hold."""
    query_scene = _read_scene(query_dir)
    map_images = (map_meta.get("source") or {}).get("images")
    map_scene = _read_scene(Path(map_images).parent) if map_images else None
    return query_scene is not None and map_scene is not None and query_scene != map_scene


def _query_unmapped(query_dir: Path, map_path: str) -> bool:
    """`_unmapped` from the map file's meta alone; False when unreadable (only a note hangs on it)."""
    from pram_ros.mapping.mapfile import MapFileError, load_map_meta

    try:
        return _unmapped(query_dir, load_map_meta(map_path))
    except MapFileError:
        return False


def _check_camera_yaml(images_dir: Path, command: str = "pram eval", other: str = "") -> None:
    """`pram eval` and `pram bench` read the camera from camera.yaml beside the images: say so
    before the image set's own message, which suggests a --camera option they do not have."""
    if images_dir.is_dir() and not any((d / "camera.yaml").is_file() or (d / "cameras").is_dir()
                                       for d in (images_dir, images_dir.parent)):
        raise FileNotFoundError(f"no camera.yaml in {images_dir} or its parent: `{command}` reads the camera from "
                                f"there (ROS calibration format; or cameras/NAME.yaml, one per image){other}")


def cmd_eval(args: argparse.Namespace) -> int:
    if args.live:
        return _eval_live(args)
    if args.stage == "recognition":
        return _eval_recognition(args)
    return _eval_localization(args)


def _cpu_count() -> int:
    """CPUs this process may run on (a container's share, not the host's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _ms(latency: dict, stage: str, percentile: str = "p50", digits: int = 0) -> str:
    """A stage's percentile from metrics' latency_ms, "-" when the stage never ran."""
    value = latency.get(stage, {}).get(percentile)
    return "-" if value is None else f"{value:.{digits}f} ms"


def _eval_live(args: argparse.Namespace) -> int:
    from pram_ros.evaluation.live import LiveConfig, run_live
    from pram_ros.evaluation.report import describe_metrics, machine_busy

    if not args.bag or not args.out or len(args.map) != 1 or not args.rate > 0:
        raise ValueError("--live takes one --map, a --bag, --out REPORT and a --rate > 0")
    params = {"num_threads": args.threads} if args.threads else {}
    if args.model:
        params["model_path"] = args.model
    # Real time shares the CPU with whatever else runs: the load before the run says whether
    # it had the machine to itself (after it, the load includes the node and the replay).
    load_start = os.getloadavg()[0]
    metrics = run_live(LiveConfig(Path(args.map[0]), Path(args.bag), Path(args.out), rate=args.rate,
                                  image_topic=args.image_topic, ground_truth_topic=args.pose_topic, node_params=params))
    metrics.update(load_avg_1min_start=round(load_start, 2), load_avg_1min_end=round(os.getloadavg()[0], 2),
                   cpu_count=_cpu_count(), unmapped=_query_unmapped(Path(args.bag).parent, args.map[0]))
    (Path(args.out) / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    latency = metrics["latency_ms"]
    received = metrics["frames_in_bag"] - metrics["not_received"]
    print(f"{args.bag} through pram_node at rate {args.rate}: {metrics['frames_processed']} of {received} received "
          f"frames processed ({metrics['frames_in_bag']} in the bag, {metrics['dropped_frames']} dropped by the "
          f"node, {metrics['not_received']} not received), {metrics['achieved_rate_hz']} Hz of "
          f"{metrics['input_rate_hz']} Hz")
    print(f"  over processed frames: {describe_metrics(metrics)}")
    print(f"  node latency (image stamp to publish) p50 {_ms(latency, 'node_latency_ms')}, "
          f"p90 {_ms(latency, 'node_latency_ms', 'p90')}; processing p50 {_ms(latency, 'total_ms')}")
    print(f"  machine: load average (1 min) {metrics['load_avg_1min_start']:.2f} before the run, "
          f"{metrics['load_avg_1min_end']:.2f} after, on {metrics['cpu_count']} CPUs")
    busy = machine_busy(metrics)
    if busy:
        print(f"  warning: live results depend on a free CPU ({busy}); rerun on an idle machine or at a lower --rate")
    print(f"wrote {args.out}/metrics.json, trajectory.tum and plots")
    return 0


def _eval_localization(args: argparse.Namespace) -> int:
    import numpy as np

    from pram_ros.evaluation.report import describe_metrics, ground_truth_stamps, run_sequence, write_report
    from pram_ros.io.imageset import images_from_bag, images_from_folder
    from pram_ros.localization import create_localizer, load_parts
    from pram_ros.localization.loading import RETRIEVAL_METHODS

    if len(args.map) != 1:
        raise ValueError("localization takes one --map")
    if not args.out:
        raise ValueError("give --out REPORT (a folder)")
    if args.images and not args.bag:  # before the map and model load
        _check_camera_yaml(Path(args.images), other=", or give --bag BAG with its CameraInfo topic")
    map_path = args.map[0]
    parts = load_parts(map_path, args.model, with_model=args.method in ("pram", "pram-reloc"), num_threads=args.threads)
    if args.bag:
        # Images and ground truth from the bag, matched by stamp; names are the stamps.
        images = images_from_bag(Path(args.bag), args.image_topic, None, args.pose_topic,
                                 Path(args.gt) if args.gt else None)
        stamps = np.array([int(name) for name in images.names], dtype=np.int64)
        source = {"bag": args.bag, "image_topic": args.image_topic}
    elif args.images:
        images_dir = Path(args.images)
        gt = Path(args.gt) if args.gt else images_dir.parent / "poses.tum"
        images = images_from_folder(images_dir, None, gt)
        stamps = ground_truth_stamps(gt, len(images.names))
        source = {"images": str(images_dir)}
    else:
        raise ValueError("give --images DIR or --bag BAG")
    database = _retrieval_database(map_path, parts.map, args) if args.method in RETRIEVAL_METHODS else None
    localizer = create_localizer(args.method, parts, database=database)
    run = run_sequence(localizer, images, stamps)
    unmapped = _unmapped(Path(args.bag or args.images).parent, parts.map.meta)
    metrics = write_report(Path(args.out), run, {"method": args.method, "map": map_path, **source,
                                                 "unmapped": unmapped})
    latency = metrics["latency_ms"]
    print(f"{args.bag or args.images}: {describe_metrics(metrics)}; "
          f"total p50 {_ms(latency, 'total_ms', digits=1)}, p90 {_ms(latency, 'total_ms', 'p90', digits=1)}")
    print(f"wrote {args.out}/metrics.json, trajectory.tum and plots")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """`pram report REPORT...`: one table over report folders (make demo prints it last)."""
    from pram_ros.evaluation.report import load_report, summary_table

    print(summary_table([load_report(Path(folder)) for folder in args.reports]))
    return 0


def add_report_command(commands) -> None:
    """Register `pram report` on the `pram` subparsers (kept here, beside `pram eval`)."""
    report = commands.add_parser("report", help="a table of `pram eval` reports: localized, recall, median "
                                                "errors, wrong, processed frames of live runs")
    report.add_argument("reports", nargs="+", metavar="REPORT", help="report folders (each with metrics.json)")
    report.set_defaults(run=cmd_report)


def cmd_localize(args: argparse.Namespace) -> int:
    import numpy as np

    from pram_ros.evaluation.localize import localize_frames, write_localization
    from pram_ros.io.imageset import images_from_bag, images_from_folder
    from pram_ros.localization import create_localizer, load_parts
    from pram_ros.localization.loading import RETRIEVAL_METHODS

    if bool(args.images) == bool(args.bag):
        raise ValueError("give --images DIR or --bag BAG")
    if args.bag:
        images = images_from_bag(Path(args.bag), args.image_topic, args.camera_info_topic, use_odometry=False)
        stamps = np.array([int(name) for name in images.names], dtype=np.int64)
        source = {"bag": args.bag, "image_topic": args.image_topic}
    else:
        images = images_from_folder(Path(args.images), Path(args.camera) if args.camera else None)
        # Folder images carry no stamps: the capture rate gives them, for the motion limits.
        stamps = np.round(np.arange(len(images.names)) * 1e9 / args.rate_hz).astype(np.int64)
        source = {"images": args.images, "rate_hz": args.rate_hz}
    parts = load_parts(args.map, args.model, with_model=args.method in ("pram", "pram-reloc"), num_threads=args.threads)
    database = _retrieval_database(args.map, parts.map, args) if args.method in RETRIEVAL_METHODS else None
    localizer = create_localizer(args.method, parts, database=database)
    results = localize_frames(localizer, images, stamps)
    summary = write_localization(Path(args.out), images.names, stamps, results,
                                 {"method": args.method, "map": args.map, **source})
    states = ", ".join(f"{count} {state}" for state, count in summary["states"].items())
    total = summary["total_ms"]
    print(f"{args.bag or args.images}: {summary['frames']} frames, method {args.method}: localized "
          f"{summary['localized_ratio']:.3f} ({states}); total p50 {total.get('p50', float('nan'))} ms, "
          f"p90 {total.get('p90', float('nan'))} ms")
    for reason, count in list(summary["lost_reasons"].items())[:3]:
        print(f"  LOST {count}x: {reason}")
    print(f"wrote {args.out}/trajectory.tum, frames.csv, summary.json and trajectory.png")
    return 0


def _retrieval_database(map_path: str, pram_map, args: argparse.Namespace):
    """The map's retrieval database (--retrieval-db, default beside the map): built and
    cached when missing or with --rebuild-retrieval; a stale one is refused."""
    from pram_ros.mapping.retrieval_db import (
        OldRetrievalDatabase,
        build_retrieval_database,
        default_database_path,
        load_retrieval_database,
        save_retrieval_database,
    )

    path = Path(args.retrieval_db) if args.retrieval_db else default_database_path(map_path)
    if path.exists() and not args.rebuild_retrieval:
        try:
            return load_retrieval_database(path, pram_map)
        except OldRetrievalDatabase as error:
            logger.info("%s; rebuilding it", error)
    logger.info("building the retrieval database %s (the full reconstruction of the map's images; once)", path)
    try:
        database = build_retrieval_database(pram_map, args.map_images, num_threads=args.threads)
    except FileNotFoundError as error:  # the map's images moved: say which option gives them here
        raise FileNotFoundError(f"{error} (here: --map-images DIR, to build the retrieval database)") from None
    size = save_retrieval_database(database, path)
    logger.info("wrote %s (%.1f MB)", path, size / 1e6)
    return database


def _eval_recognition(args: argparse.Namespace) -> int:
    import json

    from pram_ros.localization.loading import map_extractor
    from pram_ros.mapping.mapfile import load_map
    from pram_ros.recognition.evaluate import evaluate_sequence
    from pram_ros.recognition.modelfile import default_model_path, load_model

    if not args.images:
        raise ValueError("--stage recognition needs --images DIR (with poses.tum and depth/ beside it)")
    _check_camera_yaml(Path(args.images))
    maps = [(path, load_map(Path(path))) for path in args.map]
    model = load_model(Path(args.model) if args.model else default_model_path(args.map[0]), maps)
    names = [s.name for s in model.scenes]
    if args.scene is not None and args.scene not in names:
        raise ValueError(f"--scene {args.scene!r}: the model knows scenes {names}")
    scene_index = names.index(args.scene) if args.scene is not None else 0
    images = Path(args.images)
    gt = Path(args.gt) if args.gt else images.parent / "poses.tum"
    pram_map = maps[scene_index][1]
    unmapped = args.unmapped or _unmapped(images.parent, pram_map.meta)
    extractor = map_extractor(pram_map, num_threads=args.threads)
    summary = evaluate_sequence(model.recognizer, extractor, model.scenes, scene_index, pram_map, images, gt,
                                Path(args.depth) if args.depth else None, unmapped=unmapped)
    summary = {"stage": "recognition", "images": str(images), "scene": names[scene_index], "unmapped": unmapped,
               **summary}
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "recognition.json").write_text(text + "\n")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.scale:
        return _bench_scale(args)
    if args.stage == "localization":
        return _bench_localization(args)
    if args.stage == "features":
        return _bench_features(args)
    return _bench_recognition(args)


def _bench_localization(args: argparse.Namespace) -> int:
    import json

    import cv2
    import torch

    from pram_ros.evaluation.bench import BenchConfig, format_table, query_sequences, run_bench
    from pram_ros.localization import load_parts
    from pram_ros.localization.loading import RETRIEVAL_METHODS

    # Every method under the same budget: torch (XFeat, recognizer) and OpenCV threads.
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    world, names = Path(args.world), args.sequence
    map_path = args.map or "demo/map.npz"
    if args.dataset:
        world, names = Path(args.dataset), ["query"]
        map_path = args.map or str(world / "map.npz")
        _prepare_dataset(world, Path(map_path), args)
    methods = tuple(args.method) if args.method else BenchConfig.methods
    sequences = query_sequences(world, names)  # checked before the map and model load
    parts = load_parts(map_path, args.model, num_threads=args.threads)
    database = _retrieval_database(map_path, parts.map, args) if set(methods) & set(RETRIEVAL_METHODS) else None
    config = BenchConfig(methods=methods, threads=args.threads, extra={"map": map_path, "world": str(world)})
    bench = run_bench(parts, database, sequences, config)
    print(format_table(bench))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.json").write_text(json.dumps(bench, indent=2) + "\n")
        print(f"wrote {out / 'bench.json'}")
    return 0


def _prepare_dataset(dataset: Path, map_path: Path, args: argparse.Namespace) -> None:
    """A dataset folder's map and recognizer, built from mapping/ (with its poses) when missing."""
    from pram_ros.cli import main
    from pram_ros.recognition.modelfile import default_model_path

    mapping = dataset / "mapping"
    for needed in (mapping / "images", mapping / "poses.tum", dataset / "query" / "images",
                   dataset / "query" / "poses.tum"):
        if not needed.exists():
            raise FileNotFoundError(f"{needed}: --dataset needs mapping/ and query/, each with images/ and poses.tum "
                                    "(tools/real_split.py makes them from a photo set)")
    if not map_path.is_file():
        logger.info("building %s from %s", map_path, mapping)
        if main(["map", "build", "--images", str(mapping / "images"), "--poses", str(mapping / "poses.tum"),
                 "--out", str(map_path)]) != 0:
            raise RuntimeError(f"{map_path}: the map could not be built from {mapping} (see above)")
    if not default_model_path(map_path).is_file() and not args.model:
        logger.info("training the recognizer of %s (%.1f min)", map_path, args.minutes)
        if main(["train", "--map", str(map_path), "--minutes", str(args.minutes)]) != 0:
            raise RuntimeError(f"{map_path}: the recognizer could not be trained (see above)")
    if not args.map_images:
        args.map_images = str(mapping / "images")


def _bench_scale(args: argparse.Namespace) -> int:
    from pram_ros.evaluation.scale import SCALE_METHODS, ScaleConfig, format_scale_table, run_scale

    out = Path(args.out or "demo/scale")
    config = ScaleConfig(rooms=tuple(args.rooms), frames_per_room=args.frames_per_room, train_minutes=args.minutes,
                         train_variants=not args.no_train_variants,
                         frames_per_world=args.frames_per_world, sequence=(args.sequence or ["query_offpath"])[0],
                         methods=tuple(args.method) if args.method else SCALE_METHODS, threads=args.threads)
    print(format_scale_table(run_scale(out, config)))
    print(f"wrote {out / 'scale.json'}, scale_latency.png, scale_recall.png, scale_memory.png")
    return 0


def _bench_features(args: argparse.Namespace) -> int:
    import json

    import cv2

    from pram_ros.features.base import ExtractorConfig
    from pram_ros.features.bench import bench_runtimes, format_rows
    from pram_ros.io.imageset import images_from_folder
    from pram_ros.mapping.mapfile import EXTRACTOR_EXTRAS, load_map_meta

    if not args.map or not args.images:
        raise ValueError("--stage features needs --map MAP (its extractor) and --images DIR")
    _check_camera_yaml(Path(args.images), "pram bench")
    cv2.setNumThreads(args.threads)
    settings = {k: v for k, v in load_map_meta(args.map)["extractor"].items() if k not in EXTRACTOR_EXTRAS}
    images = [rgb for _, rgb in images_from_folder(Path(args.images)).frames()]
    rows = bench_runtimes(ExtractorConfig.from_dict(settings), images, args.threads)
    print(format_rows(rows, images[0].shape[1::-1], args.threads))
    if args.out:
        Path(args.out).write_text(json.dumps({"stage": "features", "threads": args.threads, "images": args.images,
                                              "rows": rows}, indent=2) + "\n")
    return 0


def _bench_recognition(args: argparse.Namespace) -> int:
    import json

    import torch

    from pram_ros.localization import load_parts
    from pram_ros.recognition.bench import VARIANTS, bench_recognizer, format_rows, load_queries

    if not args.map or not args.images:
        raise ValueError("--stage recognition needs --map MAP and --images DIR")
    _check_camera_yaml(Path(args.images), "pram bench")
    torch.set_num_threads(args.threads)
    parts = load_parts(args.map, args.model, num_threads=args.threads, device="cpu")
    pram_map, model, extractor = parts.map, parts.model, parts.extractor
    images = Path(args.images)
    max_keypoints = model.config.max_keypoints
    queries = load_queries(extractor, pram_map, 0, images, Path(args.gt) if args.gt else images.parent / "poses.tum",
                           max_keypoints, args.step)
    rows = bench_recognizer(model.recognizer, queries, VARIANTS)
    print(format_rows(rows, max_keypoints, args.threads))
    if args.out:
        Path(args.out).write_text(json.dumps({"stage": "recognition", "threads": args.threads,
                                              "max_keypoints": max_keypoints, "images": str(images),
                                              "frames": len(queries), "rows": rows}, indent=2) + "\n")
    return 0
