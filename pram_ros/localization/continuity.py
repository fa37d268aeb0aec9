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
  tracked from.
"Far" allows what the camera could move in the time between the image stamps (frames the
node drops count) or, for continuous views, per frame, whichever allows more.

`Continuity` owns the anchor, the held pose and the chain of continuous views. In: each
frame's features and localized result. Out: the result, or a LOST one that holds it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from pram_ros.features import Features, match_mutual_nn
from pram_ros.geometry import invert, pose_difference
from pram_ros.localization.config import LocalizerConfig
from pram_ros.localization.frontend import elapsed_ms
from pram_ros.localization.result import Result, State


@dataclass(frozen=True)
class Anchor:
    """The last accepted pose."""

    cam_from_world: np.ndarray
    frame: int  # the localizer's frame counter when it was accepted
    stamp_ns: int


@dataclass(frozen=True)
class HeldPose:
    """A pose away from the anchor, waiting for frames that agree with it."""

    cam_from_world: np.ndarray  # the latest agreeing pose
    agreeing: int  # frames in a row that found it so far
    frame: int  # the last of them
    stamp_ns: int
    look_alike: bool = False  # found while the view stayed continuous: never tracked from


class Continuity:
    def __init__(self, config: LocalizerConfig):
        self.config = config
        self.reset()

    def reset(self) -> None:
        """A new sequence: no anchor, nothing held, no view to compare with."""
        self.anchor: Anchor | None = None
        self.held: HeldPose | None = None
        self.continuous = False  # every frame since the anchor matched its predecessor
        self.previous_features: Features | None = None  # the last frame's with features extracted

    def forget_pose(self) -> None:
        """Relocalize from scratch: no check against the old pose."""
        self.anchor, self.held = None, None

    def frame_unusable(self) -> None:
        """A frame without features breaks the chain of continuous views."""
        self.continuous, self.previous_features = False, None

    @property
    def _on(self) -> bool:
        return self.config.tracking

    def follow(self, features: Features, tracked: bool, timings: dict) -> None:
        """Is this frame's view continuous with the last one's? A tracked frame is; any other
        is checked by matching keypoints, while it matters: with an anchor and an unbroken chain."""
        if not self._on:  # each frame on its own: no continuity to follow
            return
        previous, self.previous_features = self.previous_features, features
        if tracked or not self.continuous:
            return
        if self.anchor is None or previous is None or self.config.continuity_min_inliers == 0:
            self.continuous = False  # no check: every frame may be a kidnap
            return
        tick = time.perf_counter()
        self.continuous = views_overlap(previous, features, self.config.continuity_min_inliers,
                                        self.config.max_keypoints)
        timings["continuity_ms"] = elapsed_ms(tick)

    def anchor_at(self, cam_from_world: np.ndarray, frame: int, stamp_ns: int) -> None:
        """A pose accepted without the checks (an optical-flow frame): the track goes on from it."""
        self.anchor, self.continuous = Anchor(cam_from_world, frame, stamp_ns), True

    def check(self, result: Result, frame: int) -> Result:
        """Accept a localized result (it becomes the anchor), or hold it (LOST)."""
        config = self.config
        held, self.held = self.held, None
        anchor = self.anchor
        if self._on and config.continuity_min_inliers > 0 and self.continuous and anchor is not None:
            if self._far(result.cam_from_world, anchor.cam_from_world, anchor.stamp_ns, result.stamp_ns,
                         frame - anchor.frame):
                return self._hold(result, frame, 0, look_alike=True)
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
        self.anchor_at(result.cam_from_world, frame, result.stamp_ns)
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

    def _hold(self, result: Result, frame: int, agreeing: int, look_alike: bool = False) -> Result:
        """LOST for now; the pose waits for the next frames to agree with it (a look-alike's,
        for the images to stop being continuous)."""
        self.held = HeldPose(result.cam_from_world, agreeing, frame, result.stamp_ns, look_alike)
        distance_m, angle_deg = pose_difference(invert(result.cam_from_world), invert(self.anchor.cam_from_world))
        frames_ago = frame - self.anchor.frame
        where = f"localized {distance_m:.2f} m, {angle_deg:.0f} deg away from the pose {frames_ago} frame(s) ago"
        if look_alike:
            message = f"{where}, with the view continuous since: a look-alike, held"
        else:
            message = f"{where}: held until {self.config.jump_confirm_frames + 1 - agreeing} more agree"
        return Result(result.stamp_ns, State.LOST, landmark_ids=result.landmark_ids, num_inliers=result.num_inliers,
                      num_candidates=result.num_candidates, message=message)


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
