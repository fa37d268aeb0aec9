"""Relocalization the PRAM way: recognize landmarks, register against their points only.

In: a frame's `Features` and its `Recognition` (per-keypoint landmark labels). Out: an
`Outcome` (registration.py). The most-voted landmarks (`top_landmarks`) are chosen; the
keypoints labelled with them are matched against those landmarks' points (pooled, or
landmark by landmark first: `landmark_matching`), one PnP RANSAC, the gate, and the pose
refined against every point it sees (`refine_pose`). Recognition can be wrong (changed
lighting, a view it never learned), so a failed gate widens the search: on a small map
to every point, on a larger one to more landmarks. No state between frames.

The ratio test here is the keypoint's side only. A query holds many more keypoints than
the points it is matched against, and several of them often sit on one map point's corner
(a few pixels apart, or at two scales); the map point's side of the test drops all of them.
On the Strecha and Sacre-Coeur splits that test left 15 of 94 mutual matches of one photo
(the gate failed), and on the demo world's query_offpath it cost 0.05 of recall at 5 cm
(docs/benchmarks.md, 2026-12-06). Look-alikes are still caught by the twin test and the gate.
"""

from __future__ import annotations

import numpy as np

from pram_ros.features import Features
from pram_ros.localization.config import LocalizerConfig
from pram_ros.localization.registration import (
    Camera,
    MapPoints,
    Outcome,
    Registration,
    gate,
    match_points,
    refine,
    register_matches,
)
from pram_ros.localization.result import Reason
from pram_ros.recognition.model import Recognition


def ranked_landmarks(recognition: Recognition, top: int) -> np.ndarray:
    """The `top` most-voted landmarks; when fewer got votes, filled up with the landmarks
    holding the most probability (at least one keypoint's worth)."""
    ranked = recognition.ranked_landmarks()[:top]
    if len(ranked) < top and len(recognition.probabilities):
        mass = recognition.probabilities[:, 1:].sum(axis=0)
        order = np.argsort(-mass, kind="stable")
        extra = [k + 1 for k in order if mass[k] >= 1.0 and k + 1 not in ranked]
        ranked = np.concatenate([ranked, np.asarray(extra, np.int64)])[:top]
    return ranked.astype(np.int64)


def landmarks_recognized(index: MapPoints, registration: Registration, recognition: Recognition,
                         top: int) -> bool:
    """Does recognition still see a landmark of a tracked pose's inliers (among its `top`)?"""
    ranked = ranked_landmarks(recognition, top)
    return bool(np.isin(index.landmarks_of(registration.inlier_points), ranked).any())


def register_landmarks(camera: Camera, index: MapPoints, features: Features, recognition: Recognition,
                       config: LocalizerConfig) -> Outcome:
    """The recognized landmarks' points against the keypoints labelled with them; when that
    fails the gate, widened: every keypoint against every point of a small map
    (`widen_max_points`), or on a larger one against more landmarks (`widen_landmarks`). The outcome says which step."""
    ranked = ranked_landmarks(recognition, config.top_landmarks)
    outcome = Outcome(None, "no landmark recognized", code=Reason.NOT_RECOGNIZED)
    if len(ranked):
        outcome = _register_top_landmarks(camera, index, features, recognition, ranked, config)
    if outcome.accepted:
        return outcome
    keypoints = np.arange(min(len(features), config.max_keypoints))
    whole_map = 0 < len(index) <= config.widen_max_points
    # On a map matched whole anyway, more landmarks first only repeats the matching (on
    # the demo world it found no pose that the whole map did not, at twice the cost).
    wider = np.zeros(0, np.int64) if whole_map else _landmarks_by_probability(recognition)[:config.widen_landmarks]
    if len(wider) > len(ranked):
        points = np.concatenate([index.landmark_points[k] for k in wider])
        widened = _register(camera, index, features, keypoints, points, config, f"{len(wider)} landmarks")
        if widened.accepted:
            return widened
    if whole_map:
        widened = _register(camera, index, features, keypoints, np.arange(len(index)), config,
                            f"all {len(index)} points")
        if widened.accepted:
            return widened
    return outcome


