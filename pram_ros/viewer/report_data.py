"""Read a `pram eval` report or a `pram localize` output back, one row per frame.

In: REPORT/ from `pram eval` (metrics.json, frames.csv, trajectory.tum; evaluation/report.py)
or OUT/ from `pram localize` (summary.json, frames.csv, trajectory.tum; evaluation/localize.py), and
the ground truth (a TUM file; for a report, found beside its images or bag when not given).
Out: a `FrameTrack`: every frame's stamp, estimate (None when LOST), true pose and why it
was LOST, and the per-frame errors derived from them.

frames.csv lists the evaluated frames (for `pram eval --live`, those the node processed)
and why each LOST one was. Reports written before it existed store the localized frames
only: their LOST frames are the ground truth's frames without an estimate, which holds for
an offline `pram eval` (every frame) but not for a live run, whose LOST frames then stay
unmarked (the estimates and their errors are still shown).
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pram_ros.evaluation.metrics import pose_errors
from pram_ros.io.tum import load_tum

logger = logging.getLogger(__name__)

# A trajectory stamp and a ground-truth stamp this close are the same frame (bags restamp
# nothing, but a TUM file written elsewhere may round to microseconds).
STAMP_TOLERANCE_NS = 1_000_000


@dataclass
class FrameTrack:
    """One sequence as a report or a localize output holds it; N frames."""

    kind: str  # "eval" (`pram eval` report) or "localize" (`pram localize` output)
    name: str
    stamps_ns: np.ndarray  # [N] int64
    estimates: list[np.ndarray | None]  # [N] world_from_cam 4x4, None: LOST
    truth: np.ndarray | None  # [N x 4 x 4] world_from_cam, None: no ground truth
    reasons: list[str] = field(default_factory=list)  # [N] why LOST ("" when localized or not stored)
    wrong_frames: list[int] = field(default_factory=list)  # indices into the N frames
    lost_known: bool = True  # False: only the localized frames are listed (see the module docstring)
    inliers: list[int] | None = None  # [N] localize output only

    @property
    def lost_frames(self) -> list[int]:
        return [i for i, e in enumerate(self.estimates) if e is None] if self.lost_known else []

    def errors(self) -> np.ndarray:
        """[N x 2] translation (m) and rotation (deg) error per frame; NaN where LOST or without truth."""
        errors = np.full((len(self.estimates), 2), np.nan)
        if self.truth is not None:
            for i, estimate in enumerate(self.estimates):
                if estimate is not None:
                    errors[i] = pose_errors(estimate, self.truth[i])
        return errors


def load_frames(folder: Path, gt_tum: Path | None = None) -> FrameTrack:
    """The folder's frames (either kind), with the ground truth when found."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such report folder")
    if (folder / "metrics.json").is_file():
        return _load_eval_report(folder, gt_tum)
    if (folder / "summary.json").is_file() and (folder / "frames.csv").is_file():
        return _load_localize_output(folder, gt_tum)
    raise FileNotFoundError(f"{folder}: neither a `pram eval` report (metrics.json) nor a `pram localize` "
                            "output (summary.json and frames.csv)")


def _trajectory(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    path = folder / "trajectory.tum"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (the localized frames)")
    return load_tum(path)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error.msg}, line {error.lineno})") from None


def report_ground_truth(info: dict) -> Path | None:
    """poses.tum beside the report's images or bag (the demo world's layout), if it is there."""
    source = info.get("images") or info.get("bag")
    candidate = Path(source).parent / "poses.tum" if source else None
    return candidate if candidate is not None and candidate.is_file() else None


def match_stamps(stamps_ns: np.ndarray, reference_ns: np.ndarray) -> np.ndarray:
    """[len(stamps_ns)] int: index of each stamp in `reference_ns` (sorted or not), -1 when none is close."""
    reference_ns = np.asarray(reference_ns, np.int64)
    if not len(reference_ns):
        return np.full(len(stamps_ns), -1)
    order = np.argsort(reference_ns)
    ordered = reference_ns[order]
    stamps_ns = np.asarray(stamps_ns, np.int64)
    right = np.clip(np.searchsorted(ordered, stamps_ns), 1, len(ordered) - 1) if len(ordered) > 1 \
        else np.zeros(len(stamps_ns), np.int64)
    left = np.maximum(right - 1, 0)
    nearest = np.where(np.abs(ordered[left] - stamps_ns) <= np.abs(ordered[right] - stamps_ns), left, right)
    close = np.abs(ordered[nearest] - stamps_ns) <= STAMP_TOLERANCE_NS
    return np.where(close, order[nearest], -1)


