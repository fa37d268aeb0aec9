"""`pram bench --scale`: how each localization method's cost grows with the map's size.

In: an output folder DIR and a `ScaleConfig`. For each room count N, in DIR:
  worlds/roomsN/                 `pram world --rooms N --frames N * frames_per_room` (no bags)
  maps/roomsN.npz                its mapping sequence's map, triangulated at the rendered poses
  maps/roomsN.recognizer.safetensors   a recognizer trained for `train_minutes` (time-boxed)
  maps/roomsN.retrieval.npz      the retrieval baseline's database (full reconstruction)
each reused when present. Then one fresh process per world runs the methods one after
another (evaluation/bench.py's `run_method`, the code of `pram bench`) on `frames_per_world`
evenly spaced frames of one query sequence, with `threads` threads, and reads the process's
resident memory (VmRSS) after each method.

Out: DIR/scale.json (per world and method: map points, recall, wrong_ratio, p50/p90 ms in
total and per stage, the bytes the method holds for its map, resident memory), the plots
DIR/scale_latency.png, DIR/scale_recall.png and DIR/scale_memory.png (against map points,
log x), and the ratios on the largest world; `format_scale_table` prints it.
"""

from __future__ import annotations

import gc
import json
import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pram_ros.progress import progress

logger = logging.getLogger(__name__)

SCALE_METHODS = ("pram-reloc", "exhaustive", "retrieval")
PLOT_STAGES = ("features_ms", "recognition_ms", "retrieval_ms", "registration_ms")


@dataclass
class ScaleConfig:
    rooms: tuple[int, ...] = (1, 2, 4)
    frames_per_room: int = 100  # mapping frames per room (the demo world: 300 for 3 rooms)
    train_minutes: float = 2.0  # the recognizer's training budget per world: time-boxed, not converged
    train_variants: bool = True  # the lighting and zoom variants of each training image (False: 1/3 the preparation)
    frames_per_world: int = 40  # query frames benchmarked per world, evenly spaced
    sequence: str = "query_offpath"
    methods: tuple[str, ...] = SCALE_METHODS
    threads: int = 2
    seed: int = 0
    world_overrides: dict = field(default_factory=dict)  # other WorldConfig fields (tests: fewer frames)

    def validate(self) -> None:
        from pram_ros.evaluation.bench import METHODS

        if not self.rooms or min(self.rooms) < 1:
            raise ValueError(f"ScaleConfig.rooms: expected positive room counts, got {self.rooms}")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"ScaleConfig.methods: unknown {unknown}, expected some of {list(METHODS)}")
        if self.frames_per_world < 1 or self.frames_per_room < 1 or self.train_minutes <= 0:
            raise ValueError("ScaleConfig: frames_per_world and frames_per_room must be >= 1 and "
                             f"train_minutes > 0, got {self.frames_per_world}, {self.frames_per_room}, "
                             f"{self.train_minutes}")


@dataclass
class WorldFiles:
    """One world of the scale bench and the files built for it."""

    rooms: int
    world: Path
    map: Path
    model: Path
    database: Path
    prepare_s: dict = field(default_factory=dict)  # seconds per step built now (absent: reused)


def resident_bytes() -> dict[str, int]:
    """This process's resident memory now (VmRSS) and at its peak (VmHWM), from /proc/self/status."""
    values = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024  # kB
    return {"rss_bytes": values.get("VmRSS", 0), "peak_rss_bytes": values.get("VmHWM", 0)}


# ----------------------------------------------------------------------------------------
# Preparing a world: render, map, recognizer, retrieval database (each reused when present)

