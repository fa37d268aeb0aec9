"""The baselines `pram bench` compares PRAM with, behind the same interface and Result.

- `ExhaustiveLocalizer`: every keypoint against every map point (no recognition), then
  the same PnP, gate and refinement as PRAM.
- `RetrievalLocalizer` (hloc-style): the query's VLAD -> the top-k database images by
  cosine similarity -> matching of the query keypoints against each of those images'
  observations, pooled into 2D-3D matches -> PnP and the gate. Method `retrieval` matches
  by mutual nearest neighbour, `retrieval-lg` with LighterGlue, XFeat's learned matcher
  (features/lighterglue.py), as hloc users would. It needs the retrieval database
  (mapping/retrieval_db.py), which keeps what the PRAM map drops.

Neither tracks: every frame is relocalized from scratch, as hloc does. Both share the
front end (frontend.py) and registration (registration.py) with the PRAM localizer.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from pram_ros.features import FeatureExtractor, Features, match_mutual_nn
from pram_ros.localization.config import LocalizerConfig
from pram_ros.localization.frontend import InputCamera, TakesAnyCamera, elapsed_ms, extract
from pram_ros.localization.registration import MapPoints, Outcome, estimate_pose, gate
from pram_ros.localization.relocalization import register_all_points
from pram_ros.localization.result import Result, State, Unusable, lost
from pram_ros.mapping.mapfile import PramMap
from pram_ros.mapping.retrieval_db import RetrievalConfig, RetrievalDatabase, RetrievalDatabaseError, vlad

MATCHERS = ("mutual-nn", "lighterglue")


def relocalize_frame(extractor: FeatureExtractor, camera: InputCamera, config: LocalizerConfig, image,
                     stamp_ns: int, register: Callable[[Features, dict], tuple[Outcome, np.ndarray]]) -> Result:
    """One frame on its own: features, then `register` (-> the outcome and, for an accepted
    one, its landmark ids)."""
    start = time.perf_counter()
    timings: dict[str, float] = {}
    image = camera.prepare(image)
    if isinstance(image, Unusable):
        return lost(stamp_ns, *image, timings_ms={"total_ms": elapsed_ms(start)})
    frame = extract(extractor, camera.camera, image, config.min_inliers, timings)
    if isinstance(frame, Unusable):
        return lost(stamp_ns, *frame, timings_ms={**timings, "total_ms": elapsed_ms(start)})
    outcome, landmark_ids = register(frame.features, timings)
    result = outcome.result(stamp_ns, State.RELOCALIZED, landmark_ids)
    result.keypoints_uv = frame.features.keypoints
    result.keypoint_landmarks = np.full(len(frame.features), -1, np.int64)  # no recognition
    result.timings_ms = {**timings, "total_ms": elapsed_ms(start)}
    return result


class FrameByFrame:
    """What a frame-by-frame method does with the localizer's track controls: nothing."""

    def reset(self) -> None:
        pass

    def request_relocalization(self) -> None:
        pass

    def set_pose_hint(self, cam_from_world: np.ndarray) -> None:
        pass


class ExhaustiveLocalizer(FrameByFrame, TakesAnyCamera):
    """Every keypoint against every map point; `process(image, stamp_ns)`."""

    def __init__(self, pram_map: PramMap, config: LocalizerConfig | None = None,
                 extractor: FeatureExtractor | None = None):
        from pram_ros.localization.loading import map_extractor

        self.map = pram_map
        self.config = config or LocalizerConfig()
        self.extractor = extractor or map_extractor(pram_map)
        self.use_map_cameras(pram_map)
        self.points = MapPoints(pram_map, self.config.twin_min_distance_m)

    def memory_bytes(self) -> dict[str, int]:
        return {"map": self.map.nbytes(), "working_copies": self.points.working_bytes()}

    def process(self, image: np.ndarray, stamp_ns: int = 0, frames_dropped: int = 0) -> Result:
        return relocalize_frame(self.extractor, self.input, self.config, image, stamp_ns, self._register)

    def _register(self, features: Features, timings: dict) -> tuple[Outcome, np.ndarray]:
        tick = time.perf_counter()
        outcome = register_all_points(self.camera, self.points, features, self.config)
        timings["registration_ms"] = elapsed_ms(tick)
        used = (self.points.landmarks_of(outcome.registration.inlier_points) if outcome.accepted
                else np.zeros(0, np.int64))
        return outcome, used


