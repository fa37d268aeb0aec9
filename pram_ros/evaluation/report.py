"""`pram eval` for localization: run the Localizer over a query sequence, write a report.

In: a `Localizer` and an `ImageSet` with ground-truth poses (a folder with a TUM file).
Out, in REPORT/: metrics.json (evaluation/metrics.py, plus the method, the input and the
sequence's name), trajectory.tum (the localized frames, world_from_cam; evo reads it),
trajectory.png (top view against the ground truth, LOST frames marked), error_cdf.png and
latency.png (p50/p90 per stage in pipeline order; a live run's node latency apart).
`describe_metrics` and `summary_table` turn metrics.json into the lines `pram eval` and
`pram report` print.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pram_ros.evaluation.localize import STAGE_ORDER, localize_frames, write_frames_csv
from pram_ros.evaluation.metrics import WRONG_R_DEG, WRONG_T_M, pose_errors, sequence_metrics
from pram_ros.io.imageset import ImageSet
from pram_ros.io.tum import load_tum, save_tum
from pram_ros.localization import Localizer, Result

NODE_LATENCY = "node_latency_ms"  # live runs only: image stamp to publish, not a stage of the pipeline
# A live run that processed fewer of the bag's frames than this, or ran on a machine with
# more load than cores, measured the machine as much as the localizer.
LOW_PROCESSED_RATIO = 0.5


@dataclass
class SequenceRun:
    stamps_ns: np.ndarray
    true_world_from_cam: np.ndarray
    results: list[Result]
    names: list[str] | None = None  # the frames' image names (default: their stamps)

    def estimates(self) -> list[np.ndarray | None]:
        return [r.world_from_cam if r.localized else None for r in self.results]


def run_sequence(localizer: Localizer, images: ImageSet, stamps_ns: np.ndarray) -> SequenceRun:
    if images.world_from_cam is None:
        raise ValueError("evaluation needs ground-truth poses (--gt TUM); `pram localize` runs without")
    results = localize_frames(localizer, images, stamps_ns)
    return SequenceRun(np.asarray(stamps_ns), np.asarray(images.world_from_cam), results, list(images.names))


def sequence_name(info: dict, out: Path) -> str:
    """The sequence's name: info's "sequence", else the folder holding the bag or images
    (demo/world/foreign/bag -> foreign), else the report folder's name."""
    if info.get("sequence"):
        return str(info["sequence"])
    source = info.get("bag") or info.get("images")
    if source:
        path = Path(source)
        return path.parent.name if path.name in ("bag", "images") and path.parent.name else path.name
    return Path(out).name


def write_report(out: Path, run: SequenceRun, info: dict) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    estimates = run.estimates()
    metrics = sequence_metrics(run.true_world_from_cam, estimates, [r.timings_ms for r in run.results])
    metrics["states"] = {state: sum(r.state.name == state for r in run.results)
                         for state in ("RELOCALIZED", "TRACKED", "LOST")}
    metrics = {"sequence": sequence_name(info, out), **info, **metrics}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    localized = [i for i, e in enumerate(estimates) if e is not None]
    save_tum(out / "trajectory.tum", run.stamps_ns[localized],
             np.array([estimates[i] for i in localized]).reshape(-1, 4, 4))
    # Which frames were evaluated, and why each LOST one was: a live run evaluates only
    # the frames the node processed.
    write_frames_csv(out / "frames.csv", run.names or [str(int(s)) for s in run.stamps_ns], run.stamps_ns, run.results)
    _plot(out, run, estimates, metrics)
    return metrics


def _label(metrics: dict) -> str:
    method = metrics.get("method")
    return f"{metrics.get('sequence', '?')}" + (f" ({method})" if method else "")


def _title(metrics: dict, what: str) -> str:
    return f"{_label(metrics)}: {what}"


