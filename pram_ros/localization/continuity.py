"""Continuity: a localized pose far from the recent track is held until it is believed.

Look-alike places make a relocalization jump as a kidnapped camera does. Two tests, both
only while tracking:
- Jumps: a pose far from the last accepted one (the anchor), at most `jump_memory_frames`
  frames ago, is reported only once the next `jump_confirm_frames` frames agree with it
  (tracked from it, or relocalized near it); until then those frames are LOST.
- Image continuity: a kidnap changes the whole view between two frames, a look-alike does
  not. While every frame since the anchor matched its predecessor's keypoints (at least
  `continuity_min_inliers` epipolar inliers), a pose farther from the anchor than the
  camera could have moved is a look-alike: held however many frames agree, and never
  tracked from. When the view changed between two adjacent camera frames (none dropped
  between them, by the caller's count and their stamps; an optical-flow frame's image is
  compared when needed), a far pose is a kidnap and is accepted at once. With frames
  dropped, processed frames overlap less and the change proves nothing (a look-alike was
  then taken for a kidnap at 30 Hz), so the jump test above holds it.
"Far" allows what the camera could move in the time between the image stamps (frames the
node drops count) or, for continuous views, per frame, whichever allows more.

Before both, geometry decides where it can (`jump_min_shared_points`): when the far pose's
inlier keypoints also appear in the last accepted frame (the anchor's view), their map
points projected with the anchor's pose must land on those keypoints. They do for a real
jump between overlapping views (photos taken metres apart), which is then accepted at once
whatever its size; they cannot for a look-alike, whose points lie in another place.

`Continuity` owns the anchor, the held pose and the chain of continuous views. In: each
frame's features and localized result. Out: the result, or a LOST one that holds it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from scipy.spatial import cKDTree

from pram_ros.features import Features, match_mutual_nn
from pram_ros.geometry import invert, pose_difference, project_points
from pram_ros.localization.config import LocalizerConfig
from pram_ros.localization.frontend import elapsed_ms
from pram_ros.localization.registration import Camera
from pram_ros.localization.result import Reason, Result, State


@dataclass(frozen=True)
class View:
    """An accepted frame's keypoints and its pose, for the geometric jump test."""

    features: Features
    cam_from_world: np.ndarray


@dataclass(frozen=True)
class Anchor:
    """The last accepted pose."""

    cam_from_world: np.ndarray
    frame: int  # the localizer's frame counter when it was accepted
    stamp_ns: int
    view: View | None = None  # the last accepted frame with features (an optical-flow frame has none)


@dataclass(frozen=True)
class HeldPose:
    """A pose away from the anchor, waiting for frames that agree with it."""

    cam_from_world: np.ndarray  # the latest agreeing pose
    agreeing: int  # frames in a row that found it so far
    frame: int  # the last of them
    stamp_ns: int
    look_alike: bool = False  # found while the view stayed continuous: never tracked from


