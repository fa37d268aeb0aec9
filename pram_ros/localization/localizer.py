"""The PRAM localizer: one image in, a gated pose or LOST out.

In: a `PramMap`, the recognizer trained on it, a `LocalizerConfig` and a feature extractor;
then, per frame, an image of the map's camera and its stamp. Out: a `Result` (result.py)
with `cam_from_world`, its covariance, the state (RELOCALIZED, TRACKED or LOST, with a
reason), the landmarks used, the inliers and milliseconds per stage.

This file is only the per-frame state machine; each mechanism has its own module:
- frontend.py: image check, gray, features;
- relocalization.py: recognition -> the most-voted landmarks -> 2D-3D matching -> PnP ->
  gate -> refinement (registration.py holds matching, PnP and the pure gate);
- tracking.py: the track (last poses, inliers, optical-flow state);
- continuity.py: jumps and look-alikes held until believed;
- background.py: full frames on a second thread (`background=True`, the node's default).

Per frame: an optical-flow frame when the track allows it (no features); else features,
then tracking from the predicted pose (with a recognition check every `reverify_every`
frames) or relocalization, then the continuity check. A frame whose tracking fails is
relocalized at once. A rejected pose is never reported, and a frame that cannot be
processed (wrong size, no texture, no features) is LOST with a reason, never an exception.
With `background`, a tracked frame due a full pass is tracked by optical flow like the
others and registered again with features on the worker thread; the flow then follows it.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from pram_ros.features import FeatureExtractor, Features
from pram_ros.localization.background import Background, RefreshJob
from pram_ros.localization.config import LocalizerConfig
from pram_ros.localization.continuity import Continuity
from pram_ros.localization.frontend import TakesAnyCamera, elapsed_ms, extract, gray_of
from pram_ros.localization.registration import MapPoints, Outcome, register_tracked
from pram_ros.localization.relocalization import landmarks_recognized, ranked_landmarks, register_landmarks
from pram_ros.localization.result import Result, State, Unusable, lost
from pram_ros.localization.tracking import Track
from pram_ros.mapping.mapfile import PramMap
from pram_ros.recognition.model import Recognition, Recognizer

logger = logging.getLogger(__name__)

# With a background worker, optical flow may run this many times `klt_frames` in a row
# while a refresh is late, before a frame takes the full pipeline on the camera's thread.
BACKGROUND_FLOW_FACTOR = 4


class Localizer(TakesAnyCamera):
    """`process(image, stamp_ns)` per frame; see the module docstring. Images of another
    camera than the map's: `set_camera(K, width, height, distortion)` first.
    `background`: full frames of the track on a worker thread (background.py); `close()`
    stops it."""

    def __init__(self, pram_map: PramMap, recognizer: Recognizer, config: LocalizerConfig | None = None,
                 extractor: FeatureExtractor | None = None, background: bool = False):
        from pram_ros.localization.loading import map_extractor

        if recognizer.num_landmarks != pram_map.num_landmarks:
            raise ValueError(f"the recognizer knows {recognizer.num_landmarks} landmarks, the map has "
                             f"{pram_map.num_landmarks}: load the model trained on this map")
        self.map = pram_map
        self.recognizer = recognizer
        self.config = config or LocalizerConfig()
        self.extractor = extractor or map_extractor(pram_map)
        self.use_map_cameras(pram_map)
        self.points = MapPoints(pram_map, self.config.twin_min_distance_m)
        self.track = Track()
        self.continuity = Continuity(self.config, self.points.xyz, self.extractor.extract)
        self.frame = 0  # frames processed since reset()
        # The worker reads the track's recent frames: a list the track replaces, never changes.
        self.background = Background(self.extractor, recognizer, self.points, self.config,
                                     lambda: self.track.recent) \
            if background and self.config.tracking and self.config.klt_frames > 0 else None

    def warm_up(self) -> None:
        """Run every stage once on a noise image of the camera's size, then forget it, so that
        the first camera frame does not pay the runtimes' first-call costs (the demo's first
        frame: features 49-58 ms and recognition 22-27 ms against 29 and 12 after, 2026-12-07)."""
        noise = np.random.default_rng(0).integers(0, 256, (self.input.height, self.input.width, 3), np.uint8)
        self.process(noise, 0)
        self.reset()

    def close(self) -> None:
        """Stop the background worker, if any (after the frame it is on)."""
        if self.background is not None:
            self.background.close()

    def memory_bytes(self) -> dict[str, int]:
        """Bytes held in memory for the map, by part (the extractor, the same for every
        method, is left out)."""
        recognizer = sum(p.numel() * p.element_size()
                         for p in (*self.recognizer.net.parameters(), *self.recognizer.net.buffers()))
        return {"map": self.map.nbytes(), "working_copies": self.points.working_bytes(), "recognizer": recognizer}

    @property
    def tracking(self) -> bool:
        """Is there a track to follow (the next frame need not relocalize)?"""
        return self.track.active

    def reset(self) -> None:
        """Forget every earlier frame (a new sequence): the next frame relocalizes, with no
        continuity check against an old pose."""
        self.frame = 0
        self.track.drop()
        self.continuity.reset()

    def set_camera(self, K: np.ndarray, width: int, height: int, distortion: np.ndarray | None = None) -> bool:
        """The query camera (see TakesAnyCamera); a new one starts a new sequence."""
        changed = super().set_camera(K, width, height, distortion)
        if changed:
            self.reset()
        return changed

    def request_relocalization(self) -> None:
        """Relocalize the next frame from scratch, with no continuity check against the old pose."""
        self.track.drop()
        self.continuity.forget_pose()

    def set_pose_hint(self, cam_from_world: np.ndarray) -> None:
        """Track from this pose on the next frame (e.g. RViz's "2D Pose Estimate"); the tracking
        gate decides, and a wrong hint only costs a relocalization. Recognition checks it."""
        self.reset()
        self.track.start_from(cam_from_world, frames_since_check=self.config.reverify_every)

    # ------------------------------------------------------------------------------------
    def process(self, image: np.ndarray, stamp_ns: int = 0, frames_dropped: int = 0) -> Result:
        """One camera frame. `frames_dropped`: the camera's frames the caller skipped since the
        previous call (a node that takes only the newest image); it tells continuity that
        this frame is not the camera's next one."""
        start = time.perf_counter()
        timings: dict[str, float] = {}
        self.frame += 1
        self.continuity.frame_at(stamp_ns, frames_dropped)
        config = self.config
        image = self.input.prepare(image)
        if isinstance(image, Unusable):
            self.track.drop()
            self.continuity.frame_unusable()
            return lost(stamp_ns, *image, timings_ms={"total_ms": elapsed_ms(start)})
        gray = None
        if config.klt_frames > 0 and not self.camera.image_problem(image):
            gray = gray_of(image)
            if gray is not None:
                self.continuity.keep_image(gray)
                result = self._flow_frame(gray, stamp_ns, timings)
                if result is not None:
                    result.timings_ms = {**timings, "total_ms": elapsed_ms(start)}
                    return result
        if self.background is not None:
            self.background.take(wait=True)  # this frame supersedes it
        frame = extract(self.extractor, self.camera, image, config.min_inliers, timings, gray)
        if isinstance(frame, Unusable):
            self.track.drop()
            self.continuity.frame_unusable()
            return lost(stamp_ns, *frame, timings_ms={**timings, "total_ms": elapsed_ms(start)})

        result, recognition = self._localize(frame.features, stamp_ns, timings)
        self.continuity.follow(frame.features, result.state == State.TRACKED, timings)
        if result.localized:
            result = self.continuity.check(result, self.frame, frame.features, self.camera)
        result.keypoints_uv = frame.features.keypoints
        result.keypoint_landmarks = _keypoint_landmarks(recognition, len(frame.features))
        result.timings_ms = {**timings, "total_ms": elapsed_ms(start)}
        if not result.localized:
            self.track.drop()
            held = self.continuity.pose_to_track_from(self.frame)
            if held is not None:
                self.track.start_from(held, stamp_ns=stamp_ns)  # the next frame tracks from the held pose
        elif frame.gray is not None and config.klt_frames > 0:
            self.track.full_frame_done(frame.gray, self.frame)
        return result

    def _localize(self, features: Features, stamp_ns: int, timings: dict) -> tuple[Result, Recognition | None]:
        """Track when there is a track (checked by recognition when due, and against a
        relocalization when it weakens), else relocalize."""
        recognition = None
        if self.config.tracking and self.track.active:
            tracked = self._track(features, stamp_ns, timings)
            if tracked.accepted and self.track.due_for_check(self.config.reverify_every):
                recognition = self._recognize(features, timings)
                if not self._still_recognized(tracked, recognition):
                    tracked = None
            if tracked is not None and tracked.accepted:
                inliers = tracked.registration.num_inliers
                if not self.track.weakened(inliers, self.config.track_recheck_ratio):
                    return self._accept(tracked, stamp_ns, State.TRACKED), recognition
                # Tracking is never worse than relocalizing the same frame: keep the stronger.
                relocalized, recognition = self._relocalize(features, timings, recognition)
                if relocalized.accepted and relocalized.registration.num_inliers > inliers:
                    logger.debug("a weakened track (%d inliers) replaced by a relocalization (%d)", inliers,
                                 relocalized.registration.num_inliers)
                    return self._accept(relocalized, stamp_ns, State.RELOCALIZED), recognition
                self.track.rechecked(inliers)
                return self._accept(tracked, stamp_ns, State.TRACKED), recognition
        relocalized, recognition = self._relocalize(features, timings, recognition)
        return self._accept(relocalized, stamp_ns, State.RELOCALIZED), recognition

    def _follow_flow(self, gray: np.ndarray, stamp_ns: int, timings: dict) -> Result | None:
        """An optical-flow frame, or None when the flow slipped (the full pipeline takes it)."""
        tick = time.perf_counter()
        flow = self.track.follow_flow(gray, self.camera, self.points, self.config)
        timings["tracking_ms"] = elapsed_ms(tick)
        if not flow.outcome.accepted:
            logger.debug("frame %d: optical flow failed (%s)", self.frame, flow.outcome.reason)
            return None
        result = self._accept(flow.outcome, stamp_ns, State.TRACKED)
        self.track.flow_accepted(gray, self.frame)
        self.continuity.anchor_at(result.cam_from_world, self.frame, stamp_ns)
        result.keypoints_uv = flow.followed_uv
        result.keypoint_landmarks = np.full(len(flow.followed_uv), -1, np.int64)
        return result

    def _flow_frame(self, gray: np.ndarray, stamp_ns: int, timings: dict) -> Result | None:
        """An optical-flow frame when the track allows one, else None. With a background
        worker: its finished refresh is taken first, and the one in flight is waited for
        when the flow cannot go on without it (cheaper than a full frame here)."""
        self._take_refresh(wait=False)
        while True:
            if self._flow_ready():
                result = self._follow_flow(gray, stamp_ns, timings)
                if result is not None:
                    self._submit_refresh(gray, result)
                    return result
            if self.background is None or not self.background.in_flight:
                return None
            self._take_refresh(wait=True)

    def _flow_ready(self) -> bool:
        limit = None if self.background is None else BACKGROUND_FLOW_FACTOR * self.config.klt_frames
        return self.track.flow_ready(self.config, limit)

    def _submit_refresh(self, gray: np.ndarray, flow: Result) -> None:
        """Hand an optical-flow frame that is due a full pass to the worker, when it is free:
        `klt_frames` since the last, or sooner when the flow has lost half of the track's
        inliers (a fast turn). (Whenever it is free kept both cores busy: the flow frames
        slowed, and more frames were dropped.)"""
        background, track = self.background, self.track
        due = track.flow_frames >= self.config.klt_frames or track.weakened(flow.num_inliers, 0.5)
        if background is None or background.in_flight or not due:
            return
        background.submit(RefreshJob(track.generation, self.frame, flow.stamp_ns, gray, self.camera,
                                     flow.cam_from_world, track.due_for_check(self.config.reverify_every),
                                     track.strongest_inliers))

    def _take_refresh(self, wait: bool) -> None:
        """The worker's finished refresh: optical flow follows it, or (when it failed) this
        frame takes the full pipeline. `wait`: for the one in flight."""
        refresh = self.background.take(wait) if self.background is not None else None
        if refresh is None or refresh.job.track_generation != self.track.generation:
            return  # nothing finished, or the track it refreshed was dropped since
        job = refresh.job
        if not refresh.passed:
            logger.debug("frame %d refreshed in the background: %s; full pipeline next", job.frame, refresh.problem)
            self.track.refresh_failed()
            return
        registration = refresh.outcome.registration
        self.track.refreshed(refresh.followed, self.camera, refresh.recognized, refresh.strongest_inliers)
        self.continuity.view_refreshed(refresh.features, registration.cam_from_world, job.stamp_ns)

    def _track(self, features: Features, stamp_ns: int, timings: dict) -> Outcome:
        """The keypoints against the points the predicted pose sees."""
        tick = time.perf_counter()
        outcome = register_tracked(self.camera, self.points, features, self.track.predicted_pose(stamp_ns),
                                   self.config)
        timings["tracking_ms"] = elapsed_ms(tick)
        if not outcome.accepted:
            logger.debug("tracking lost (%s): relocalizing", outcome.reason)
        return outcome

    def _recognize(self, features: Features, timings: dict) -> Recognition:
        tick = time.perf_counter()
        recognition = self.recognizer.recognize(features, self.config.max_keypoints)
        timings["recognition_ms"] = elapsed_ms(tick)
        return recognition

    def _still_recognized(self, tracked: Outcome, recognition: Recognition) -> bool:
        """Recognition must still see the tracked landmarks; otherwise relocalize."""
        self.track.frames_since_check = 0
        if landmarks_recognized(self.points, tracked.registration, recognition, self.config.top_landmarks):
            return True
        logger.info("tracked landmarks %s are not among the recognized %s: relocalizing",
                    self.points.landmarks_of(tracked.registration.inlier_points).tolist(),
                    ranked_landmarks(recognition, self.config.top_landmarks).tolist())
        return False

    def _relocalize(self, features: Features, timings: dict,
                    recognition: Recognition | None) -> tuple[Outcome, Recognition]:
        """`recognition`: this frame's, when a tracking check already ran it."""
        if recognition is None:
            recognition = self._recognize(features, timings)
        tick = time.perf_counter()
        outcome = register_landmarks(self.camera, self.points, features, recognition, self.config)
        timings["registration_ms"] = elapsed_ms(tick)
        return outcome, recognition

    def _accept(self, outcome: Outcome, stamp_ns: int, state: State) -> Result:
        """The outcome as a Result; an accepted one becomes the track's latest pose."""
        if not outcome.accepted:
            return outcome.result(stamp_ns, state, np.zeros(0, np.int64))
        self.track.accept(outcome.registration, state, stamp_ns)
        return outcome.result(stamp_ns, state, self.points.landmarks_of(outcome.registration.inlier_points))


def _keypoint_landmarks(recognition: Recognition | None, count: int) -> np.ndarray:
    """Each keypoint's recognized landmark (0 background), -1 where recognition did not run."""
    labels = np.full(count, -1, np.int64)
    if recognition is not None:
        labels[recognition.keypoint_indices] = recognition.labels
    return labels