def _plot(out: Path, run: SequenceRun, estimates: list, metrics: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, draw in (("trajectory.png", _plot_trajectory), ("error_cdf.png", _plot_error_cdf),
                       ("latency.png", _plot_latency)):
        figure = draw(plt, run, estimates, metrics)
        figure.savefig(out / name, dpi=100)
        plt.close(figure)


def _plot_trajectory(plt, run: SequenceRun, estimates: list, metrics: dict):
    truth_xy = run.true_world_from_cam[:, :2, 3].reshape(-1, 2)
    figure, axes = plt.subplots(figsize=(6, 6))
    axes.plot(truth_xy[:, 0], truth_xy[:, 1], "-", color="0.6", label="ground truth")
    found = np.array([e[:2, 3] for e in estimates if e is not None]).reshape(-1, 2)
    axes.plot(found[:, 0], found[:, 1], ".", color="tab:blue", markersize=4, label=f"localized ({len(found)})")
    wrong = metrics.get("wrong_frames", [])
    if wrong:
        bad = np.array([estimates[i][:2, 3] for i in wrong])
        axes.plot(bad[:, 0], bad[:, 1], "D", color="tab:orange", markersize=5, fillstyle="none",
                  label=f"wrong, > {WRONG_T_M} m or {WRONG_R_DEG:g}° ({len(wrong)})")
    lost = [i for i, e in enumerate(estimates) if e is None]
    if lost:
        # Where the camera really was: a LOST frame has no estimate to draw.
        axes.plot(truth_xy[lost, 0], truth_xy[lost, 1], "x", color="tab:red", markersize=5,
                  label=f"LOST, true position ({len(lost)})")
    axes.set_aspect("equal", adjustable="datalim")
    axes.set_xlabel("x (m)")
    axes.set_ylabel("y (m)")
    axes.legend(loc="best", fontsize="small")
    axes.set_title(_title(metrics, "trajectory, top view"))
    figure.tight_layout()
    return figure


def _log_ticks(axis, values: np.ndarray) -> None:
    """Readable ticks on a log axis: 1-2-5 within a short range, decades over a long one, plain
    numbers, no minor labels (matplotlib labels minor ticks of a short log axis, and they overlap)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    decades = np.log10(values.max() / values.min()) if len(values) else 0.0
    subs = (1.0, 2.0, 5.0) if decades <= 1.5 else (1.0,)
    axis.xaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=6))
    axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axis.xaxis.set_minor_formatter(NullFormatter())


def _plot_error_cdf(plt, run: SequenceRun, estimates: list, metrics: dict):
    errors = np.array([pose_errors(e, t) for e, t in zip(estimates, run.true_world_from_cam)
                       if e is not None]).reshape(-1, 2)
    frames = len(estimates)
    title = _title(metrics, "error CDF (LOST frames never count)")
    if not len(errors):
        figure, axes = plt.subplots(figsize=(10, 4))
        axes.axis("off")
        note = f"no frame localized ({frames} frames LOST)"
        if metrics.get("unmapped"):
            note += "\nas expected: the map does not hold this place"
        axes.text(0.5, 0.5, note, ha="center", va="center", fontsize=16)
        axes.set_title(title)
        return figure
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for axis, column, unit, scale in ((left, 0, "cm", 100.0), (right, 1, "deg", 1.0)):
        # A zero error has no place on a log axis: floor it far below any threshold.
        values = np.maximum(np.sort(errors[:, column] * scale), 1e-3)
        # Over all frames: a LOST frame never counts as within any threshold.
        axis.step(values, np.arange(1, len(values) + 1) / frames, where="post")
        axis.set_xscale("log")
        # Some room either side, so that the extreme errors are not on the frame.
        axis.set_xlim(values[0] / 1.5, values[-1] * 1.5)
        _log_ticks(axis, values)
        axis.set_xlabel(f"error ({unit})")
        axis.set_ylabel("share of all frames")
        axis.set_ylim(0, 1)
        axis.grid(True, alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def ordered_stages(latency: dict) -> list[str]:
    """The stages of `latency` in pipeline order, total last, without the node's latency."""
    stages = [s for s in STAGE_ORDER if s in latency]
    stages += sorted(s for s in latency if s not in stages and s not in ("total_ms", NODE_LATENCY))
    return stages + (["total_ms"] if "total_ms" in latency else [])


def _plot_latency(plt, run: SequenceRun, estimates: list, metrics: dict):
    latency = metrics.get("latency_ms", {})
    stages = ordered_stages(latency)
    node = latency.get(NODE_LATENCY)
    if node:
        figure, (axes, node_axes) = plt.subplots(1, 2, figsize=(9, 4), width_ratios=(max(len(stages), 1), 1.5))
    else:
        figure, axes = plt.subplots(figsize=(7, 4))
    positions = np.arange(len(stages))
    axes.bar(positions - 0.2, [latency[s]["p50"] for s in stages], width=0.4, label="p50")
    axes.bar(positions + 0.2, [latency[s]["p90"] for s in stages], width=0.4, label="p90")
    axes.set_xticks(positions, [s.removesuffix("_ms") for s in stages], rotation=20)
    axes.set_ylabel("ms")
    axes.legend()
    axes.set_title(_title(metrics, "processing per stage"))
    if node:
        # Another quantity (queueing and transport included, on the wall clock): its own axes.
        node_axes.bar(["p50", "p90"], [node["p50"], node["p90"]], width=0.6, color="tab:gray", hatch="//")
        node_axes.set_xlabel("image stamp to publish")
        node_axes.set_ylabel("ms")
        node_axes.set_title("node latency")
    figure.tight_layout()
    return figure


def ground_truth_stamps(gt_tum: Path, count: int) -> np.ndarray:
    stamps, _ = load_tum(gt_tum)
    if len(stamps) != count:
        raise ValueError(f"{gt_tum}: {len(stamps)} poses for {count} images")
    return stamps


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def localized_count(metrics: dict) -> int:
    frames = metrics.get("frames") or 0
    if "states" in metrics:
        return frames - metrics["states"].get("LOST", 0)
    return round((metrics.get("localized_ratio") or 0.0) * frames)


def describe_metrics(metrics: dict) -> str:
    """One line per sequence: localized frames (plainly, when none), recall, median errors, wrong.

    No "nan": what was not measured is said, not printed as a number."""
    frames = metrics.get("frames") or 0
    name = _label(metrics)
    if not frames:
        return f"{name}: no frame evaluated"
    localized = localized_count(metrics)
    recall = f"recall 5 cm/5 deg {_ratio(metrics.get('recall_5cm_5deg'))}"
    if not localized:
        expected = ", as expected: the map does not hold this place" if metrics.get("unmapped") else ""
        return f"{name}: 0 of {frames} frames localized (all LOST{expected}), {recall}"
    text = (f"{name}: {localized} of {frames} frames localized ({_ratio(metrics.get('localized_ratio'))}), {recall}, "
            f"median {metrics['median_t_m'] * 100:.1f} cm / {metrics['median_r_deg']:.2f} deg, "
            f"wrong {_ratio(metrics.get('wrong_ratio'))}")
    if metrics.get("unmapped"):
        text += " (the map does not hold this place: every frame should be LOST)"
    return text


def machine_busy(metrics: dict) -> str | None:
    """Why a live run's numbers say more about the machine than the localizer, or None."""
    reasons = []
    in_bag = metrics.get("frames_in_bag")
    if in_bag and metrics.get("frames_processed", 0) < LOW_PROCESSED_RATIO * in_bag:
        reasons.append(f"only {metrics.get('frames_processed', 0)} of {in_bag} frames processed")
    load, cpus = metrics.get("load_avg_1min_start"), metrics.get("cpu_count")
    if load is not None and cpus and load > cpus:
        reasons.append(f"load average {load:.1f} on {cpus} CPUs before the run")
    return "; ".join(reasons) or None


def load_report(folder: Path) -> dict:
    path = Path(folder) / "metrics.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a report folder (`pram eval --out` writes metrics.json)")
    metrics = json.loads(path.read_text())
    metrics.setdefault("sequence", Path(folder).name)  # reports written before the name was stored
    return metrics


