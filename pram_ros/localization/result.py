"""What a localizer returns per frame: the `State`, the `Reason` and the `Result` dataclass."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

LOST_VARIANCE = 1e6  # per axis while not localized: "anywhere"


class State(enum.IntEnum):
    """Mirrors pram_ros/msg/LocalizationStatus."""

    UNINITIALIZED = 0
    RELOCALIZED = 1
    TRACKED = 2
    LOST = 3


class Reason(enum.IntEnum):
    """Why a frame has no pose; mirrors LocalizationStatus.REASON_* (the node adds the
    first three and the last two, which happen before or around the localizer)."""

    NONE = 0
    NO_CAMERA_INFO = 1
    UNDECODABLE_IMAGE = 2
    CAMERA_MISMATCH = 3
    TOO_FEW_FEATURES = 4
    NOT_RECOGNIZED = 5
    GATE_FAILED = 6
    LOOK_ALIKE_HELD = 7
    JUMP_HELD = 8
    PROCESSING_ERROR = 9
    INACTIVE = 10


@dataclass
class Result:
    stamp_ns: int
    state: State
    cam_from_world: np.ndarray | None = None  # 4x4; None unless localized
    # 6x6 over (rotation [rad], translation [m]) of cam_from_world, as pycolmap estimates it;
    # LOST_VARIANCE on the diagonal while not localized.
    covariance: np.ndarray = field(default_factory=lambda: np.eye(6) * LOST_VARIANCE)
    landmark_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    num_inliers: int = 0
    num_candidates: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)
    message: str = ""  # why a frame is LOST, in words
    reason: Reason = Reason.NONE  # and as a code
    # What a relocalization matched against: "top 3 landmarks", widened to "12 landmarks" or
    # "all 981 points" when the gate failed ("" for tracked frames).
    search: str = ""
    # For drawing: this frame's keypoints [N x 2], the landmark recognition gave each (0
    # background, -1 not recognized on this frame) and the PnP inliers' pixels [M x 2].
    keypoints_uv: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    keypoint_landmarks: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    inliers_uv: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    inlier_points: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # their map points

    @property
    def localized(self) -> bool:
        return self.state in (State.RELOCALIZED, State.TRACKED)

    @property
    def inlier_ratio(self) -> float:
        return self.num_inliers / self.num_candidates if self.num_candidates else 0.0

    @property
    def world_from_cam(self) -> np.ndarray | None:
        return None if self.cam_from_world is None else np.linalg.inv(self.cam_from_world)


def lost(stamp_ns: int, reason: Reason, message: str, **fields) -> Result:
    """A LOST result saying why."""
    return Result(stamp_ns, State.LOST, message=message, reason=reason, **fields)


class Unusable(NamedTuple):
    """Why a frame cannot be localized at all, before any registration."""

    reason: Reason
    message: str
