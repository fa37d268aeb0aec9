"""The track: the poses accepted so far and what following them from frame to frame needs.

`Track` owns the last two accepted poses (for a constant-velocity prediction), the last
accepted frame's PnP inliers and gray image (for optical flow; or a refreshed earlier
frame's, background.py), and how many tracked frames ago recognition last checked it. The
localizer tells it what was accepted (`accept`) or lost (`drop`); `follow_flow` registers a frame by optical flow (KLT) of the
last inliers and changes nothing: the caller accepts what passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from pram_ros.geometry import invert, pose_difference
from pram_ros.localization.config import LocalizerConfig
from pram_ros.localization.registration import Camera, MapPoints, Outcome, Registration, estimate_pose, gate
from pram_ros.localization.result import State

_RECENT_FRAMES = 32
_MAX_EXTRAPOLATION = 4.0  # times the last motion: beyond it the prediction is a guess
# Five pyramid levels: the demo's fast turn (5 degrees, 50-55 px a frame at 10 Hz) is followed
# with 50-64% of the inliers within 2 px of their true pixels, against 16-34% with four
# (frames 23-30 of query_offpath, 2026-12-07).
_KLT_WINDOW = dict(winSize=(21, 21), maxLevel=4, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))


@dataclass
class FlowOutcome:
    """An optical-flow frame: the registration's verdict and the points followed into it."""

    outcome: Outcome
    followed_uv: np.ndarray  # [N x 2] pixels of the inliers followed into this frame


class Track:
    def __init__(self) -> None:
        self.generation = 0  # one more each time the track is dropped or restarted
        self.drop()

    def drop(self) -> None:
        """Forget the track (a LOST frame): the next frame relocalizes."""
        self.generation += 1
        self.full_frame_next = False  # the next frame must take the full pipeline
        self.poses: list[np.ndarray] = []  # the last two accepted cam_from_world
        self.stamps_ns: list[int] = []  # theirs
        self.frames_since_check = 0
        self.strongest_inliers = 0  # the most inliers since the last relocalization or recheck
        self.inliers_uv = np.zeros((0, 2), np.float32)  # the last accepted frame's PnP inliers
        self.inlier_points = np.zeros(0, np.int64)
        self.flow_gray: np.ndarray | None = None  # the last accepted frame, for optical flow
        self.flow_frames = 0  # optical-flow frames in a row since it
        # (frame, gray) of the last accepted frames, oldest first: a refresh of one of them
        # is followed through the later ones.
        self.recent: list[tuple[int, np.ndarray]] = []

    def start_from(self, cam_from_world: np.ndarray, frames_since_check: int = 0, stamp_ns: int = 0) -> None:
        """Track from this pose on the next frame (a hint, or a held jump's pose)."""
        self.drop()
        self.poses, self.stamps_ns = [np.asarray(cam_from_world, np.float64)], [stamp_ns]
        self.frames_since_check = frames_since_check

    @property
    def active(self) -> bool:
        return bool(self.poses)

    def accept(self, registration: Registration, state: State, stamp_ns: int = 0) -> None:
        """A registration passed the gate: it is the track's latest pose."""
        self.poses = (self.poses + [registration.cam_from_world])[-2:]
        self.stamps_ns = (self.stamps_ns + [stamp_ns])[-2:]
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

    def predicted_pose(self, stamp_ns: int | None = None) -> np.ndarray:
        """Constant velocity when two poses are known, else the last pose. With stamps, the
        motion between the last two is scaled to the time since the last: a frame after
        dropped ones is predicted that much farther, one right after a gap not as far."""
        if len(self.poses) < 2:
            return self.poses[-1]
        previous, last = self.poses
        motion = last @ np.linalg.inv(previous)
        (previous_ns, last_ns), fraction = self.stamps_ns, 1.0
        if stamp_ns is not None and 0 < previous_ns < last_ns <= stamp_ns:  # 0: a start with no stamp
            fraction = min((stamp_ns - last_ns) / (last_ns - previous_ns), _MAX_EXTRAPOLATION)
        if fraction != 1.0:
            scaled = np.eye(4)
            scaled[:3, :3] = Rotation.from_rotvec(fraction * Rotation.from_matrix(motion[:3, :3]).as_rotvec()).as_matrix()
            scaled[:3, 3] = fraction * motion[:3, 3]
            motion = scaled
        return motion @ last

    def due_for_check(self, every: int) -> bool:
        return every > 0 and self.frames_since_check >= every

    def full_frame_done(self, gray: np.ndarray, frame: int) -> None:
        """A frame with features accepted: optical flow starts again from it."""
        self.flow_gray, self.flow_frames, self.full_frame_next = gray, 0, False
        self._remember(frame, gray)

    def refreshed(self, followed: Followed, camera: Camera, recognition_checked: bool,
                  strongest_inliers: int) -> None:
        """An earlier tracked frame registered again with features (background.py): its
        inliers, followed by optical flow through the frames accepted since (the worker
        followed them through those it saw), are what the next frame follows. The poses
        stay the newer frames'."""
        followed = follow_through(self.recent, followed, camera)
        self.flow_gray, self.flow_frames = followed.gray, 0
        self.inliers_uv, self.inlier_points = followed.uv, followed.points
        self.strongest_inliers = strongest_inliers
        if recognition_checked:
            self.frames_since_check = 0

    def refresh_failed(self) -> None:
        """A refresh of this track failed (background.py): the next frame takes the full pipeline."""
        self.full_frame_next = True

    def _remember(self, frame: int, gray: np.ndarray) -> None:
        self.recent = (self.recent + [(frame, gray)])[-_RECENT_FRAMES:]

    def flow_ready(self, config: LocalizerConfig, max_flow_frames: int | None = None) -> bool:
        """May the next frame be tracked by optical flow? At most `max_flow_frames` in a row
        (default `klt_frames`) since the last frame with features."""
        limit = config.klt_frames if max_flow_frames is None else max_flow_frames
        return (config.tracking and self.flow_gray is not None and self.flow_frames < limit
                and not self.full_frame_next and len(self.inlier_points) >= config.min_track_inliers)

    def follow_flow(self, gray: np.ndarray, camera: Camera, index: MapPoints, config: LocalizerConfig) -> FlowOutcome:
        """The last frame's inliers followed by pyramidal optical flow (forward and back, so
        that a point that slid off its corner is dropped), then PnP against their map points."""
        # From the last pixels, not from the predicted pose's projections: starting there let
        # more fast-turn frames pass on the CI world, with poses up to 5 degrees off.
        uv, keep = follow_points(self.flow_gray, gray, self.inliers_uv, camera)
        points = self.inlier_points[keep]
        registration = estimate_pose(camera, uv[keep], points, index.xyz[points], config.track_ransac_max_error_px)
        outcome = gate(registration, config.min_track_inliers, config.klt_min_inlier_ratio)
        followed = len(self.inlier_points)
        if outcome.accepted and registration.num_inliers < config.klt_min_kept_ratio * followed:
            # Between two photos far apart the flow finds a few of the points, and a pose from
            # those few is centimetres off: the full pipeline instead.
            outcome = Outcome(registration, f"optical flow kept {registration.num_inliers} of {followed} inliers")
        elif outcome.accepted:
            outcome = self._within_flow_baseline(outcome, config.klt_max_baseline_ratio)
        return FlowOutcome(outcome, uv[keep])

    def _within_flow_baseline(self, outcome: Outcome, max_ratio: float) -> Outcome:
        """The flow's outcome, refused when its camera moved farther than `max_ratio` of the
        median depth of its inliers: KLT follows patches that only shift, which holds for
        turns and small steps (the demo's frames: at most 0.15 four frames apart), not
        between photos metres apart (Strecha's fountain: 0.37-0.58, and poses 4-12 cm off
        that the flow's five pyramid levels found, 2026-12-07)."""
        registration = outcome.registration
        moved_m, _ = pose_difference(invert(registration.cam_from_world), invert(self.poses[-1]))
        cam_xyz = registration.inliers_xyz @ registration.cam_from_world[:3, :3].T + registration.cam_from_world[:3, 3]
        depth_m = float(np.median(cam_xyz[:, 2]))
        if moved_m > max_ratio * depth_m:
            return Outcome(registration, f"optical flow across {moved_m:.2f} m at {depth_m:.2f} m depth: "
                                         f"too far for it")
        return outcome

    def flow_accepted(self, gray: np.ndarray, frame: int) -> None:
        """An optical-flow frame passed: the next one follows from it."""
        self.flow_gray, self.flow_frames = gray, self.flow_frames + 1
        self._remember(frame, gray)