def summary_table(reports: list[dict]) -> str:
    """A text table, one row per report: sequence, method, frames, localized, recall, median
    errors ("-" when none localized), wrong, and processed/received frames of live runs."""
    header = ("sequence", "method", "frames", "localized", "recall 5cm/5deg", "median cm", "median deg", "wrong",
              "processed/received")
    rows = []
    for metrics in reports:
        frames = metrics.get("frames") or 0
        localized = localized_count(metrics)
        median_t, median_r = metrics.get("median_t_m"), metrics.get("median_r_deg")
        live = "frames_in_bag" in metrics
        received = metrics.get("frames_in_bag", 0) - metrics.get("not_received", 0)
        rows.append((str(metrics.get("sequence", "?")), str(metrics.get("method", "-")), str(frames),
                     f"{localized}/{frames} {_ratio(metrics.get('localized_ratio'))}",
                     _ratio(metrics.get("recall_5cm_5deg")),
                     "-" if median_t is None else f"{median_t * 100:.1f}",
                     "-" if median_r is None else f"{median_r:.2f}",
                     _ratio(metrics.get("wrong_ratio")),
                     f"{metrics.get('frames_processed', 0)}/{received}" if live else "-"))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    for metrics in reports:
        if metrics.get("unmapped") and metrics.get("frames"):
            localized = localized_count(metrics)
            lines.append(f"{metrics.get('sequence')}: a place the map does not hold: "
                         + ("every frame LOST, as expected" if not localized else
                            f"{localized} frames localized that should be LOST"))
    busy = [f"{m.get('sequence')}: {reason}" for m in reports if (reason := machine_busy(m))]
    if busy:
        lines.append("warning: live results depend on a free CPU (" + "; ".join(busy) + ")")
    return "\n".join(lines)
