"""Landmarks: spatial clusters of well-observed 3D points.

In: point positions [P x 3] and track lengths [P]. Out: a landmark id per point,
1..K for points with track length >= `min_track_length`, 0 (background) for the rest.
KMeans on xyz gave more balanced clusters than PRAM's BIRCH (DESIGN.md §6).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans

logger = logging.getLogger(__name__)


@dataclass
class LandmarkConfig:
    num_landmarks: int | None = None  # None: chosen from the points and images
    # One landmark per this many well-triangulated points (the demo map's 17,796 points make
    # its 10 landmarks, the K its recognizer was measured with); the scene's floor area is
    # not used: it gave a 30-photo courtyard of 981 points 112 landmarks.
    points_per_landmark: int = 1800
    min_landmarks: int = 4
    max_landmarks: int = 512
    # What a landmark needs for the recognizer to learn it: the chosen K is capped so that
    # each has this many points on average and no more landmarks than mapping images.
    min_points_per_landmark: int = 100
    min_track_length: int = 3
    seed: int = 0


def choose_num_landmarks(num_points: int, config: LandmarkConfig, num_images: int | None = None) -> int:
    """K from the user, else one per `points_per_landmark` points (within [min_landmarks,
    max_landmarks]), capped by what the data can teach: `min_points_per_landmark` points
    each and at most one landmark per mapping image."""
    if config.num_landmarks is not None:
        return int(config.num_landmarks)
    k = int(np.clip(round(num_points / config.points_per_landmark), config.min_landmarks, config.max_landmarks))
    cap = num_points // max(config.min_points_per_landmark, 1)
    if num_images is not None:
        cap = min(cap, num_images)
    if k > cap:
        logger.info("%d landmarks by the point count, %d for %d points%s", k, max(cap, 1), num_points,
                    f" and {num_images} images" if num_images is not None else "")
    return max(1, min(k, cap))


def cluster_landmarks(
    xyz: np.ndarray, track_lengths: np.ndarray, config: LandmarkConfig, num_images: int | None = None,
) -> tuple[np.ndarray, int]:
    """(landmark id per point [P] int32 with 0 = background, K)."""
    eligible = np.flatnonzero(track_lengths >= config.min_track_length)
    labels = np.zeros(len(xyz), dtype=np.int32)
    if len(eligible) == 0:
        raise ValueError(f"no 3D point has a track of length >= {config.min_track_length}: too few matches to map")
    k = choose_num_landmarks(len(eligible), config, num_images)
    if k < 1:
        raise ValueError(f"number of landmarks must be >= 1, got {k}")
    k = min(k, len(eligible))
    kmeans = KMeans(n_clusters=k, n_init=3, random_state=config.seed).fit(xyz[eligible])
    # Number landmarks by position so that ids do not depend on KMeans' internal order.
    order = np.lexsort(np.round(kmeans.cluster_centers_, 3).T[::-1])
    rank = np.empty(k, dtype=np.int32)
    rank[order] = np.arange(1, k + 1, dtype=np.int32)
    labels[eligible] = rank[kmeans.labels_]
    sizes = np.bincount(labels[eligible], minlength=k + 1)[1:]
    logger.info("%d landmarks over %d points (track >= %d): %d to %d points each", k, len(eligible),
                config.min_track_length, sizes.min(), sizes.max())
    return labels, k