class Continuity:
    def __init__(self, config: LocalizerConfig, points_xyz: np.ndarray,
                 extract: Callable[[np.ndarray], Features] | None = None):
        self.config = config
        self.points_xyz = points_xyz
        # The extractor, for the previous frame's image when that frame was tracked by
        # optical flow (no features of its own) and the view may have changed since.
        self.extract = extract
        self.reset()

    def reset(self) -> None:
        """A new sequence: no anchor, nothing held, no view to compare with."""
        self.anchor: Anchor | None = None
        self.held: HeldPose | None = None
        self.continuous = False  # every frame since the anchor matched its predecessor
        self.previous_features: Features | None = None  # the last frame's with features extracted
        self.previous_features_stamp_ns: int | None = None
        self.view_changed = False  # this frame's view differs from the adjacent frame's before it
        self.after_drops = False  # the caller dropped camera frames just before this one
        self.last_stamp_ns: int | None = None  # this frame's (after frame_at)
        self.previous_stamp_ns: int | None = None  # the frame's before it
        self.period_ns: int | None = None  # the camera's: the smallest gap between processed frames
        self.image: np.ndarray | None = None  # this frame's gray image, when kept
        self.previous_image: np.ndarray | None = None  # the frame's before it

    def frame_at(self, stamp_ns: int, frames_dropped: int = 0) -> None:
        """Every frame, first: its stamp and how many camera frames the caller dropped before
        it, to tell the camera's adjacent frames from ones with drops between."""
        self.view_changed = False
        self.after_drops = frames_dropped > 0
        if self.last_stamp_ns is not None and stamp_ns > self.last_stamp_ns and not self.after_drops:
            gap = stamp_ns - self.last_stamp_ns
            self.period_ns = gap if self.period_ns is None else min(self.period_ns, gap)
        self.previous_stamp_ns, self.last_stamp_ns = self.last_stamp_ns, stamp_ns
        self.previous_image, self.image = self.image, None

    def keep_image(self, gray: np.ndarray) -> None:
        """This frame's gray image: the next frame's view is compared with it when needed."""
        self.image = gray

    def _adjacent(self, stamp_ns: int | None) -> bool:
        """Was the frame at `stamp_ns` the one just before this frame, with none dropped between?"""
        return stamp_ns is not None and stamp_ns == self.previous_stamp_ns and not self.after_drops and \
            self.period_ns is not None and self.last_stamp_ns - stamp_ns <= 1.5 * self.period_ns

    def forget_pose(self) -> None:
        """Relocalize from scratch: no check against the old pose."""
        self.anchor, self.held = None, None

    def frame_unusable(self) -> None:
        """A frame without features breaks the chain of continuous views."""
        self.continuous, self.previous_features, self.previous_features_stamp_ns = False, None, None

    @property
    def _on(self) -> bool:
        return self.config.tracking

    def follow(self, features: Features, tracked: bool, timings: dict) -> None:
        """Is this frame's view continuous with the last one's? A tracked frame is; any other
        is checked by matching keypoints, while it matters: with an anchor and an unbroken chain."""
        if not self._on:  # each frame on its own: no continuity to follow
            return
        previous, self.previous_features = self.previous_features, features
        previous_stamp_ns, self.previous_features_stamp_ns = self.previous_features_stamp_ns, self.last_stamp_ns
        if tracked or not self.continuous:
            return
        if self.anchor is None or previous is None or self.config.continuity_min_inliers == 0:
            self.continuous = False  # no check: every frame may be a kidnap
            return
        tick = time.perf_counter()
        self.continuous = views_overlap(previous, features, self.config.continuity_min_inliers,
                                        self.config.max_keypoints)
        if not self.continuous:
            self.view_changed = self._view_changed(features, previous_stamp_ns)
        timings["continuity_ms"] = elapsed_ms(tick)

    def _view_changed(self, features: Features, compared_stamp_ns: int | None) -> bool:
        """Does this frame's view differ from the camera's previous frame's (none dropped
        between)? Known from the comparison just made when that was the previous frame; else
        (it was tracked by optical flow) its image is compared now."""
        if self._adjacent(compared_stamp_ns):
            return True
        if self.extract is None or self.previous_image is None or not self._adjacent(self.previous_stamp_ns):
            return False
        return not views_overlap(self.extract(self.previous_image), features, self.config.continuity_min_inliers,
                                 self.config.max_keypoints)

    def anchor_at(self, cam_from_world: np.ndarray, frame: int, stamp_ns: int, features: Features | None = None) -> None:
        """A pose accepted; without `features` (an optical-flow frame) the last view stays."""
        view = View(features, cam_from_world) if features is not None else \
            (self.anchor.view if self.anchor is not None else None)
        self.anchor, self.continuous = Anchor(cam_from_world, frame, stamp_ns, view), True

    def view_refreshed(self, features: Features, cam_from_world: np.ndarray, stamp_ns: int) -> None:
        """A tracked frame since the anchor got features (background.py): it is the view that
        later frames' keypoints are compared with; the anchor's pose stays the newest."""
        if self.anchor is not None:
            self.anchor = Anchor(self.anchor.cam_from_world, self.anchor.frame, self.anchor.stamp_ns,
                                 View(features, cam_from_world))
        self.previous_features, self.previous_features_stamp_ns = features, stamp_ns

    def check(self, result: Result, frame: int, features: Features, camera: Camera) -> Result:
        """Accept a localized result (it becomes the anchor), or hold it (LOST)."""
        config = self.config
        held, self.held = self.held, None
        anchor = self.anchor
        if self._on and anchor is not None and anchor.view is not None and config.jump_min_shared_points > 0 \
                and frame - anchor.frame <= config.jump_memory_frames \
                and self._far(result.cam_from_world, anchor.cam_from_world, anchor.stamp_ns, result.stamp_ns):
            agrees = motion_agrees(anchor.view, features, result, camera, self.points_xyz,
                                   config.jump_min_shared_points, config.max_keypoints, config.ransac_max_error_px)
            if agrees is False:
                return self._hold(result, frame, 0, look_alike=True,
                                  why="its points do not project onto the last accepted view")
            if agrees:
                self.anchor_at(result.cam_from_world, frame, result.stamp_ns, features)
                return result
        if self._on and config.continuity_min_inliers > 0 and self.continuous and anchor is not None:
            if self._far(result.cam_from_world, anchor.cam_from_world, anchor.stamp_ns, result.stamp_ns,
                         frame - anchor.frame):
                return self._hold(result, frame, 0, look_alike=True)
        if self._on and self.view_changed:
            # A kidnap: the whole view changed from the frame just before.
            self.anchor_at(result.cam_from_world, frame, result.stamp_ns, features)
            return result
        if self._on and config.jump_confirm_frames > 0:
            # The held pose, found again on the very next frame?
            agrees = held is not None and held.frame == frame - 1 and \
                not self._far(result.cam_from_world, held.cam_from_world, held.stamp_ns, result.stamp_ns)
            if agrees and held.agreeing < config.jump_confirm_frames:
                return self._hold(result, frame, held.agreeing + 1)
            # Otherwise relocalized far away, or tracked away from a held pose: a new jump.
            if not agrees and anchor is not None and frame - anchor.frame <= config.jump_memory_frames and \
                    self._far(result.cam_from_world, anchor.cam_from_world, anchor.stamp_ns, result.stamp_ns):
                return self._hold(result, frame, 1)
        self.anchor_at(result.cam_from_world, frame, result.stamp_ns, features)
        return result

    def pose_to_track_from(self, frame: int) -> np.ndarray | None:
        """The pose held on this frame, when the next frame should track from it (a jump
        waiting for agreement; never a look-alike)."""
        held = self.held
        if held is not None and held.frame == frame and not held.look_alike:
            return held.cam_from_world
        return None

    def _far(self, cam_from_world: np.ndarray, reference: np.ndarray, reference_stamp_ns: int, stamp_ns: int,
             continuous_frames: int = 0) -> bool:
        """Farther than a jump plus what the camera could have moved since the reference: in
        the time between the stamps or, with continuous_frames, in that many frames
        (stamps may not be times), whichever allows more."""
        config = self.config
        elapsed_s = max(stamp_ns - reference_stamp_ns, 0) / 1e9
        distance_m, angle_deg = pose_difference(invert(cam_from_world), invert(reference))
        moved_m = max(continuous_frames * config.continuity_step_m, elapsed_s * config.continuity_speed_mps)
        turned_deg = max(continuous_frames * config.continuity_step_deg, elapsed_s * config.continuity_turn_dps)
        return distance_m >= config.jump_distance_m + moved_m or angle_deg >= config.jump_angle_deg + turned_deg

    def _hold(self, result: Result, frame: int, agreeing: int, look_alike: bool = False,
              why: str = "with the view continuous since") -> Result:
        """LOST for now; the pose waits for the next frames to agree with it (a look-alike's,
        for the images to stop being continuous)."""
        self.held = HeldPose(result.cam_from_world, agreeing, frame, result.stamp_ns, look_alike)
        distance_m, angle_deg = pose_difference(invert(result.cam_from_world), invert(self.anchor.cam_from_world))
        frames_ago = frame - self.anchor.frame
        where = f"localized {distance_m:.2f} m, {angle_deg:.0f} deg away from the pose {frames_ago} frame(s) ago"
        if look_alike:
            message = f"{where}, {why}: a look-alike, held"
        else:
            message = f"{where}: held until {self.config.jump_confirm_frames + 1 - agreeing} more agree"
        return Result(result.stamp_ns, State.LOST, landmark_ids=result.landmark_ids, num_inliers=result.num_inliers,
                      num_candidates=result.num_candidates, message=message,
                      reason=Reason.LOOK_ALIKE_HELD if look_alike else Reason.JUMP_HELD)