def _load_eval_report(folder: Path, gt_tum: Path | None) -> FrameTrack:
    metrics = _read_json(folder / "metrics.json")
    name = str(metrics.get("sequence") or folder.name)
    stamps, poses = _trajectory(folder)
    gt_tum = Path(gt_tum) if gt_tum else report_ground_truth(metrics)
    if gt_tum is None:
        logger.warning("%s: no ground truth found beside %s: LOST frames and errors need --gt TUM",
                       folder, metrics.get("images") or metrics.get("bag") or "the report's input")
        return FrameTrack("eval", name, stamps, list(poses), None, [""] * len(stamps), lost_known=False)
    if (folder / "frames.csv").is_file():  # reports since 2026-12-05: the evaluated frames, and LOST reasons
        track = _load_localize_output(folder, gt_tum, name)
        # wrong_frames index the evaluated frames, the rows of frames.csv.
        track.wrong_frames = [int(i) for i in metrics.get("wrong_frames", []) if 0 <= int(i) < len(track.stamps_ns)]
        track.kind = "eval"
        return track
    truth_stamps, truth = load_tum(gt_tum)
    at = match_stamps(stamps, truth_stamps)
    frames = int(metrics.get("frames") or 0)
    if (at < 0).any() or frames != len(truth_stamps):
        # A live run, or another sequence's ground truth: list the matched estimates only.
        why = (f"{int((at < 0).sum())} of {len(stamps)} localized stamps are not in {gt_tum}" if (at < 0).any()
               else f"the report has {frames} frames, {gt_tum} {len(truth_stamps)}")
        logger.warning("%s: %s: LOST frames not marked", folder, why)
        keep = at >= 0
        return FrameTrack("eval", name, stamps[keep], list(poses[keep]), truth[at[keep]], [""] * int(keep.sum()),
                          lost_known=False)
    estimates: list[np.ndarray | None] = [None] * len(truth_stamps)
    for row, index in enumerate(at):
        estimates[index] = poses[row]
    # wrong_frames index the evaluated frames, which are the ground truth's frames here.
    wrong = [int(i) for i in metrics.get("wrong_frames", []) if 0 <= int(i) < len(truth_stamps)]
    # A report does not store why a frame was LOST (a `pram localize` output does).
    return FrameTrack("eval", name, truth_stamps, estimates, truth, [""] * len(estimates), wrong_frames=wrong)


def _load_localize_output(folder: Path, gt_tum: Path | None, name: str | None = None) -> FrameTrack:
    """frames.csv (a `pram localize` output, or a report that has one) with its trajectory."""
    if name is None:
        summary = _read_json(folder / "summary.json")
        source = summary.get("images") or summary.get("bag")
        name = Path(source).parent.name if source else folder.name
    stamps, poses = _trajectory(folder)
    rows = _read_frames_csv(folder / "frames.csv")
    frame_stamps = np.array([row["stamp_ns"] for row in rows], np.int64)
    at = match_stamps(stamps, frame_stamps)
    if (at < 0).any():
        raise ValueError(f"{folder / 'trajectory.tum'}: {int((at < 0).sum())} stamps not in frames.csv")
    estimates: list[np.ndarray | None] = [None] * len(rows)
    for row, index in enumerate(at):
        estimates[index] = poses[row]
    truth = None
    if gt_tum:
        truth_stamps, truth_poses = load_tum(Path(gt_tum))
        truth_at = match_stamps(frame_stamps, truth_stamps)
        if (truth_at < 0).all() and len(truth_stamps) == len(rows):
            # `pram localize --images` stamps frames by --rate-hz, not by the TUM file: the
            # same number of frames in name order is the same frames.
            logger.info("%s: no stamp of %s matches; frames taken in order", folder, gt_tum)
            truth_at = np.arange(len(rows))
        if (truth_at < 0).any():
            raise ValueError(f"{gt_tum}: no pose for {int((truth_at < 0).sum())} of the {len(rows)} frames "
                             f"of {folder / 'frames.csv'}")
        truth = truth_poses[truth_at]
    reasons = ["" if e is not None else f"{row['reason_code']}: {row['reason']}" for e, row in zip(estimates, rows)]
    return FrameTrack("localize", name, frame_stamps, estimates, truth, reasons,
                      inliers=[row["inliers"] for row in rows])


def _read_frames_csv(path: Path) -> list[dict]:
    with path.open(newline="") as file:
        rows = list(csv.DictReader(file))
    for number, row in enumerate(rows, start=2):
        try:
            row["stamp_ns"] = int(row["stamp_ns"])
            row["inliers"] = int(row.get("inliers") or 0)
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}:{number}: expected integer stamp_ns and inliers columns") from None
    return rows