class RetrievalLocalizer(FrameByFrame, TakesAnyCamera):
    """The hloc-style baseline; `process(image, stamp_ns)`. `matcher`: MATCHERS."""

    def __init__(self, pram_map: PramMap, database: RetrievalDatabase, config: LocalizerConfig | None = None,
                 retrieval: RetrievalConfig | None = None, extractor: FeatureExtractor | None = None,
                 matcher: str = "mutual-nn"):
        from pram_ros.localization.loading import map_extractor

        descriptor_dim = int(pram_map.meta["extractor"]["descriptor_dim"])
        if database.codebook.shape[1] != descriptor_dim or database.obs_descriptor.shape[1] != descriptor_dim:
            raise RetrievalDatabaseError(f"the retrieval database holds {database.codebook.shape[1]}-d descriptors, "
                                         f"the map's extractor gives {descriptor_dim}-d")
        self.config = config or LocalizerConfig()  # the same gate and PnP settings as PRAM
        self.retrieval = retrieval or RetrievalConfig()
        self.database = database
        self.extractor = extractor or map_extractor(pram_map)
        self.use_map_cameras(pram_map)
        if matcher not in MATCHERS:
            raise ValueError(f"matcher: expected one of {MATCHERS}, got {matcher!r}")
        self.learned = None
        if matcher == "lighterglue":
            if pram_map.meta["extractor"].get("name") != "xfeat":
                raise ValueError("the LighterGlue matcher takes XFeat features; this map was built with "
                                 f"{pram_map.meta['extractor'].get('name')!r}")
            from pram_ros.features.lighterglue import LighterGlueMatcher

            self.learned = LighterGlueMatcher(str(getattr(self.extractor, "device", "cpu")))
            self.image_sizes = pram_map.camera_size[pram_map.image_camera]

    def memory_bytes(self) -> dict[str, int]:
        return self.database.memory_bytes()

    def retrieve(self, descriptors: np.ndarray) -> np.ndarray:
        """The top-k database images for a query's descriptors, most similar first."""
        similarity = self.database.global_descriptor @ vlad(descriptors, self.database.codebook)
        top = min(self.retrieval.top_k, len(similarity))
        best = np.argpartition(-similarity, top - 1)[:top]
        return best[np.argsort(-similarity[best], kind="stable")]

    def process(self, image: np.ndarray, stamp_ns: int = 0, frames_dropped: int = 0) -> Result:
        return relocalize_frame(self.extractor, self.input, self.config, image, stamp_ns, self._register)

    def _register(self, features: Features, timings: dict) -> tuple[Outcome, np.ndarray]:
        tick = time.perf_counter()
        count = min(len(features), self.config.max_keypoints)
        descriptors = features.descriptors[:count]
        images = self.retrieve(descriptors)
        timings["retrieval_ms"] = elapsed_ms(tick)

        tick = time.perf_counter()
        pairs = []
        for image in images:
            rows = self.database.observations(int(image))
            if self.learned is not None:
                matches = self.learned.match(features.keypoints[:count], descriptors, features.image_size,
                                             self.database.obs_keypoint_uv[rows],
                                             self.database.obs_descriptor[rows].astype(np.float32),
                                             tuple(int(v) for v in self.image_sizes[int(image)]))
            else:
                matches = match_mutual_nn(descriptors, self.database.obs_descriptor[rows].astype(np.float32),
                                          ratio=self.config.match_ratio)
            pairs.append(np.stack([matches[:, 0], self.database.obs_point[rows][matches[:, 1]]], axis=1))
        # A keypoint may match several points through different images: RANSAC picks.
        pairs = np.unique(np.concatenate(pairs).astype(np.int64), axis=0) if pairs else np.zeros((0, 2), np.int64)
        registration = estimate_pose(self.camera, features.keypoints[pairs[:, 0]], pairs[:, 1],
                                     self.database.point_xyz[pairs[:, 1]], self.config.ransac_max_error_px)
        timings["registration_ms"] = elapsed_ms(tick)
        outcome = gate(registration, self.config.min_inliers, self.config.min_inlier_ratio)
        return outcome, np.zeros(0, np.int64)  # the baseline has no landmarks
