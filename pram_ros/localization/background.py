"""The track's full frames on a second thread, so that the camera's thread need not wait on
features.

A full frame (features, registration, refinement) costs 70-120 ms on two cores, several
camera periods at 30 Hz; a node that does it on the camera's thread drops the frames that
arrive meanwhile. With background refreshes on, the localizer tracks every frame by optical
flow (a few ms) and hands the frame that is due a full pass to a worker thread instead. The
worker extracts its features, registers them from the pose the flow gave it, refines, and
runs the recognition check when it is due, and when the track weakened it relocalizes the
frame too (the pose with more inliers wins, as on the camera's thread); nothing it does
changes the localizer.

The first frame the localizer processes after the worker finished takes the refresh
(`Localizer._take_refresh`): when it passed, the refreshed frame's inliers are followed by
optical flow through the frames accepted since (the worker follows them through the frames
accepted by the time it finished, the localizer through the rest: `Track.refreshed`), and
the flow goes on from there; when it failed (tracking lost, the landmarks no longer
recognized, or a pose away from the flow's), the frame that takes it runs the full
pipeline on the camera's thread, with the same checks as without a worker. When the flow
cannot go on, the refresh in flight is waited for first. A refresh is never published: its
frame was, when the flow tracked it. Relocalization (no track) always runs on the camera's
thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from dataclasses import dataclass, field, replace

import numpy as np

from pram_ros.features import FeatureExtractor, Features
from pram_ros.geometry import invert, pose_difference
from pram_ros.localization.config import LocalizerConfig
from pram_ros.localization.frontend import elapsed_ms, extract
from pram_ros.localization.registration import Camera, MapPoints, Outcome, register_tracked
from pram_ros.localization.relocalization import landmarks_recognized, register_landmarks
from pram_ros.localization.result import Unusable
from pram_ros.localization.tracking import Followed, follow_through
from pram_ros.recognition.model import Recognizer

# A refreshed pose this far from the flow's pose of the same frame means one of them is
# wrong: neither is trusted, and the next frame runs the full pipeline.
AGREE_M = 0.1
AGREE_DEG = 5.0


@dataclass(frozen=True)
class RefreshJob:
    """A frame the flow tracked, to be registered again with features."""

    track_generation: int  # the track's when submitted: a track dropped since makes it stale
    frame: int  # the localizer's frame counter
    stamp_ns: int
    gray: np.ndarray
    camera: Camera
    cam_from_world: np.ndarray  # the flow's pose of this frame
    check_recognition: bool  # recognition's check of the tracked landmarks is due
    strongest_inliers: int  # the track's, for the weakened-track test


@dataclass
class Refresh:
    """The worker's answer: the frame's features and its registration, or why it failed."""

    job: RefreshJob
    features: Features | None
    outcome: Outcome
    problem: str = ""  # "" when the flow may follow the refreshed frame
    followed: Followed | None = None  # when it passed: its inliers, followed through later frames
    strongest_inliers: int = 0  # what the track's strongest inliers become
    recognized: bool = False  # recognition ran on the frame (and saw the tracked landmarks)
    timings_ms: dict = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return not self.problem


def refresh_frame(job: RefreshJob, extractor: FeatureExtractor, recognizer: Recognizer, points: MapPoints,
                  config: LocalizerConfig, recent_frames: Callable[[], list] = list) -> Refresh:
    """The full pass of a tracked frame, as the localizer's own tracking does it: registered
    from the flow's pose; relocalized too when the track weakened (the pose with more
    inliers kept, when it agrees with the flow's); recognition's check when due. When it
    passed, its inliers are followed through `recent_frames()` ((frame, gray) accepted
    since, the track's), so that the camera's thread need not."""
    start = time.perf_counter()
    timings: dict[str, float] = {}
    frame = extract(extractor, job.camera, job.gray, config.min_inliers, timings, job.gray)
    if isinstance(frame, Unusable):
        return Refresh(job, None, Outcome(None, frame.message), frame.message, timings_ms=timings)
    features = frame.features
    tick = time.perf_counter()
    outcome = register_tracked(job.camera, points, features, job.cam_from_world, config, own_pose=True)
    timings["tracking_ms"] = elapsed_ms(tick)
    if not outcome.accepted:
        return Refresh(job, features, outcome, f"tracking lost ({outcome.reason})", timings_ms=timings)
    problem = _away_from_flow(outcome, job)
    strongest = max(job.strongest_inliers, outcome.registration.num_inliers)
    recognition = None
    if not problem and job.check_recognition:
        recognition = _recognize(recognizer, features, config, timings)
        if not landmarks_recognized(points, outcome.registration, recognition, config.top_landmarks):
            problem = "the tracked landmarks are no longer recognized"
    inliers = outcome.registration.num_inliers
    if not problem and inliers < config.track_recheck_ratio * job.strongest_inliers:
        if recognition is None:
            recognition = _recognize(recognizer, features, config, timings)
        tick = time.perf_counter()
        # The recognized landmarks only: widening to the whole map takes several camera periods,
        # and the flow may hold the track meanwhile anyway.
        relocalized = register_landmarks(job.camera, points, features, recognition,
                                         replace(config, widen_landmarks=0, widen_max_points=0))
        timings["registration_ms"] = elapsed_ms(tick)
        strongest = inliers  # the localizer's `rechecked`: the track is measured from here
        if relocalized.accepted and relocalized.registration.num_inliers > inliers:
            outcome, strongest = relocalized, relocalized.registration.num_inliers
            problem = _away_from_flow(outcome, job)
    followed = None
    if not problem:
        registration = outcome.registration
        followed = follow_through(recent_frames(), Followed(job.frame, job.gray, registration.inliers_uv,
                                                            registration.inlier_points), job.camera)
    timings["total_ms"] = elapsed_ms(start)
    return Refresh(job, features, outcome, problem, followed, strongest, recognition is not None, timings)


def _recognize(recognizer: Recognizer, features: Features, config: LocalizerConfig, timings: dict):
    tick = time.perf_counter()
    recognition = recognizer.recognize(features, config.max_keypoints)
    timings["recognition_ms"] = elapsed_ms(tick)
    return recognition


def _away_from_flow(outcome: Outcome, job: RefreshJob) -> str:
    """Why a refreshed pose cannot be the flow's pose of the same frame ("" when it can)."""
    distance_m, angle_deg = pose_difference(invert(outcome.registration.cam_from_world), invert(job.cam_from_world))
    if distance_m > AGREE_M or angle_deg > AGREE_DEG:
        return f"{distance_m:.2f} m, {angle_deg:.1f} deg from the optical flow's pose"
    return ""


class Background:
    """One worker thread and at most one refresh in flight."""

    def __init__(self, extractor: FeatureExtractor, recognizer: Recognizer, points: MapPoints,
                 config: LocalizerConfig, recent_frames: Callable[[], list] = list):
        self._run = lambda job: refresh_frame(job, extractor, recognizer, points, config, recent_frames)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pram_refresh")
        self._future: Future | None = None
        self.submitted = 0  # refreshes handed to the worker, for tests and logs
        self.taken = 0

    @property
    def in_flight(self) -> bool:
        return self._future is not None

    def submit(self, job: RefreshJob) -> None:
        if self._future is not None:
            raise RuntimeError("a refresh is already in flight")
        self._future = self._pool.submit(self._run, job)
        self.submitted += 1

    def wait(self) -> None:
        """Block until the refresh in flight, if any, has finished (it stays to be taken)."""
        if self._future is not None:
            futures_wait([self._future])

    def take(self, wait: bool = False) -> Refresh | None:
        """The finished refresh (it then leaves the worker), None while it runs or when none
        was submitted; `wait`: block until it finishes. The worker's exception is raised here."""
        future = self._future
        if future is None or not (wait or future.done()):
            return None
        self._future = None
        self.taken += 1
        return future.result()

    def close(self) -> None:
        """Stop the worker after the refresh in flight, if any."""
        self._future = None
        self._pool.shutdown(wait=True, cancel_futures=True)