def prepare_world(out: Path, rooms: int, config: ScaleConfig) -> WorldFiles:
    from pram_ros.mapping.retrieval_db import default_database_path
    from pram_ros.recognition.modelfile import default_model_path

    world = out / "worlds" / f"rooms{rooms}"
    map_path = out / "maps" / f"rooms{rooms}.npz"
    files = WorldFiles(rooms, world, map_path, default_model_path(map_path), default_database_path(map_path))
    steps = (("world", files.world / "world.yaml", _render), ("map", files.map, _build_map),
             ("recognizer", files.model, _train), ("retrieval_database", files.database, _build_database))
    for name, product, build in steps:
        if name == "retrieval_database" and "retrieval" not in config.methods:
            continue
        if product.exists():
            logger.info("rooms %d: reusing %s", rooms, product)
            continue
        start = time.perf_counter()
        build(files, config)
        files.prepare_s[name] = round(time.perf_counter() - start, 1)
        logger.info("rooms %d: %s built in %.0f s", rooms, name, files.prepare_s[name])
    return files


def _render(files: WorldFiles, config: ScaleConfig) -> None:
    from pram_ros.world.generate import WorldConfig, generate_world

    settings = {"seed": config.seed, "rooms": files.rooms, "frames": files.rooms * config.frames_per_room,
                "write_bags": False, **config.world_overrides}
    if files.world.exists() and not (files.world / "world.yaml").exists():
        raise FileExistsError(f"{files.world}: an unfinished world (no world.yaml): remove it to render it again")
    generate_world(files.world, WorldConfig(**settings))


def _build_map(files: WorldFiles, config: ScaleConfig) -> None:
    from pram_ros.io.imageset import images_from_folder
    from pram_ros.mapping.build import MapBuildConfig, build_map
    from pram_ros.mapping.mapfile import save_map

    mapping = files.world / "mapping"
    images = images_from_folder(mapping / "images", poses_tum=mapping / "poses.tum")
    pram_map, summary = build_map(images, MapBuildConfig())
    logger.info("%s", summary.describe())
    files.map.parent.mkdir(parents=True, exist_ok=True)
    save_map(pram_map, files.map)


def _train(files: WorldFiles, config: ScaleConfig) -> None:
    from pram_ros.mapping.mapfile import load_map
    from pram_ros.recognition.dataset import LabelConfig
    from pram_ros.recognition.train import TrainConfig, train_and_save

    variants = 1 if config.train_variants else 0
    labels = LabelConfig(photometric_variants=variants, zoom_variants=variants, seed=config.seed)
    train_and_save([(str(files.map), load_map(files.map))], None, files.model,
                   TrainConfig(minutes=config.train_minutes, seed=config.seed), labels)


def _build_database(files: WorldFiles, config: ScaleConfig) -> None:
    from pram_ros.mapping.mapfile import load_map
    from pram_ros.mapping.retrieval_db import build_retrieval_database, save_retrieval_database

    save_retrieval_database(build_retrieval_database(load_map(files.map)), files.database)


# ----------------------------------------------------------------------------------------
# Benchmarking one world (in its own process)

def bench_world(files: WorldFiles, config: ScaleConfig) -> dict:
    """Every method on one world's query frames, one after another in this process -> a dict
    with the world's sizes and, per method, run_method's entry and the resident memory after it."""
    import cv2
    import torch

    from pram_ros.evaluation.bench import query_sequences, run_method
    from pram_ros.localization import create_localizer, load_parts
    from pram_ros.mapping.retrieval_db import load_retrieval_database

    torch.set_num_threads(config.threads)
    cv2.setNumThreads(config.threads)
    parts = load_parts(files.map, files.model, num_threads=config.threads)
    pram_map = parts.map
    sequences = query_sequences(files.world, [config.sequence], config.frames_per_world)
    world = {"rooms": files.rooms, "world": str(files.world), "map": str(files.map),
             "map_points": pram_map.num_points, "map_images": pram_map.num_images,
             "frames": len(sequences[0].images.names), "prepare_s": files.prepare_s,
             "loaded": resident_bytes(), "methods": {}}
    database = None
    for method in config.methods:
        if method == "retrieval" and database is None:
            database = load_retrieval_database(files.database, pram_map)
            world["retrieval_points"] = int(database.meta["stats"]["points"])
        localizer = create_localizer(method, parts, database=database)
        entry = run_method(method, localizer, sequences)
        entry.pop("per_sequence")  # one sequence: the pooled metrics are its own
        del localizer
        gc.collect()
        world["methods"][method] = {**entry, **resident_bytes()}
    return world


