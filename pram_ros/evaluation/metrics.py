"""Localization metrics over a sequence (DESIGN.md §3, REPORT/metrics.json).

In: per frame, the ground-truth world_from_cam, the reported world_from_cam (or None
when the frame was not localized) and the milliseconds per stage. Out: a dict with
  frames, localized_ratio,
  recall_5cm_5deg, recall_5cm_2deg, recall_25cm_2deg, recall_50cm_5deg  (share of all
                    frames; 5 cm/2 deg is the usual bar for photo sets),
  median_t_m, median_r_deg                              (over localized frames),
  wrong_ratio       share of all frames reported localized with error > 0.5 m or > 5 deg,
  latency_ms        {stage: {p50, p90}} including "total_ms".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pram_ros.geometry import pose_difference

THRESHOLDS = {"recall_5cm_5deg": (0.05, 5.0), "recall_5cm_2deg": (0.05, 2.0), "recall_25cm_2deg": (0.25, 2.0), "recall_50cm_5deg": (0.50, 5.0)}
WRONG_T_M, WRONG_R_DEG = 0.5, 5.0


def pose_errors(estimate_world_from_cam: np.ndarray, true_world_from_cam: np.ndarray) -> tuple[float, float]:
    """Camera-centre distance (m) and rotation angle (deg) between two world_from_cam poses."""
    return pose_difference(estimate_world_from_cam, true_world_from_cam)


def _round(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), 6)


def sequence_metrics(true_world_from_cam: Sequence[np.ndarray], estimates: Sequence[np.ndarray | None],
                     timings_ms: Sequence[dict[str, float]] | None = None) -> dict:
    if len(true_world_from_cam) != len(estimates):
        raise ValueError(f"{len(true_world_from_cam)} ground-truth poses for {len(estimates)} estimates")
    frames = len(estimates)
    errors = np.full((frames, 2), np.nan)
    for index, (truth, estimate) in enumerate(zip(true_world_from_cam, estimates)):
        if estimate is not None:
            errors[index] = pose_errors(np.asarray(estimate), np.asarray(truth))
    localized = ~np.isnan(errors[:, 0])
    result: dict = {"frames": frames, "localized_ratio": _round(localized.mean()) if frames else None}
    for name, (max_t, max_r) in THRESHOLDS.items():
        within = localized & (errors[:, 0] <= max_t) & (errors[:, 1] <= max_r)
        result[name] = _round(within.mean()) if frames else None
    result["median_t_m"] = _round(np.median(errors[localized, 0])) if localized.any() else None
    result["median_r_deg"] = _round(np.median(errors[localized, 1])) if localized.any() else None
    wrong = localized & ((errors[:, 0] > WRONG_T_M) | (errors[:, 1] > WRONG_R_DEG))
    result["wrong_ratio"] = _round(wrong.mean()) if frames else None
    result["wrong_frames"] = np.flatnonzero(wrong).tolist()
    result["latency_ms"] = latency_percentiles(timings_ms or [])
    return result


def latency_percentiles(timings_ms: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """p50 and p90 per stage, over the frames that ran the stage."""
    stages = sorted({stage for timing in timings_ms for stage in timing})
    latency = {}
    for stage in stages:
        values = np.array([timing[stage] for timing in timings_ms if stage in timing], dtype=float)
        latency[stage] = {"p50": round(float(np.percentile(values, 50)), 3),
                          "p90": round(float(np.percentile(values, 90)), 3), "frames": int(len(values))}
    return latency
