"""`pram eval` for localization: run the Localizer over a query sequence, write a report.

In: a `Localizer` and an `ImageSet` with ground-truth poses (a folder with a TUM file).
Out, in REPORT/: metrics.json (evaluation/metrics.py, plus the method and the input),
trajectory.tum (the localized frames, world_from_cam; evo reads it), trajectory.png (top
view against the ground truth), error_cdf.png and latency.png (p50/p90 per stage).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pram_ros.evaluation.localize import localize_frames
from pram_ros.evaluation.metrics import pose_errors, sequence_metrics
from pram_ros.io.imageset import ImageSet
from pram_ros.io.tum import load_tum, save_tum
from pram_ros.localization import Localizer, Result


@dataclass
class SequenceRun:
    stamps_ns: np.ndarray
    true_world_from_cam: np.ndarray
    results: list[Result]

    def estimates(self) -> list[np.ndarray | None]:
        return [r.world_from_cam if r.localized else None for r in self.results]


def run_sequence(localizer: Localizer, images: ImageSet, stamps_ns: np.ndarray) -> SequenceRun:
    if images.world_from_cam is None:
        raise ValueError("evaluation needs ground-truth poses (--gt TUM); `pram localize` runs without")
    results = localize_frames(localizer, images, stamps_ns)
    return SequenceRun(np.asarray(stamps_ns), np.asarray(images.world_from_cam), results)


def write_report(out: Path, run: SequenceRun, info: dict) -> dict:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    estimates = run.estimates()
    metrics = sequence_metrics(run.true_world_from_cam, estimates, [r.timings_ms for r in run.results])
    metrics["states"] = {state: sum(r.state.name == state for r in run.results)
                         for state in ("RELOCALIZED", "TRACKED", "LOST")}
    metrics = {**info, **metrics}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    localized = [i for i, e in enumerate(estimates) if e is not None]
    save_tum(out / "trajectory.tum", run.stamps_ns[localized],
             np.array([estimates[i] for i in localized]).reshape(-1, 4, 4))
    _plot(out, run, estimates, metrics)
    return metrics


def _plot(out: Path, run: SequenceRun, estimates: list, metrics: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth_xy = run.true_world_from_cam[:, :2, 3]
    figure, axes = plt.subplots(figsize=(6, 6))
    axes.plot(truth_xy[:, 0], truth_xy[:, 1], "-", color="0.6", label="ground truth")
    found = np.array([e[:2, 3] for e in estimates if e is not None]).reshape(-1, 2)
    axes.plot(found[:, 0], found[:, 1], ".", color="tab:blue", markersize=4, label="localized")
    wrong = metrics.get("wrong_frames", [])
    if wrong:
        bad = np.array([estimates[i][:2, 3] for i in wrong])
        axes.plot(bad[:, 0], bad[:, 1], "x", color="tab:red", label="wrong (> 0.5 m or 5°)")
    axes.set_aspect("equal")
    axes.set_xlabel("x (m)")
    axes.set_ylabel("y (m)")
    axes.legend(loc="best")
    axes.set_title("trajectory, top view")
    figure.savefig(out / "trajectory.png", dpi=100)
    plt.close(figure)

    errors = np.array([pose_errors(e, t) for e, t in zip(estimates, run.true_world_from_cam) if e is not None])
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    frames = max(len(estimates), 1)
    for axis, column, unit, scale in ((left, 0, "cm", 100.0), (right, 1, "deg", 1.0)):
        values = np.sort(errors[:, column] * scale) if len(errors) else np.zeros(0)
        # Over all frames: a LOST frame never counts as within any threshold.
        axis.step(values, np.arange(1, len(values) + 1) / frames, where="post")
        axis.set_xscale("log")
        axis.set_xlabel(f"error ({unit})")
        axis.set_ylabel("share of frames")
        axis.set_ylim(0, 1)
        axis.grid(True, alpha=0.3)
    figure.suptitle("error CDF (LOST frames never count)")
    figure.savefig(out / "error_cdf.png", dpi=100)
    plt.close(figure)

    latency = metrics.get("latency_ms", {})
    figure, axes = plt.subplots(figsize=(7, 4))
    stages = list(latency)
    positions = np.arange(len(stages))
    axes.bar(positions - 0.2, [latency[s]["p50"] for s in stages], width=0.4, label="p50")
    axes.bar(positions + 0.2, [latency[s]["p90"] for s in stages], width=0.4, label="p90")
    axes.set_xticks(positions, stages, rotation=20)
    axes.set_ylabel("ms")
    axes.legend()
    axes.set_title("latency per stage")
    figure.tight_layout()
    figure.savefig(out / "latency.png", dpi=100)
    plt.close(figure)


def ground_truth_stamps(gt_tum: Path, count: int) -> np.ndarray:
    stamps, _ = load_tum(gt_tum)
    if len(stamps) != count:
        raise ValueError(f"{gt_tum}: {len(stamps)} poses for {count} images")
    return stamps