def _child_logging(level: int) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run_scale(out: Path, config: ScaleConfig | None = None) -> dict:
    """Prepare each world, bench it in a fresh process, write scale.json and the plots -> the dict."""
    config = config or ScaleConfig()
    config.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    worlds = []
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: its memory is this world's alone
    for rooms in progress(sorted(set(config.rooms)), desc="scale", unit="world"):
        files = prepare_world(out, rooms, config)
        with ProcessPoolExecutor(1, mp_context=context, initializer=_child_logging,
                                 initargs=(logging.getLogger().getEffectiveLevel(),)) as pool:
            worlds.append(pool.submit(bench_world, files, config).result())
        logger.info("rooms %d: %d map points, %s", rooms, worlds[-1]["map_points"], ", ".join(
            f"{m} p50 {e['latency_ms']['total_ms']['p50']:.0f} ms" for m, e in worlds[-1]["methods"].items()))
        # Written after every world: a run stopped on a large world keeps the smaller ones.
        scale = {"config": {**asdict(config), "rooms": sorted(set(config.rooms))}, "threads": config.threads,
                 "sequence": config.sequence, "worlds": worlds, "ratios": scale_ratios(worlds)}
        (out / "scale.json").write_text(json.dumps(scale, indent=2) + "\n")
        plot_scale(scale, out)
    return scale


# ----------------------------------------------------------------------------------------
# Ratios, plots, table

def _p50(world: dict, method: str, stage: str = "total_ms") -> float | None:
    latency = world["methods"].get(method, {}).get("latency_ms", {})
    return latency[stage]["p50"] if stage in latency else None


def scale_ratios(worlds: list[dict]) -> dict:
    """On the largest world: baseline p50 / pram-reloc p50 (above 1: pram-reloc is faster);
    and pram-reloc's p50 on the largest world / on the smallest (its growth)."""
    if not worlds:
        return {}
    smallest, largest = min(worlds, key=lambda w: w["map_points"]), max(worlds, key=lambda w: w["map_points"])
    ratios: dict = {"largest_rooms": largest["rooms"], "largest_map_points": largest["map_points"],
                    "smallest_rooms": smallest["rooms"], "smallest_map_points": smallest["map_points"]}
    reloc = _p50(largest, "pram-reloc")
    if reloc:
        for baseline in ("exhaustive", "retrieval"):
            p50 = _p50(largest, baseline)
            if p50 is not None:
                ratios[f"pram-reloc_speedup_p50_vs_{baseline}"] = round(p50 / reloc, 3)
        first = _p50(smallest, "pram-reloc")
        if first:
            ratios["pram-reloc_p50_growth"] = round(reloc / first, 3)
    return ratios