@dataclass(frozen=True)
class Followed:
    """Map points' pixels in one frame: where optical flow has followed them to."""

    frame: int  # the localizer's frame counter
    gray: np.ndarray
    uv: np.ndarray  # [N x 2]
    points: np.ndarray  # [N] map point indices


def follow_through(frames: list[tuple[int, np.ndarray]], followed: Followed, camera: Camera) -> Followed:
    """`followed` carried by optical flow through each of `frames` (frame, gray; oldest
    first) later than its own, frame to frame."""
    for frame, gray in frames:
        if frame > followed.frame:
            uv, keep = follow_points(followed.gray, gray, followed.uv, camera)
            followed = Followed(frame, gray, uv[keep], followed.points[keep])
    return followed


def follow_points(previous_gray: np.ndarray, gray: np.ndarray, previous_uv: np.ndarray,
                  camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Pixels followed by pyramidal optical flow, then back (a point that slid off its corner
    does not come back); -> (their pixels in `gray`, which were followed)."""
    previous = np.asarray(previous_uv, np.float32).reshape(-1, 1, 2)
    if not len(previous):
        return np.zeros((0, 2), np.float32), np.zeros(0, bool)
    uv, found, _ = cv2.calcOpticalFlowPyrLK(previous_gray, gray, previous, None, **_KLT_WINDOW)
    back, found_back, _ = cv2.calcOpticalFlowPyrLK(gray, previous_gray, uv, None, **_KLT_WINDOW)
    uv, back = uv.reshape(-1, 2), back.reshape(-1, 2)
    keep = (found.ravel() == 1) & (found_back.ravel() == 1) & \
        (np.linalg.norm(back - previous.reshape(-1, 2), axis=1) < 1.0) & \
        (uv[:, 0] >= 0) & (uv[:, 0] <= camera.width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= camera.height - 1)
    return uv, keep
