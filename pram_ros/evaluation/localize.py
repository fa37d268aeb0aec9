"""`pram localize`: run a localizer over images without ground truth, write what it found.

In: a `Localizer` (or any method's), an `ImageSet` (poses not needed) and a stamp per
image. Out, in OUT/: trajectory.tum (the localized frames, world_from_cam), frames.csv (one
row a frame: state, why it was LOST (code and words), inliers, landmarks, what relocalization searched,
milliseconds per stage), summary.json, and trajectory.png (top view of the localized
frames). `pram eval` is the one with ground truth.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
from pram_ros.progress import progress

from pram_ros.io.imageset import ImageSet
from pram_ros.io.tum import save_tum
from pram_ros.localization import Result

# The localizer's stages in the order a frame runs through them (retrieval: the baseline's
# stand-in for recognition; continuity: the check after registration).
STAGE_ORDER = ("features_ms", "retrieval_ms", "recognition_ms", "tracking_ms", "registration_ms", "continuity_ms")
STAGES = (*STAGE_ORDER, "total_ms")
FRAME_COLUMNS_MS = (*STAGES, "node_latency_ms")  # frames.csv's; the last only in live runs


def localize_frames(localizer, images: ImageSet, stamps_ns: np.ndarray) -> list[Result]:
    """Every image through the localizer, in order, with the images' own camera."""
    if len(stamps_ns) != len(images.names):
        raise ValueError(f"{len(stamps_ns)} stamps for {len(images.names)} images")
    results = []
    for index, rgb in progress(images.frames(), total=len(images.names), desc="localize", unit="frame", leave=False):
        localizer.set_camera(*images.camera_of(index))  # the undistorted image's camera
        results.append(localizer.process(rgb, int(stamps_ns[index])))
    return results


def write_localization(out: Path, names: list[str], stamps_ns: np.ndarray, results: list[Result],
                       info: dict) -> dict:
    """The files listed in the module docstring; returns the summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    localized = [i for i, r in enumerate(results) if r.localized]
    save_tum(out / "trajectory.tum", np.asarray(stamps_ns)[localized],
             np.array([results[i].world_from_cam for i in localized]).reshape(-1, 4, 4))
    write_frames_csv(out / "frames.csv", names, stamps_ns, results)
    totals = np.array([r.timings_ms["total_ms"] for r in results if "total_ms" in r.timings_ms])
    summary = {
        **info,
        "frames": len(results),
        "localized_ratio": round(len(localized) / len(results), 6) if results else 0.0,
        "states": {state: sum(r.state.name == state for r in results) for state in ("RELOCALIZED", "TRACKED", "LOST")},
        "lost_reasons": _count(r.reason.name for r in results if not r.localized),
        "lost_messages": _count(re.sub(r"\d+(\.\d+)?", "N", r.message or "unknown")
                                for r in results if not r.localized),
        "total_ms": {"p50": _ms(np.percentile(totals, 50)), "p90": _ms(np.percentile(totals, 90))} if len(totals)
        else {},
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    _plot(out / "trajectory.png", results, info.get("images") or info.get("bag") or "")
    return summary


def write_frames_csv(path: Path, names: list[str], stamps_ns: np.ndarray, results: list[Result]) -> None:
    """One row a frame: state, why it was LOST (code and words), inliers, landmarks, what
    relocalization searched, milliseconds per stage and, in live runs, the node's latency from
    the image stamp (`pram eval` reports write it too)."""
    with Path(path).open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["index", "name", "stamp_ns", "state", "reason_code", "reason", "inliers", "candidates",
                         "landmarks", "search", *FRAME_COLUMNS_MS])
        for index, (name, stamp, result) in enumerate(zip(names, stamps_ns, results)):
            writer.writerow([index, name, int(stamp), result.state.name, result.reason.name, result.message,
                             result.num_inliers, result.num_candidates,
                             " ".join(str(int(k)) for k in result.landmark_ids), result.search,
                             *(_ms(result.timings_ms.get(column)) for column in FRAME_COLUMNS_MS)])


def _ms(value) -> float | str:
    return "" if value is None else round(float(value), 3)


def _count(kinds) -> dict[str, int]:
    """How often each kind occurred, the commonest first (messages with numbers replaced by N)."""
    counts: dict[str, int] = {}
    for kind in kinds:
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def _plot(path: Path, results: list[Result], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xy = np.array([r.world_from_cam[:2, 3] for r in results if r.localized]).reshape(-1, 2)
    figure, axes = plt.subplots(figsize=(6, 6))
    if len(xy):
        axes.plot(xy[:, 0], xy[:, 1], ".-", color="tab:blue", markersize=4, linewidth=0.5,
                  label=f"localized ({len(xy)} of {len(results)})")
        axes.legend(loc="best")
    else:
        axes.text(0.5, 0.5, f"no frame localized (all {len(results)} LOST)", ha="center", va="center",
                  transform=axes.transAxes)
    axes.set_title(f"{title}: top view", fontsize=9)
    axes.set_xlabel("x (m)")
    axes.set_ylabel("y (m)")
    axes.set_aspect("equal", adjustable="datalim")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