def motion_agrees(view: View, features: Features, result: Result, camera: Camera, points_xyz: np.ndarray,
                  min_shared: int, max_keypoints: int, max_error_px: float) -> bool | None:
    """Is a localized frame's pose consistent with an earlier view's pose? Its inlier keypoints
    that match the view's keypoints (mutual NN) have map points; projected with the view's
    pose, at least half must land within `max_error_px` of the matched keypoints. None when
    fewer than `min_shared` inliers appear in the view (geometry cannot tell)."""
    if len(result.inlier_points) < min_shared or not len(features) or not len(view.features):
        return None
    distance, keypoints = cKDTree(features.keypoints).query(result.inliers_uv)
    exact = distance < 0.01  # the inliers' own keypoints (an inlier is a keypoint's pixel)
    keypoints, points = keypoints[exact], result.inlier_points[exact]
    matches = match_mutual_nn(view.features.descriptors[:max_keypoints], features.descriptors[:max_keypoints],
                              ratio=0.9)
    in_view_keypoint = np.full(len(features), -1, np.int64)
    in_view_keypoint[matches[:, 1]] = matches[:, 0]
    seen = in_view_keypoint[keypoints]
    shared = seen >= 0
    if shared.sum() < min_shared:
        return None
    uv, depth = project_points(points_xyz[points[shared]], view.cam_from_world, camera.K)
    error_px = np.linalg.norm(uv - view.features.keypoints[seen[shared]], axis=1)
    return bool(np.mean((depth > 0) & (error_px < max_error_px)) >= 0.5)


def views_overlap(first: Features, second: Features, min_inliers: int, max_keypoints: int) -> bool:
    """Do two images show one view: at least `min_inliers` of their mutual-NN keypoint matches
    fit one fundamental matrix?"""
    a, b = first.descriptors[:max_keypoints], second.descriptors[:max_keypoints]
    if min(len(a), len(b)) < min_inliers:
        return False
    matches = match_mutual_nn(a, b, ratio=0.9)
    if len(matches) < min_inliers:
        return False
    _, mask = cv2.findFundamentalMat(first.keypoints[matches[:, 0]].astype(np.float64),
                                     second.keypoints[matches[:, 1]].astype(np.float64), cv2.FM_RANSAC, 2.0, 0.999)
    return mask is not None and int(mask.sum()) >= min_inliers