def plot_scale(scale: dict, out: Path) -> list[Path]:
    """scale_latency.png (p50 total and per stage), scale_recall.png, scale_memory.png, against map points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worlds = sorted(scale["worlds"], key=lambda w: w["map_points"])
    methods = list(dict.fromkeys(m for w in worlds for m in w["methods"]))

    def series(method: str, value) -> tuple[list, list]:
        points = [(w["map_points"], value(w, w["methods"][method])) for w in worlds if method in w["methods"]]
        points = [(x, y) for x, y in points if y is not None]
        return [x for x, _ in points], [y for _, y in points]

    paths = []
    figure, (total, stages) = plt.subplots(1, 2, figsize=(12, 4.5))
    for index, method in enumerate(methods):
        color = f"C{index}"
        total.plot(*series(method, lambda w, m, method=method: _p50(w, method)), "o-", color=color, label=method)
        for stage, style in zip(PLOT_STAGES, ("o-", "s--", "^:", "d-.")):
            x, y = series(method, lambda w, m, method=method, stage=stage: _p50(w, method, stage))
            if y:
                stages.plot(x, y, style, color=color, label=f"{method} {stage.removesuffix('_ms')}")
    for axes, title in ((total, "total p50 latency"), (stages, "p50 latency per stage")):
        axes.set_xscale("log")
        axes.set_xlabel("map points (PRAM map)")
        axes.set_ylabel("ms")
        axes.set_title(title)
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize=7)
    figure.suptitle(f"{scale['sequence']}, {scale['threads']} threads, one 640x480 image at a time")
    paths.append(_save(plt, figure, out / "scale_latency.png"))

    figure, axes = plt.subplots(figsize=(6, 4.5))
    for index, method in enumerate(methods):
        axes.plot(*series(method, lambda w, m: m["recall_5cm_5deg"]), "o-", color=f"C{index}", label=method)
        axes.plot(*series(method, lambda w, m: m["wrong_ratio"]), "x:", color=f"C{index}", label=f"{method} wrong")
    axes.set_xscale("log")
    axes.set_ylim(-0.02, 1.02)
    axes.set_xlabel("map points (PRAM map)")
    axes.set_ylabel("recall at 5 cm/5° (o), wrong ratio (x)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7)
    paths.append(_save(plt, figure, out / "scale_recall.png"))

    figure, axes = plt.subplots(figsize=(6, 4.5))
    for index, method in enumerate(methods):
        axes.plot(*series(method, lambda w, m: m["map_bytes"] / 1e6), "o-", color=f"C{index}",
                  label=f"{method} map bytes")
        axes.plot(*series(method, lambda w, m: m["rss_bytes"] / 1e6), "s--", color=f"C{index}",
                  label=f"{method} process RSS after it")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("map points (PRAM map)")
    axes.set_ylabel("MB")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7)
    paths.append(_save(plt, figure, out / "scale_memory.png"))
    return paths


def _save(plt, figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def format_scale_table(scale: dict) -> str:
    """One row per world and method; then the ratios on the largest world."""
    stages = [s for s in PLOT_STAGES if any(s in m["latency_ms"] for w in scale["worlds"]
                                            for m in w["methods"].values())]
    header = ["rooms", "map points", "method", "frames", "recall 5cm/5°", "wrong", "total p50",
              *[f"{s.removesuffix('_ms')} p50" for s in stages], "map MB", "RSS MB"]
    rows = [header]
    for world in sorted(scale["worlds"], key=lambda w: w["map_points"]):
        for method, m in world["methods"].items():
            rows.append([str(world["rooms"]), str(world["map_points"]), method, str(world["frames"]),
                         f"{m['recall_5cm_5deg']:.3f}", f"{m['wrong_ratio']:.3f}",
                         f"{m['latency_ms']['total_ms']['p50']:.0f}",
                         *[f"{m['latency_ms'][s]['p50']:.0f}" if s in m["latency_ms"] else "-" for s in stages],
                         f"{m['map_bytes'] / 1e6:.1f}", f"{m['rss_bytes'] / 1e6:.0f}"])
    widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
    lines = [f"{scale['sequence']}, evenly spaced frames, one image at a time, {scale['threads']} threads; ms; "
             "RSS: the process's resident memory after the method (methods run in this order, one process per world)"]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(2, "  ".join("-" * w for w in widths))
    ratios = scale["ratios"]
    parts = [f"{ratios[key]:.2f}x against {baseline}" for baseline in ("exhaustive", "retrieval")
             if (key := f"pram-reloc_speedup_p50_vs_{baseline}") in ratios]
    if parts:
        lines.append(f"largest world ({ratios['largest_rooms']} rooms, {ratios['largest_map_points']} points): "
                     f"pram-reloc p50 speed-up (baseline p50 / pram-reloc p50) {', '.join(parts)}")
    if "pram-reloc_p50_growth" in ratios:
        lines.append(f"pram-reloc p50 from {ratios['smallest_map_points']} to {ratios['largest_map_points']} points: "
                     f"x{ratios['pram-reloc_p50_growth']:.2f}")
    return "\n".join(lines)