def _register_top_landmarks(camera: Camera, index: MapPoints, features: Features, recognition: Recognition,
                            ranked: np.ndarray, config: LocalizerConfig) -> Outcome:
    used = recognition.keypoint_indices
    labelled = used[np.isin(recognition.labels, ranked)]
    # Too few keypoints carry the landmarks' labels (background is over-called on views
    # the map barely covers): let descriptors decide, the gate guards the pose.
    pooled = labelled if len(labelled) >= config.min_candidates else used
    ranked_points = np.concatenate([index.landmark_points[k] for k in ranked])
    search = f"top {len(ranked)} landmarks"
    attempts = [lambda: (pooled, ranked_points, match_points(index, features.descriptors[pooled], ranked_points,
                                                             config.match_ratio, map_side_ratio=False))]
    if config.landmark_matching == "per_landmark" and pooled is labelled:
        attempts.insert(0, lambda: _landmark_matches(index, features, recognition, ranked, config.match_ratio))
    for attempt in attempts:
        keypoints, points, matches = attempt()
        registration = register_matches(camera, index, features, keypoints, points, matches,
                                        config.ransac_max_error_px, polish_pose=not config.refine_pose)
        outcome = gate(registration, config.min_inliers, config.min_inlier_ratio)
        if outcome.accepted:
            if config.refine_pose:
                outcome = Outcome(refine(camera, index, features, outcome.registration, config), "")
            return outcome._replace(search=search)
    return outcome._replace(search=search)


def _landmarks_by_probability(recognition: Recognition) -> np.ndarray:
    """Every landmark, the one holding the most probability over the keypoints first."""
    if not len(recognition.probabilities):
        return np.zeros(0, np.int64)
    mass = recognition.probabilities[:, 1:].sum(axis=0)
    return (np.argsort(-mass, kind="stable") + 1).astype(np.int64)


def _register(camera: Camera, index: MapPoints, features: Features, keypoints: np.ndarray, points: np.ndarray,
              config: LocalizerConfig, search: str) -> Outcome:
    """Every keypoint in `keypoints` against `points`, the gate, the refinement."""
    matches = match_points(index, features.descriptors[keypoints], points, config.match_ratio, map_side_ratio=False)
    registration = register_matches(camera, index, features, keypoints, points, matches, config.ransac_max_error_px,
                                    polish_pose=not config.refine_pose)
    outcome = gate(registration, config.min_inliers, config.min_inlier_ratio)
    if outcome.accepted and config.refine_pose:
        outcome = Outcome(refine(camera, index, features, outcome.registration, config), "")
    return outcome._replace(search=search)


def register_all_points(camera: Camera, index: MapPoints, features: Features, config: LocalizerConfig) -> Outcome:
    """The exhaustive baseline's registration: every keypoint against every map point."""
    keypoints = np.arange(min(len(features), config.max_keypoints))
    return _register(camera, index, features, keypoints, np.arange(len(index)), config, f"all {len(index)} points")


def _landmark_matches(index: MapPoints, features: Features, recognition: Recognition, ranked: np.ndarray,
                      ratio: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each landmark's points against the keypoints recognition labelled with it, ->
    (keypoint indices, point indices, matches [K x 2] into those two)."""
    keypoints, points, matches = [], [], []
    offsets = np.zeros(2, np.int64)
    for landmark in ranked:
        labelled = recognition.keypoint_indices[recognition.labels == landmark]
        landmark_points = index.landmark_points[landmark]
        found = match_points(index, features.descriptors[labelled], landmark_points, ratio, map_side_ratio=False)
        keypoints.append(labelled)
        points.append(landmark_points)
        matches.append(found + offsets)
        offsets += (len(labelled), len(landmark_points))
    return np.concatenate(keypoints), np.concatenate(points), np.concatenate(matches)
