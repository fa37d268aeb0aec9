"""`pram bench`: every localization method on the same query sequences, in one process.

In: a map, its recognizer, its retrieval database (mapping/retrieval_db.py) and query
sequences with ground truth (the demo world's `query_*` folders). Each method runs over
every sequence, one method after another, one image at a time, with the same extractor and
the same thread count (2 by default, as on the target CPU). Out: a dict (bench.json) with,
per method, the metrics of evaluation/metrics.py pooled over the sequences and per
sequence, the bytes it holds for its map, and the p50 speed-ups of `pram` and
`pram-reloc` over `retrieval` and `exhaustive`; `format_table` prints it.

Methods: `pram` (recognition, landmark registration, tracking), `pram-reloc` (recognition
and registration on every frame), `exhaustive` (every keypoint against every map point)
and `retrieval` (hloc-style: VLAD top-k images, matching through their observations).
"""

from __future__ import annotations

import logging
from itertools import islice
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from pram_ros.progress import progress

from pram_ros.evaluation.metrics import sequence_metrics
from pram_ros.evaluation.report import ground_truth_stamps, run_sequence
from pram_ros.io.imageset import ImageSet, images_from_folder
from pram_ros.localization import METHODS, Localizer, LocalizerParts, create_localizer
from pram_ros.mapping.retrieval_db import RetrievalDatabase

logger = logging.getLogger(__name__)

BASELINES = ("retrieval", "exhaustive", "retrieval-lg")
STAGES = ("features_ms", "recognition_ms", "tracking_ms", "retrieval_ms", "registration_ms")


@dataclass
class QuerySequence:
    name: str
    images: ImageSet
    stamps_ns: np.ndarray


def query_sequences(world: Path, names: list[str] | None = None, max_frames: int | None = None) -> list[QuerySequence]:
    """The sequences of a demo world (`query_*` unless `names`), each with images/ and poses.tum;
    with `max_frames`, at most that many frames of each, evenly spaced."""
    world = Path(world)
    if not world.is_dir():
        raise FileNotFoundError(f"{world}: no such world folder (make demo, or pram world --out DIR)")
    names = names or sorted(p.name for p in world.iterdir() if p.name.startswith("query_") and p.is_dir())
    if not names:
        raise ValueError(f"{world}: no query_* sequences")
    sequences = []
    for name in names:
        folder = world / name
        if not (folder / "images").is_dir() or not (folder / "poses.tum").is_file():
            raise FileNotFoundError(f"{folder}: expected images/ and poses.tum")
        images = images_from_folder(folder / "images", None, folder / "poses.tum")
        sequence = QuerySequence(name, images, ground_truth_stamps(folder / "poses.tum", len(images.names)))
        sequences.append(evenly_spaced(sequence, max_frames) if max_frames else sequence)
    return sequences


def evenly_spaced(sequence: QuerySequence, count: int) -> QuerySequence:
    """At most `count` frames of a folder sequence, evenly spaced from its first to its last."""
    total = len(sequence.images.names)
    if count >= total:
        return sequence
    keep = np.unique(np.linspace(0, total - 1, count).round().astype(int))
    names = [sequence.images.names[i] for i in keep]
    position = {int(index): row for row, index in enumerate(keep)}

    def frames():  # through the set's own reader: undistorted, checked against each camera
        for index, rgb in sequence.images.frames():
            if index in position:
                yield position[index], rgb

    images = replace(sequence.images, names=names, frames=frames, world_from_cam=sequence.images.world_from_cam[keep],
                     image_K=None if sequence.images.one_camera else sequence.images.image_K[keep],
                     image_size=None if sequence.images.one_camera else sequence.images.image_size[keep])
    return QuerySequence(sequence.name, images, sequence.stamps_ns[keep])


@dataclass
class BenchConfig:
    methods: tuple[str, ...] = tuple(m for m in METHODS if m != "retrieval-lg")  # seconds a frame: on request
    threads: int = 2
    warmup_frames: int = 1  # per method, not counted: first-call allocations and lazy imports
    extra: dict = field(default_factory=dict)  # recorded in bench.json as given


def _public(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if k != "wrong_frames"}


