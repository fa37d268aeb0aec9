"""A report's frames in a rerun recording: trajectories, LOST frames, errors over time.

In: a `FrameTrack` (report_data.py). Out, under `world/report/` (the map frame, metres):
  ground_truth   LineStrips3D, the true camera path (when the ground truth is known)
  estimate       Points3D, the localized camera centres
  lost           Points3D, the LOST frames at their true positions, labelled with the frame
  wrong          Points3D, the estimates more than 0.5 m or 5 deg off (evaluation/metrics.py)
  frame          Points3D per frame on the timelines: where the camera is and was estimated
and, on the timelines `frame` (index) and `stamp` (the image stamp):
  errors/translation_m, errors/rotation_deg   per localized frame with ground truth
  state/localized                             1 localized, 0 LOST
  state/inliers                               `pram localize` output only
  log                                         a TextLog line per LOST frame with its reason
The colours are the report plots' (evaluation/report.py): truth gray, estimates blue, LOST
red, wrong orange.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import rerun as rr

from pram_ros.viewer.map_view import POINT_RADIUS_UI, WORLD, log_world_frame
from pram_ros.viewer.report_data import FrameTrack

logger = logging.getLogger(__name__)

REPORT = f"{WORLD}/report"
TRUTH_RGB8 = (150, 150, 150)
ESTIMATE_RGB8 = (31, 119, 180)
LOST_RGB8 = (214, 39, 40)
WRONG_RGB8 = (255, 127, 14)
MARKER_RADIUS_UI = 2.0 * POINT_RADIUS_UI  # the frames stand out from the map's points


@dataclass
class ReportSummary:
    frames: int
    localized: int
    lost: int | None  # None: not known (see report_data.py)
    wrong: int
    with_truth: bool

    def describe(self) -> str:
        lost = "LOST frames unknown" if self.lost is None else f"{self.lost} LOST"
        truth = "" if self.with_truth else ", no ground truth"
        return f"{self.frames} frames: {self.localized} localized, {lost}, {self.wrong} wrong{truth}"


def log_report(recording: rr.RecordingStream, track: FrameTrack) -> ReportSummary:
    """Log the entities of the module docstring; -> what was logged, in counts."""
    log_world_frame(recording)
    localized = [i for i, e in enumerate(track.estimates) if e is not None]
    centres = np.array([track.estimates[i][:3, 3] for i in localized]).reshape(-1, 3)
    recording.log(f"{REPORT}/estimate", rr.Points3D(centres, colors=ESTIMATE_RGB8,
                                                     radii=rr.Radius.ui_points(MARKER_RADIUS_UI)), static=True)
    lost, wrong = track.lost_frames, track.wrong_frames
    if wrong:
        recording.log(f"{REPORT}/wrong", rr.Points3D([track.estimates[i][:3, 3] for i in wrong], colors=WRONG_RGB8,
                                                      labels=[f"wrong {i}" for i in wrong],
                                                      radii=rr.Radius.ui_points(MARKER_RADIUS_UI)), static=True)
    if track.truth is not None:
        recording.log(f"{REPORT}/ground_truth", rr.LineStrips3D([track.truth[:, :3, 3]], colors=TRUTH_RGB8),
                      static=True)
        if lost:
            recording.log(f"{REPORT}/lost", rr.Points3D(track.truth[lost, :3, 3], colors=LOST_RGB8,
                                                         labels=[f"LOST {i}" for i in lost],
                                                         radii=rr.Radius.ui_points(MARKER_RADIUS_UI)), static=True)
    elif lost:
        logger.info("no ground truth: the %d LOST frames are in the log, not in the 3D view", len(lost))
    _log_frames(recording, track)
    return ReportSummary(len(track.estimates), len(localized), len(lost) if track.lost_known else None, len(wrong),
                         track.truth is not None)


def _set_frame_time(recording: rr.RecordingStream, index: int, stamp_ns: int) -> None:
    recording.set_time("frame", sequence=index)
    recording.set_time("stamp", timestamp=np.datetime64(int(stamp_ns), "ns"))


def _log_frames(recording: rr.RecordingStream, track: FrameTrack) -> None:
    errors = track.errors()
    for i, (stamp_ns, estimate) in enumerate(zip(track.stamps_ns, track.estimates)):
        _set_frame_time(recording, i, stamp_ns)
        recording.log("state/localized", rr.Scalars(float(estimate is not None)))
        if track.inliers is not None:
            recording.log("state/inliers", rr.Scalars(float(track.inliers[i])))
        if not np.isnan(errors[i, 0]):
            recording.log("errors/translation_m", rr.Scalars(errors[i, 0]))
            recording.log("errors/rotation_deg", rr.Scalars(errors[i, 1]))
        where, colors = [], []
        if track.truth is not None:
            where.append(track.truth[i, :3, 3])
            colors.append(TRUTH_RGB8 if estimate is not None else LOST_RGB8)
        if estimate is not None:
            where.append(estimate[:3, 3])
            colors.append(ESTIMATE_RGB8)
        recording.log(f"{REPORT}/frame", rr.Points3D(np.reshape(where, (-1, 3)), colors=colors,
                                                      radii=rr.Radius.ui_points(3 * MARKER_RADIUS_UI)))
        if estimate is None and track.lost_known:
            recording.log("log", rr.TextLog(f"frame {i}: LOST ({track.reasons[i] or 'why is not stored'})",
                                            level=rr.TextLogLevel.WARN))
    recording.reset_time()
