"""The track: the poses accepted so far and what following them from frame to frame needs.

`Track` owns the last two accepted poses (for a constant-velocity prediction), the last
accepted frame's PnP inliers and gray image (for optical flow), and how many tracked
frames ago recognition last checked it. The localizer tells it what was accepted
(`accept`) or lost (`drop`); `follow_flow` registers a frame by optical flow (KLT) of the
last inliers and changes nothing: the caller accepts what passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pram_ros.localization.config import LocalizerConfig
from pram_ros.localization.registration import Camera, MapPoints, Outcome, Registration, estimate_pose, gate
from pram_ros.localization.result import State

_KLT_WINDOW = dict(winSize=(21, 21), maxLevel=3, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))


@dataclass
class FlowOutcome:
    """An optical-flow frame: the registration's verdict and the points followed into it."""

    outcome: Outcome
    followed_uv: np.ndarray  # [N x 2] pixels of the inliers followed into this frame


class Track:
    def __init__(self) -> None:
        self.drop()

    def drop(self) -> None:
        """Forget the track (a LOST frame): the next frame relocalizes."""
        self.poses: list[np.ndarray] = []  # the last two accepted cam_from_world
        self.frames_since_check = 0
        self.strongest_inliers = 0  # the most inliers since the last relocalization or recheck
        self.inliers_uv = np.zeros((0, 2), np.float32)  # the last accepted frame's PnP inliers
        self.inlier_points = np.zeros(0, np.int64)
        self.flow_gray: np.ndarray | None = None  # the last accepted frame, for optical flow
        self.flow_frames = 0  # optical-flow frames in a row since it

    def start_from(self, cam_from_world: np.ndarray, frames_since_check: int = 0) -> None:
        """Track from this pose on the next frame (a hint, or a held jump's pose)."""
        self.drop()
        self.poses = [np.asarray(cam_from_world, np.float64)]
        self.frames_since_check = frames_since_check

    @property
    def active(self) -> bool:
        return bool(self.poses)

    def accept(self, registration: Registration, state: State) -> None:
        """A registration passed the gate: it is the track's latest pose."""
        self.poses = (self.poses + [registration.cam_from_world])[-2:]
        self.inliers_uv, self.inlier_points = registration.inliers_uv, registration.inlier_points
        if state == State.RELOCALIZED:
            self.frames_since_check = 0
            self.strongest_inliers = registration.num_inliers
        elif state == State.TRACKED:
            self.frames_since_check += 1
            self.strongest_inliers = max(self.strongest_inliers, registration.num_inliers)

    def weakened(self, inliers: int, ratio: float) -> bool:
        """Has the track fallen below `ratio` of its strongest inliers (relocalizing may do better)?"""
        return inliers < ratio * self.strongest_inliers

    def rechecked(self, inliers: int) -> None:
        """Relocalization did no better than `inliers`: the track is measured from here."""
        self.strongest_inliers = inliers

    def predicted_pose(self) -> np.ndarray:
        """Constant velocity when two poses are known, else the last pose."""
        if len(self.poses) < 2:
            return self.poses[-1]
        previous, last = self.poses
        return (last @ np.linalg.inv(previous)) @ last

    def due_for_check(self, every: int) -> bool:
        return every > 0 and self.frames_since_check >= every

    def full_frame_done(self, gray: np.ndarray) -> None:
        """A frame with features accepted: optical flow starts again from it."""
        self.flow_gray, self.flow_frames = gray, 0

    def flow_ready(self, config: LocalizerConfig) -> bool:
        return (config.tracking and self.flow_gray is not None and self.flow_frames < config.klt_frames
                and len(self.inlier_points) >= config.min_track_inliers)

    def follow_flow(self, gray: np.ndarray, camera: Camera, index: MapPoints, config: LocalizerConfig) -> FlowOutcome:
        """The last frame's inliers followed by pyramidal optical flow (forward and back, so
        that a point that slid off its corner is dropped), then PnP against their map points."""
        previous_uv = self.inliers_uv.astype(np.float32).reshape(-1, 1, 2)
        uv, found, _ = cv2.calcOpticalFlowPyrLK(self.flow_gray, gray, previous_uv, None, **_KLT_WINDOW)
        back, found_back, _ = cv2.calcOpticalFlowPyrLK(gray, self.flow_gray, uv, None, **_KLT_WINDOW)
        uv, back = uv.reshape(-1, 2), back.reshape(-1, 2)
        keep = (found.ravel() == 1) & (found_back.ravel() == 1) & \
            (np.linalg.norm(back - previous_uv.reshape(-1, 2), axis=1) < 1.0) & \
            (uv[:, 0] >= 0) & (uv[:, 0] <= camera.width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= camera.height - 1)
        points = self.inlier_points[keep]
        registration = estimate_pose(camera, uv[keep], points, index.xyz[points], config.track_ransac_max_error_px)
        outcome = gate(registration, config.min_track_inliers, config.klt_min_inlier_ratio)
        followed = len(self.inlier_points)
        if outcome.accepted and registration.num_inliers < config.klt_min_kept_ratio * followed:
            # Between two photos far apart the flow finds a few of the points, and a pose from
            # those few is centimetres off: the full pipeline instead.
            outcome = Outcome(registration, f"optical flow kept {registration.num_inliers} of {followed} inliers")
        return FlowOutcome(outcome, uv[keep])

    def flow_accepted(self, gray: np.ndarray) -> None:
        """An optical-flow frame passed: the next one follows from it."""
        self.flow_gray, self.flow_frames = gray, self.flow_frames + 1
