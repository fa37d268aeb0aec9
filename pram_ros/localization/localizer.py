"""The localizer: one image in, a gated pose or LOST out.

In: a `PramMap`, the recognizer trained on it, and a `LocalizerConfig`; then, per frame,
an RGB or mono image of the map's camera and its stamp. Out: a `Result` with the pose
(`cam_from_world`, 4x4) and its 6x6 covariance, the state (RELOCALIZED, TRACKED or LOST),
the landmarks used, the inliers, and milliseconds per stage.

Relocalization: features -> recognition -> the most-voted landmarks -> mutual-NN matching
of the keypoints labelled with them against those landmarks' points (or landmark by
landmark: `landmark_matching`) -> one PnP RANSAC (pycolmap) with refinement -> the
acceptance gate -> the pose refined (below).
Tracking: the previous pose (constant velocity when two are known) predicts which map
points are in view; the keypoints are matched to those by descriptor (mutual NN, ratio
and look-alike tests), and only if that fails the gate is each projected point matched to
the best keypoint within a few pixels of it; PnP and the same gate. Recognition is
skipped, except every `reverify_every` frames, when the tracked landmarks must be among the
most-voted ones. A frame whose tracking fails the gate is relocalized at once.
Refinement: a pose from a full frame (relocalized or tracked) is registered once more
against every map point it sees, each matched to the best keypoint near its projection:
more inliers, spread over the whole image, which steadies poses under changed lighting.
Continuity (with tracking): a relocalization far from the last accepted pose, a few frames
ago, is a jump. Look-alike places make such jumps as well as a kidnapped camera does, so a
jump is reported only once the next `jump_confirm_frames` frames agree with it (tracked
from it, or relocalized near it; landing far from it too starts a new jump); until then
those frames are LOST.
Image continuity (with tracking): a kidnap changes the whole view between two frames, a
look-alike does not. While every frame since the last accepted pose has matched its
predecessor's keypoints (epipolar inliers), the camera cannot have jumped, so a pose farther
from that one than the camera could have moved in the meantime is a look-alike: held (LOST)
however many frames agree, and the next frame relocalizes instead of tracking from it.

The gate: a pose is reported only with at least `min_inliers` inliers making up at least
`min_inlier_ratio` of the candidate matches. A rejected pose is never reported, and a
frame that cannot be processed (wrong size, no texture, no features) is LOST, never an
exception.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import pycolmap
import torch
from scipy.spatial import cKDTree

from pram_ros.features import ExtractorConfig, FeatureExtractor, Features, create_extractor, match_mutual_nn
from pram_ros.features.base import to_gray8
from pram_ros.geometry import in_view, invert, pose_difference, project_points
from pram_ros.mapping.mapfile import PramMap
from pram_ros.recognition.model import Recognition, Recognizer

logger = logging.getLogger(__name__)

LOST_VARIANCE = 1e6  # per axis while not localized: "anywhere"


class State(enum.IntEnum):
    """Mirrors pram_ros/msg/LocalizationStatus."""

    UNINITIALIZED = 0
    RELOCALIZED = 1
    TRACKED = 2
    LOST = 3


@dataclass
class LocalizerConfig:
    max_keypoints: int = 1024  # recognized per frame (the best-scoring ones)
    top_landmarks: int = 3  # pooled into one PnP
    min_candidates: int = 48  # fewer keypoints labelled with the top landmarks: use every non-background one
    match_ratio: float = 0.9
    ransac_max_error_px: float = 8.0
    min_inliers: int = 30
    min_inlier_ratio: float = 0.2
    tracking: bool = True
    track_radius_px: float = 10.0
    track_ratio: float = 0.9
    track_ransac_max_error_px: float = 4.0
    min_track_inliers: int = 50
    # "hybrid": descriptor matching against the points the predicted pose sees, then (if that
    # fails the gate) guided matching near their projections. Guided matching alone is biased
    # by the prediction: after skipped frames, on repeated textures, it confirms a drifted pose.
    track_matching: str = "hybrid"
    # Frames in a row tracked by optical flow (KLT) of the last inliers, skipping feature
    # extraction, before a full frame re-anchors; 0 = off.
    klt_frames: int = 4
    # Every point followed was an inlier a frame ago: when fewer than this share still fit one
    # pose, the flow has slipped (fast turns), and the frame takes the full pipeline.
    klt_min_inlier_ratio: float = 0.6
    reverify_every: int = 10  # tracked frames between recognition checks; 0 never checks
    # Continuity: a localized frame at least this far from (or turned this much against) the
    # last accepted pose, at most jump_memory_frames frames ago, is a jump, reported only
    # once jump_confirm_frames more frames agree (LOST until then; 0 = off). A kidnapped
    # camera is thus relocalized on its (jump_confirm_frames + 1)-th frame.
    jump_distance_m: float = 0.5
    jump_angle_deg: float = 30.0
    jump_memory_frames: int = 5  # longer lost, the camera may really have moved that far
    jump_confirm_frames: int = 2
    # Image continuity: consecutive frames whose keypoints give at least this many epipolar
    # inliers show one view (demo queries: 200-420; unrelated views: under 70); 0 = off.
    # While the frames since the last accepted pose are continuous, a pose is a look-alike if
    # it lies farther from that pose than jump_distance_m + continuity_step_m per frame (or
    # turned more than jump_angle_deg + continuity_step_deg per frame): about twice the
    # demo camera's fastest motion.
    continuity_min_inliers: int = 100
    continuity_step_m: float = 0.1
    continuity_step_deg: float = 10.0
    # The same allowance in time, for every jump test (frames the node drops still pass):
    # about twice the demo camera's 0.5 m/s and 50 deg/s.
    continuity_speed_mps: float = 1.0
    continuity_turn_dps: float = 100.0
    # Repeated textures: a match must beat, by match_ratio, the map point elsewhere (at least
    # this far away) whose descriptor is most like its own, even outside the chosen landmarks.
    twin_min_distance_m: float = 0.3
    # Relocalization: "pooled" matches all keypoints labelled with the recognized landmarks
    # against all their points; "per_landmark" (PRAM's landmark-wise registration) first
    # matches each landmark's points only against the keypoints labelled with it, pooled
    # when that fails the gate. Faster, but it trusts the labels: keypoints of a wall that
    # recognition gives to its look-alike can then only match the look-alike (4-room scale
    # world, 2-minute recognizer: 4 of 66 frames 3.7 m off, none pooled).
    landmark_matching: str = "pooled"
    # A pose from a full frame (relocalized or tracked) is registered once more against every
    # map point it sees, each matched to the best keypoint near its projection: more inliers,
    # over the whole image, at track_ransac_max_error_px. Optical-flow frames are not refined.
    refine_pose: bool = True
    # "landmarks": PRAM, registration against the recognized landmarks' points;
    # "all_points": the exhaustive baseline, every keypoint against every map point.
    registration: str = "landmarks"
    num_threads: int | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        positive = ("max_keypoints", "top_landmarks", "min_inliers", "min_track_inliers")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"LocalizerConfig: {name} must be >= 1, got {getattr(self, name)}")
        for name in ("match_ratio", "track_ratio", "min_inlier_ratio", "klt_min_inlier_ratio"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"LocalizerConfig: {name} must lie in (0, 1], got {getattr(self, name)}")
        for name in ("ransac_max_error_px", "track_ransac_max_error_px", "track_radius_px"):
            if getattr(self, name) <= 0:
                raise ValueError(f"LocalizerConfig: {name} must be > 0, got {getattr(self, name)}")
        if self.landmark_matching not in ("per_landmark", "pooled"):
            raise ValueError("LocalizerConfig: landmark_matching must be 'per_landmark' or 'pooled', "
                             f"got {self.landmark_matching!r}")
        if self.registration not in ("landmarks", "all_points"):
            raise ValueError("LocalizerConfig: registration must be 'landmarks' or 'all_points', "
                             f"got {self.registration!r}")
        for name in ("reverify_every", "jump_memory_frames", "jump_confirm_frames", "continuity_min_inliers"):
            if getattr(self, name) < 0:
                raise ValueError(f"LocalizerConfig: {name} must be >= 0, got {getattr(self, name)}")
        for name in ("jump_distance_m", "jump_angle_deg"):
            if getattr(self, name) <= 0:
                raise ValueError(f"LocalizerConfig: {name} must be > 0, got {getattr(self, name)}")
        for name in ("continuity_step_m", "continuity_step_deg", "continuity_speed_mps", "continuity_turn_dps"):
            if getattr(self, name) < 0:
                raise ValueError(f"LocalizerConfig: {name} must be >= 0, got {getattr(self, name)}")


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
    message: str = ""  # why a frame is LOST
    # For drawing: this frame's keypoints [N x 2], the landmark recognition gave each (0
    # background, -1 not recognized on this frame) and the PnP inliers' pixels [M x 2].
    keypoints_uv: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    keypoint_landmarks: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    inliers_uv: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))

    @property
    def localized(self) -> bool:
        return self.state in (State.RELOCALIZED, State.TRACKED)

    @property
    def inlier_ratio(self) -> float:
        return self.num_inliers / self.num_candidates if self.num_candidates else 0.0

    @property
    def world_from_cam(self) -> np.ndarray | None:
        return None if self.cam_from_world is None else np.linalg.inv(self.cam_from_world)


@dataclass
class _Registration:
    cam_from_world: np.ndarray
    covariance: np.ndarray
    inlier_points: np.ndarray  # map point indices of the inliers
    inliers_uv: np.ndarray  # their keypoints' pixels
    num_inliers: int
    num_candidates: int


@dataclass
class _Jump:
    """A relocalization away from the recent track, waiting for frames that agree."""

    cam_from_world: np.ndarray  # the latest agreeing pose
    agreeing: int  # frames in a row that found it so far
    frame: int  # the last of them
    stamp_ns: int  # its stamp
    look_alike: bool = False  # found while the images stayed continuous: never tracked from


class Localizer:
    """`process(image, stamp_ns)` per frame; see the module docstring."""

    def __init__(self, pram_map: PramMap, recognizer: Recognizer, config: LocalizerConfig | None = None,
                 extractor: FeatureExtractor | None = None):
        self.map = pram_map
        self.recognizer = recognizer
        self.config = config or LocalizerConfig()
        if recognizer.num_landmarks != pram_map.num_landmarks:
            raise ValueError(f"the recognizer knows {recognizer.num_landmarks} landmarks, the map has "
                             f"{pram_map.num_landmarks}: load the model trained on this map")
        self._init_camera(pram_map, extractor)
        # The map's own arrays, not float32/float64 copies: the resident map stays small, and
        # only the points a frame matches against are widened (_descriptors).
        self.points_xyz = pram_map.point_xyz
        self.points_descriptor = pram_map.point_descriptor
        self.landmark_points = [pram_map.landmark_points(k).astype(np.int32) for k in range(pram_map.num_landmarks + 1)]
        self.points_twin = descriptor_twins(self.points_descriptor, self.points_xyz,
                                            self.config.twin_min_distance_m).astype(np.int32)
        self.reset()

    def _init_camera(self, pram_map: PramMap, extractor: FeatureExtractor | None) -> None:
        """The map's camera and extractor: what every method (baselines included) shares."""
        self.extractor = extractor or create_extractor(ExtractorConfig.from_dict(pram_map.extractor_config()),
                                                       num_threads=self.config.num_threads)
        self.K = pram_map.K(0)
        self.width, self.height = (int(v) for v in pram_map.camera_size[0])
        fx, fy, cx, cy = pram_map.camera_params[0]
        # Keypoints and intrinsics share OpenCV's pixel convention, so no half-pixel shift is needed.
        self.camera = pycolmap.Camera(model="PINHOLE", width=self.width, height=self.height, params=[fx, fy, cx, cy])

    def _descriptors(self, points: np.ndarray) -> np.ndarray:
        """float32 descriptors of these map points (stored as float16)."""
        return self.points_descriptor[points].astype(np.float32)

    def memory_bytes(self) -> dict[str, int]:
        """Bytes held in memory for the map, by part (the extractor, the same for every
        method, is left out)."""
        working = (self.points_twin, *self.landmark_points)  # points_xyz/descriptor are the map's
        parts = {"map": self.map.nbytes(), "working_copies": sum(int(a.nbytes) for a in working)}
        if self.config.registration == "landmarks":
            parts["recognizer"] = sum(p.numel() * p.element_size()
                                      for p in (*self.recognizer.net.parameters(), *self.recognizer.net.buffers()))
        return parts

    def reset(self) -> None:
        """Forget every earlier frame (a new sequence): the next frame relocalizes, with no
        continuity check against an old pose."""
        self._frame = 0  # frames processed since
        self._anchor: tuple[np.ndarray, int, int] | None = None  # last accepted cam_from_world, frame, stamp_ns
        self._jump: _Jump | None = None
        self._continuous = False  # every frame since the anchor matched its predecessor
        self._previous_features: Features | None = None  # the last frame's with features extracted
        self._drop_track()

    def _drop_track(self) -> None:
        """Forget the track (a LOST frame): the next frame relocalizes."""
        self._poses: list[np.ndarray] = []  # the last two accepted cam_from_world
        self._tracked_landmarks = np.zeros(0, np.int64)
        self._frames_since_check = 0
        self._force_relocalize = False
        self._frame_recognition: Recognition | None = None
        self._klt_gray: np.ndarray | None = None  # the last accepted frame, for optical flow
        self._klt_frames = 0
        self._inliers_uv = np.zeros((0, 2), np.float32)  # the last accepted frame's PnP inliers
        self._inlier_points = np.zeros(0, np.int64)

    def request_relocalization(self) -> None:
        """Relocalize the next frame from scratch, with no continuity check against the old pose."""
        self._force_relocalize = True
        self._anchor, self._jump = None, None

    def set_pose_hint(self, cam_from_world: np.ndarray) -> None:
        """Track from this pose on the next frame (e.g. RViz's "2D Pose Estimate"); the tracking
        gate decides, and a wrong hint only costs a relocalization."""
        self.reset()
        self._poses = [np.asarray(cam_from_world, np.float64)]
        self._frames_since_check = self.config.reverify_every  # check the hint with recognition

    # ------------------------------------------------------------------------------------
    def process(self, image: np.ndarray, stamp_ns: int = 0) -> Result:
        start = time.perf_counter()
        timings: dict[str, float] = {}
        self._frame += 1
        problem = self._check_image(image)
        if problem:
            return self._lost(stamp_ns, problem, timings, start)
        gray = self._gray(image) if self.config.klt_frames > 0 else None
        if gray is not None and self._klt_ready():
            result = self._track_klt(gray, stamp_ns, timings)
            if result is not None:
                self._anchor, self._continuous = (result.cam_from_world, self._frame, stamp_ns), True
                result.timings_ms = {**timings, "total_ms": _ms(start)}
                return result
        tick = time.perf_counter()
        try:
            # The extractor works on gray too: hand it the one made for optical flow.
            features = self.extractor.extract(gray if gray is not None else image)
        except (TypeError, ValueError) as exc:  # an encoding the extractor does not take
            return self._lost(stamp_ns, f"cannot extract features: {exc}", timings, start)
        timings["features_ms"] = _ms(tick)
        if len(features) < self.config.min_inliers:
            return self._lost(stamp_ns, f"{len(features)} keypoints: too little texture", timings, start)

        result = recognition = self._frame_recognition = None
        if self.config.tracking and self._poses and not self._force_relocalize:
            result = self._track(features, stamp_ns, timings)
            if result is not None and self._due_for_check():
                result, recognition = self._verify(features, result, timings)
        if result is None:
            result = self._relocalize(features, stamp_ns, timings, recognition)
        self._follow_images(features, result, timings)
        if result.localized:
            result = self._continuity(result)
        self._force_relocalize = False
        result.keypoints_uv = features.keypoints
        result.keypoint_landmarks = self._keypoint_landmarks(len(features))
        result.timings_ms = {**timings, "total_ms": _ms(start)}
        if not result.localized:
            self._drop_track()
            if self._jump is not None and self._jump.frame == self._frame and not self._jump.look_alike:
                self._poses = [self._jump.cam_from_world]  # the next frame tracks from the held pose
        elif gray is not None:
            self._klt_gray, self._klt_frames = gray, 0
        return result

    @staticmethod
    def _gray(image: np.ndarray) -> np.ndarray | None:
        try:
            return to_gray8(image)
        except ValueError:  # the extractor path reports what is wrong with the image
            return None

    def _klt_ready(self) -> bool:
        return (self.config.tracking and not self._force_relocalize and self._klt_gray is not None
                and self._klt_frames < self.config.klt_frames and len(self._inlier_points) >= self.config.min_track_inliers)

    def _track_klt(self, gray: np.ndarray, stamp_ns: int, timings: dict) -> Result | None:
        """The last frame's inliers followed by pyramidal optical flow (forward and back, so
        that a point that slid off its corner is dropped), then PnP against their map points."""
        tick = time.perf_counter()
        previous_uv = self._inliers_uv.astype(np.float32).reshape(-1, 1, 2)
        window = dict(winSize=(21, 21), maxLevel=3, criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))
        uv, found, _ = cv2.calcOpticalFlowPyrLK(self._klt_gray, gray, previous_uv, None, **window)
        back, found_back, _ = cv2.calcOpticalFlowPyrLK(gray, self._klt_gray, uv, None, **window)
        uv, back = uv.reshape(-1, 2), back.reshape(-1, 2)
        keep = (found.ravel() == 1) & (found_back.ravel() == 1) & \
            (np.linalg.norm(back - previous_uv.reshape(-1, 2), axis=1) < 1.0) & \
            (uv[:, 0] >= 0) & (uv[:, 0] <= self.width - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= self.height - 1)
        registration = self._register(uv[keep], self._inlier_points[keep], self.config.track_ransac_max_error_px)
        timings["tracking_ms"] = _ms(tick)
        result = self._gate(registration, stamp_ns, State.TRACKED, self.config.min_track_inliers,
                            self.config.klt_min_inlier_ratio)
        if not result.localized:
            return None  # the full pipeline takes this frame
        self._klt_gray, self._klt_frames = gray, self._klt_frames + 1
        self._frames_since_check += 1
        result.keypoints_uv = uv[keep]
        result.keypoint_landmarks = np.full(int(keep.sum()), -1, np.int64)
        return result

    def _keypoint_landmarks(self, count: int) -> np.ndarray:
        labels = np.full(count, -1, np.int64)
        if self._frame_recognition is not None:
            labels[self._frame_recognition.keypoint_indices] = self._frame_recognition.labels
        return labels

    def _check_image(self, image) -> str:
        if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
            return "not an image array"
        if image.shape[0] != self.height or image.shape[1] != self.width:
            return f"image is {image.shape[1]}x{image.shape[0]}, the map's camera {self.width}x{self.height}"
        if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
            return f"image has {image.shape[2]} channels"
        return ""

    def _lost(self, stamp_ns: int, message: str, timings: dict, start: float) -> Result:
        self._drop_track()
        self._continuous, self._previous_features = False, None  # nothing to compare this frame with
        return Result(stamp_ns, State.LOST, message=message, timings_ms={**timings, "total_ms": _ms(start)})

    def _due_for_check(self) -> bool:
        every = self.config.reverify_every
        return every > 0 and self._frames_since_check >= every

    # ------------------------------------------------------------------------------------
    def _relocalize(self, features: Features, stamp_ns: int, timings: dict,
                    recognition: Recognition | None = None) -> Result:
        """`recognition`: this frame's, when a failed tracking check already ran it."""
        config = self.config
        if config.registration == "all_points":
            # The exhaustive baseline: no recognition, every keypoint against every map point.
            tick = time.perf_counter()
            every_keypoint = np.arange(min(len(features), config.max_keypoints))
            every_point = np.arange(self.map.num_points)
            attempts = [lambda: (every_keypoint, every_point, match_mutual_nn(
                features.descriptors[every_keypoint], self._descriptors(every_point), ratio=config.match_ratio))]
        else:
            if recognition is None:
                tick = time.perf_counter()
                recognition = self.recognizer.recognize(features, self.config.max_keypoints)
                timings["recognition_ms"] = _ms(tick)
                self._frame_recognition = recognition
            tick = time.perf_counter()
            ranked = self._ranked_landmarks(recognition)
            if not len(ranked):
                timings["registration_ms"] = _ms(tick)
                return Result(stamp_ns, State.LOST, message="no landmark recognized")
            used = recognition.keypoint_indices
            labelled = used[np.isin(recognition.labels, ranked)]
            # Too few keypoints carry the landmarks' labels (background is over-called on views
            # the map barely covers): let descriptors decide, the gate guards the pose.
            pooled = labelled if len(labelled) >= config.min_candidates else used
            ranked_points = np.concatenate([self.landmark_points[k] for k in ranked])
            attempts = [lambda: (pooled, ranked_points, match_mutual_nn(
                features.descriptors[pooled], self._descriptors(ranked_points), ratio=config.match_ratio))]
            if config.landmark_matching == "per_landmark" and pooled is labelled:
                attempts.insert(0, lambda: self._landmark_matches(features, recognition, ranked))
        for attempt in attempts:
            candidates, points, matches = attempt()
            matches = self._distinct(features.descriptors[candidates], points, matches)
            registration = self._register(features.keypoints[candidates[matches[:, 0]]], points[matches[:, 1]],
                                          config.ransac_max_error_px)
            result = self._gate(registration, stamp_ns, State.RELOCALIZED, config.min_inliers)
            if result.localized:
                if config.refine_pose:
                    result = self._refine(features, result)
                break
        timings["registration_ms"] = _ms(tick)
        return result

    def _landmark_matches(self, features: Features, recognition: Recognition,
                          ranked: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each landmark's points against the keypoints recognition labelled with it, ->
        (keypoint indices, point indices, matches [K x 2] into those two)."""
        candidates, points, matches = [], [], []
        offsets = np.zeros(2, np.int64)
        for landmark in ranked:
            keypoints = recognition.keypoint_indices[recognition.labels == landmark]
            landmark_points = self.landmark_points[landmark]
            found = match_mutual_nn(features.descriptors[keypoints], self._descriptors(landmark_points),
                                    ratio=self.config.match_ratio)
            candidates.append(keypoints)
            points.append(landmark_points)
            matches.append(found + offsets)
            offsets += (len(keypoints), len(landmark_points))
        return np.concatenate(candidates), np.concatenate(points), np.concatenate(matches)

    def _distinct(self, descriptors: np.ndarray, points: np.ndarray, matches: np.ndarray) -> np.ndarray:
        """Drop matches whose map point has a look-alike elsewhere that the keypoint matches
        almost as well (a ratio test against the point's twin)."""
        if not len(matches):
            return matches
        query = descriptors[matches[:, 0]]
        matched = points[matches[:, 1]]
        best = np.linalg.norm(query - self._descriptors(matched), axis=1)
        twin = self.points_twin[matched]
        has_twin = twin >= 0
        twin_distance = np.full(len(matches), np.inf)
        twin_distance[has_twin] = np.linalg.norm(query[has_twin] - self._descriptors(twin[has_twin]), axis=1)
        return matches[best < self.config.match_ratio * twin_distance]

    def _ranked_landmarks(self, recognition: Recognition) -> np.ndarray:
        """Most-voted landmarks; when fewer than `top_landmarks` got votes, filled up with the
        landmarks holding the most probability (at least one keypoint's worth)."""
        top = self.config.top_landmarks
        ranked = recognition.ranked_landmarks()[:top]
        if len(ranked) < top and len(recognition.probabilities):
            mass = recognition.probabilities[:, 1:].sum(axis=0)
            order = np.argsort(-mass, kind="stable")
            extra = [k + 1 for k in order if mass[k] >= 1.0 and k + 1 not in ranked]
            ranked = np.concatenate([ranked, np.asarray(extra, np.int64)])[:top]
        return ranked.astype(np.int64)

    def _track(self, features: Features, stamp_ns: int, timings: dict) -> Result | None:
        tick = time.perf_counter()
        result = self._register_in_view(features, self._predicted_pose(), stamp_ns, State.TRACKED,
                                        self.config.track_matching)
        if result.localized and self.config.refine_pose:
            result = self._refine(features, result)
        timings["tracking_ms"] = _ms(tick)
        if not result.localized:
            logger.debug("tracking lost (%s): relocalizing", result.message)
            return None
        self._frames_since_check += 1
        return result

    def _refine(self, features: Features, accepted: Result) -> Result:
        """An accepted pose registered again against every map point it sees, matched near
        their projections (the pose is close by now); the pose itself when that fails the
        tracking gate."""
        poses_before = self._poses[:-1]  # the accepted pose is already the track's latest
        refined = self._register_in_view(features, accepted.cam_from_world, accepted.stamp_ns, accepted.state,
                                         "guided")
        if not refined.localized:
            return accepted
        self._poses = (poses_before + [refined.cam_from_world])[-2:]
        return refined

    def _register_in_view(self, features: Features, predicted: np.ndarray, stamp_ns: int, state: State,
                          matching: str) -> Result:
        """The keypoints against the map points a predicted pose sees (`matching` as in
        LocalizerConfig.track_matching), then PnP and the tracking gate."""
        result = None
        modes = {"descriptor": ("descriptor",), "guided": ("guided",), "hybrid": ("descriptor", "guided")}
        for mode in modes[matching]:
            if mode == "descriptor":
                # Unbiased by the prediction: the points it sees, matched by descriptor alone.
                uv, depth = project_points(self.points_xyz, predicted, self.K)
                points = np.flatnonzero(in_view(uv, depth, self.width, self.height,
                                                slack_px=0.25 * max(self.width, self.height)))
                keypoints = np.arange(min(len(features), self.config.max_keypoints))
                matches = match_mutual_nn(features.descriptors[keypoints], self._descriptors(points),
                                          ratio=self.config.match_ratio)
                matches = self._distinct(features.descriptors[keypoints], points, matches)
            else:
                points, uv = self._points_in_view(predicted)
                matches = self._guided_matches(features, points, uv)
            registration = self._register(features.keypoints[matches[:, 0]], points[matches[:, 1]],
                                          self.config.track_ransac_max_error_px)
            result = self._gate(registration, stamp_ns, state, self.config.min_track_inliers)
            if result.localized:
                break
        return result

    def _verify(self, features: Features, tracked: Result, timings: dict) -> tuple[Result | None, Recognition]:
        """Recognition must still see the tracked landmarks; otherwise (None) relocalize."""
        tick = time.perf_counter()
        recognition = self.recognizer.recognize(features, self.config.max_keypoints)
        timings["recognition_ms"] = _ms(tick)
        self._frame_recognition = recognition
        self._frames_since_check = 0
        ranked = self._ranked_landmarks(recognition)
        if np.isin(tracked.landmark_ids, ranked).any():
            return tracked, recognition
        logger.info("tracked landmarks %s are not among the recognized %s: relocalizing",
                    tracked.landmark_ids.tolist(), ranked.tolist())
        return None, recognition

    def _follow_images(self, features: Features, result: Result, timings: dict) -> None:
        """Is this frame's view continuous with the last one's? A tracked frame is; any other
        is checked by matching keypoints, while it matters: with an anchor and an unbroken chain."""
        if not self.config.tracking:  # each frame on its own: no continuity to follow
            return
        previous, self._previous_features = self._previous_features, features
        if result.state == State.TRACKED or not self._continuous:
            return
        if self._anchor is None or previous is None or self.config.continuity_min_inliers == 0:
            self._continuous = False  # no check: every frame may be a kidnap
            return
        tick = time.perf_counter()
        self._continuous = views_overlap(previous, features, self.config.continuity_min_inliers,
                                         self.config.max_keypoints)
        timings["continuity_ms"] = _ms(tick)

    def _continuity(self, result: Result) -> Result:
        """Accept a localized result, or hold it as a jump (see the module docstring)."""
        config = self.config
        jump, self._jump = self._jump, None
        if config.tracking and config.continuity_min_inliers > 0 and self._continuous and self._anchor is not None:
            frames = self._frame - self._anchor[1]
            if self._far(result.cam_from_world, self._anchor[0], self._anchor[2], result.stamp_ns, frames):
                return self._hold(result, 0, look_alike=True)
        if config.tracking and config.jump_confirm_frames > 0:
            # The held pose, found again on the very next frame?
            agrees = jump is not None and jump.frame == self._frame - 1 and \
                not self._far(result.cam_from_world, jump.cam_from_world, jump.stamp_ns, result.stamp_ns)
            if agrees and jump.agreeing < config.jump_confirm_frames:
                return self._hold(result, jump.agreeing + 1)
            # Otherwise relocalized far away, or tracked away from a held pose: a new jump.
            if not agrees and self._anchor is not None and \
                    self._frame - self._anchor[1] <= config.jump_memory_frames and \
                    self._far(result.cam_from_world, self._anchor[0], self._anchor[2], result.stamp_ns):
                return self._hold(result, 1)
        self._anchor = (result.cam_from_world, self._frame, result.stamp_ns)
        self._continuous = True
        return result

    def _far(self, cam_from_world: np.ndarray, reference: np.ndarray, reference_stamp_ns: int, stamp_ns: int,
             continuous_frames: int = 0) -> bool:
        """Farther than a jump plus what the camera could have moved since the reference: in
        the time between the stamps (frames the node dropped count) or, with continuous_frames,
        in that many frames (stamps may not be times), whichever allows more."""
        config = self.config
        elapsed_s = max(stamp_ns - reference_stamp_ns, 0) / 1e9
        distance_m, angle_deg = pose_difference(invert(cam_from_world), invert(reference))
        moved_m = max(continuous_frames * config.continuity_step_m, elapsed_s * config.continuity_speed_mps)
        turned_deg = max(continuous_frames * config.continuity_step_deg, elapsed_s * config.continuity_turn_dps)
        return distance_m >= config.jump_distance_m + moved_m or angle_deg >= config.jump_angle_deg + turned_deg

    def _hold(self, result: Result, agreeing: int, look_alike: bool = False) -> Result:
        """LOST for now; the pose waits for the next frames to agree with it (a look-alike's,
        for the images to stop being continuous)."""
        self._jump = _Jump(result.cam_from_world, agreeing, self._frame, result.stamp_ns, look_alike)
        distance_m, angle_deg = pose_difference(invert(result.cam_from_world), invert(self._anchor[0]))
        frames_ago = self._frame - self._anchor[1]
        where = f"localized {distance_m:.2f} m, {angle_deg:.0f} deg away from the pose {frames_ago} frame(s) ago"
        if look_alike:
            message = f"{where}, with the view continuous since: a look-alike, held"
        else:
            message = f"{where}: held until {self.config.jump_confirm_frames + 1 - agreeing} more agree"
        return Result(result.stamp_ns, State.LOST, landmark_ids=result.landmark_ids, num_inliers=result.num_inliers,
                      num_candidates=result.num_candidates, message=message)

    # ------------------------------------------------------------------------------------
    def _predicted_pose(self) -> np.ndarray:
        if len(self._poses) < 2:
            return self._poses[-1]
        previous, last = self._poses
        return (last @ np.linalg.inv(previous)) @ last  # constant velocity

    def _points_in_view(self, cam_from_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        uv, depth = project_points(self.points_xyz, cam_from_world, self.K)
        points = np.flatnonzero(in_view(uv, depth, self.width, self.height, slack_px=0.0))
        return points, uv[points]

    def _guided_matches(self, features: Features, points: np.ndarray, uv: np.ndarray) -> np.ndarray:
        """For each projected point, the best keypoint within the radius (ratio test against
        the second best there); each keypoint keeps only its best point. -> [M x 2]
        (keypoint index, position in `points`)."""
        if not len(points) or not len(features):
            return np.zeros((0, 2), np.int64)
        neighbours = 4
        distance, index = cKDTree(features.keypoints).query(uv, k=neighbours,
                                                           distance_upper_bound=self.config.track_radius_px)
        valid = np.isfinite(distance)
        index = np.where(valid, index, 0)
        similarity = np.einsum("pkd,pd->pk", features.descriptors[index], self._descriptors(points))
        descriptor_distance = np.sqrt(np.maximum(2.0 - 2.0 * similarity, 0.0))
        descriptor_distance[~valid] = np.inf
        order = np.argsort(descriptor_distance, axis=1)
        best = np.take_along_axis(descriptor_distance, order[:, :1], 1)[:, 0]
        second = np.take_along_axis(descriptor_distance, order[:, 1:2], 1)[:, 0]
        keep = np.isfinite(best) & (best < self.config.track_ratio * second) & (best < 1.0)
        keypoint = np.take_along_axis(index, order[:, :1], 1)[:, 0]
        rows = np.flatnonzero(keep)
        # One point per keypoint: the closest in descriptor space.
        rows = rows[np.lexsort((best[rows], keypoint[rows]))]
        first = np.r_[True, keypoint[rows][1:] != keypoint[rows][:-1]] if len(rows) else np.zeros(0, bool)
        rows = rows[first]
        return np.stack([keypoint[rows], rows], axis=1).astype(np.int64)

    def _register(self, keypoints: np.ndarray, points: np.ndarray, max_error_px: float) -> _Registration | None:
        """PnP RANSAC of keypoints [N x 2] against `self.points_xyz[points]`."""
        if len(points) < 4:
            return None
        options = pycolmap.AbsolutePoseEstimationOptions()
        options.ransac.max_error = max_error_px
        options.ransac.random_seed = 0  # the same frame gives the same pose
        try:
            estimate = pycolmap.estimate_and_refine_absolute_pose(
                keypoints.astype(np.float64), self.points_xyz[points].astype(np.float64), self.camera, options,
                pycolmap.AbsolutePoseRefinementOptions(), True)
        except (RuntimeError, ValueError) as exc:  # degenerate configurations
            logger.debug("PnP failed: %s", exc)
            return None
        if estimate is None:
            return None
        cam_from_world = np.eye(4)
        cam_from_world[:3] = np.asarray(estimate["cam_from_world"].matrix())
        covariance = np.asarray(estimate.get("covariance", np.eye(6) * LOST_VARIANCE), dtype=np.float64)
        mask = np.asarray(estimate["inlier_mask"], bool)
        return _Registration(cam_from_world, covariance, points[mask], keypoints[mask], int(mask.sum()), len(points))

    def _landmarks_of(self, points: np.ndarray) -> np.ndarray:
        """Landmark ids of the inlier points, most inliers first."""
        counts = np.bincount(self.map.point_landmark[points], minlength=self.map.num_landmarks + 1)
        used = np.argsort(-counts, kind="stable")
        return used[counts[used] > 0]

    def _gate(self, registration: _Registration | None, stamp_ns: int, state: State, min_inliers: int,
              min_ratio: float | None = None) -> Result:
        """Accept or reject a registration; an accepted one becomes the track's latest pose."""
        if registration is None:
            return Result(stamp_ns, State.LOST, message="no pose: too few matches")
        ratio = registration.num_inliers / max(registration.num_candidates, 1)
        if registration.num_inliers < min_inliers or ratio < (min_ratio or self.config.min_inlier_ratio) \
                or not np.all(np.isfinite(registration.cam_from_world)):
            return Result(stamp_ns, State.LOST, num_inliers=registration.num_inliers,
                          num_candidates=registration.num_candidates,
                          message=f"gate: {registration.num_inliers} inliers of {registration.num_candidates}")
        used = self._landmarks_of(registration.inlier_points)
        if state == State.RELOCALIZED:
            self._frames_since_check = 0
        self._tracked_landmarks = used
        self._poses = (self._poses + [registration.cam_from_world])[-2:]
        self._inliers_uv, self._inlier_points = registration.inliers_uv, registration.inlier_points
        return Result(stamp_ns, state, registration.cam_from_world, registration.covariance, used,
                      registration.num_inliers, registration.num_candidates, inliers_uv=registration.inliers_uv)


def descriptor_twins(descriptors: np.ndarray, xyz: np.ndarray, min_distance_m: float) -> np.ndarray:
    """For each point, the point at least `min_distance_m` away whose descriptor is the most
    similar (-1 when there is none): its look-alike under a repeated texture. Exhaustive,
    O(points^2): about a second for 16k points; large maps need an approximate search."""
    count = len(descriptors)
    chunk = max(16, min(2048, (1 << 25) // max(count, 1)))  # two [chunk x count] float32 matrices
    twins = np.full(count, -1, np.int64)
    if count < 2:
        return twins
    all_descriptors = torch.from_numpy(np.ascontiguousarray(descriptors, np.float32))
    all_xyz = torch.from_numpy(np.ascontiguousarray(xyz, np.float32))
    with torch.inference_mode():
        for start in range(0, count, chunk):
            rows = slice(start, min(start + chunk, count))
            similarity = all_descriptors[rows] @ all_descriptors.T
            near = torch.cdist(all_xyz[rows], all_xyz) < min_distance_m
            similarity.masked_fill_(near, -np.inf)
            best, index = similarity.max(dim=1)
            twins[rows] = torch.where(torch.isfinite(best), index, -1).numpy()
    return twins


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


def _ms(since: float) -> float:
    return round(1000.0 * (time.perf_counter() - since), 3)