def run_method(method: str, localizer: Localizer, sequences: list[QuerySequence], warmup_frames: int = 1,
               bar=None) -> dict:
    """One method over every sequence -> its bench.json entry: metrics pooled and per
    sequence, the frames' states and the bytes the localizer holds for its map."""
    first = sequences[0].images
    localizer.set_camera(*first.camera_of(0))
    for _, rgb in islice(first.frames(), warmup_frames):
        localizer.process(rgb, 0)
    truth, estimates, timings, per_sequence = [], [], [], {}
    states = {"RELOCALIZED": 0, "TRACKED": 0, "LOST": 0}
    for sequence in sequences:
        if bar is not None:
            bar.set_postfix_str(f"{method} {sequence.name}")
        localizer.reset()
        run = run_sequence(localizer, sequence.images, sequence.stamps_ns)
        frame_timings = [r.timings_ms for r in run.results]
        per_sequence[sequence.name] = _public(sequence_metrics(run.true_world_from_cam, run.estimates(),
                                                               frame_timings))
        truth.extend(run.true_world_from_cam)
        estimates.extend(run.estimates())
        timings.extend(frame_timings)
        for result in run.results:
            states[result.state.name] += 1
        if bar is not None:
            bar.update()
    memory = localizer.memory_bytes()
    entry = {**_public(sequence_metrics(truth, estimates, timings)), "states": states,
             "map_bytes": int(sum(memory.values())), "memory_bytes": memory, "per_sequence": per_sequence}
    logger.info("%s: recall 5 cm/5 deg %.3f, total p50 %.1f ms", method, entry["recall_5cm_5deg"],
                entry["latency_ms"]["total_ms"]["p50"])
    return entry


def run_bench(parts: LocalizerParts, database: RetrievalDatabase | None, sequences: list[QuerySequence],
              config: BenchConfig | None = None) -> dict:
    """Run every method over every sequence (see the module docstring) -> the bench.json dict."""
    config = config or BenchConfig()
    unknown = [m for m in config.methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}, expected some of {list(METHODS)}")
    width, height = sequences[0].images.width, sequences[0].images.height
    if (width, height) != (640, 480):
        logger.warning("queries are %dx%d; the targets are stated at 640x480", width, height)
    methods: dict[str, dict] = {}
    bar = progress(total=len(config.methods) * len(sequences), desc="bench", unit="sequence")
    for method in config.methods:
        localizer = create_localizer(method, parts, database=database)
        methods[method] = run_method(method, localizer, sequences, config.warmup_frames, bar)
    bar.close()
    return {"threads": config.threads, "image_size": [width, height], "map_points": parts.map.num_points,
            "sequences": {s.name: len(s.images.names) for s in sequences}, **config.extra,
            "methods": methods, "ratios": speed_ratios(methods)}


def speed_ratios(methods: dict[str, dict]) -> dict:
    """For pram and pram-reloc: baseline p50 / method p50 (above 1: faster), and map bytes
    as a share of each baseline's."""
    ratios: dict[str, dict] = {}
    for method in ("pram-reloc", "pram"):
        if method not in methods:
            continue
        p50 = methods[method]["latency_ms"]["total_ms"]["p50"]
        for baseline in BASELINES:
            if baseline in methods:
                ratios.setdefault(method, {})[f"speedup_p50_vs_{baseline}"] = round(
                    methods[baseline]["latency_ms"]["total_ms"]["p50"] / p50, 3)
                ratios[method][f"map_bytes_share_of_{baseline}"] = round(
                    methods[method]["map_bytes"] / max(methods[baseline]["map_bytes"], 1), 4)
    return ratios


def _cell(latency: dict, stage: str) -> str:
    if stage not in latency:
        return "-"
    return f"{latency[stage]['p50']:.0f}/{latency[stage]['p90']:.0f}"


def _number(value, scale: float = 1.0, digits: int = 2) -> str:
    return "-" if value is None else f"{value * scale:.{digits}f}"


def format_table(bench: dict) -> str:
    """The bench as a text table: accuracy, p50/p90 ms per stage, map bytes; then the ratios."""
    stages = [s for s in STAGES if any(s in m["latency_ms"] for m in bench["methods"].values())]
    header = ["method", "recall 5cm/5°", "med t cm", "med r °", "wrong", "total ms p50/p90",
              *[f"{s.removesuffix('_ms')} p50/p90" for s in stages], "map MB"]
    rows = [header]
    for name, m in bench["methods"].items():
        rows.append([name, _number(m["recall_5cm_5deg"], digits=3), _number(m["median_t_m"], 100.0),
                     _number(m["median_r_deg"]), _number(m["wrong_ratio"], digits=3),
                     _cell(m["latency_ms"], "total_ms"), *[_cell(m["latency_ms"], s) for s in stages],
                     f"{m['map_bytes'] / 1e6:.1f}"])
    widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    sequences = ", ".join(f"{name} ({count})" for name, count in bench["sequences"].items())
    lines.insert(0, f"{sequences}; {bench['image_size'][0]}x{bench['image_size'][1]}, one image at a time, "
                    f"{bench['threads']} threads; stage ms over the frames that ran the stage")
    for method, ratio in bench["ratios"].items():
        parts = [f"{ratio[f'speedup_p50_vs_{b}']:.2f} against {b}" for b in BASELINES if f"speedup_p50_vs_{b}" in ratio]
        memory = [f"{100 * ratio[f'map_bytes_share_of_{b}']:.1f}% of {b}'s" for b in BASELINES
                  if f"map_bytes_share_of_{b}" in ratio]
        lines.append(f"{method}: p50 speed-up (baseline p50 / {method} p50) {', '.join(parts)}; "
                     f"map bytes {', '.join(memory)}")
    return "\n".join(lines)
