"""Map compression: one descriptor per point, a few reference views per landmark,
and no redundant points.

In: `Tracks` (points and their observations), the database images' `Features` and
the landmark id per point. Out:
- `medoid_descriptors`: each point's most central track descriptor, float16;
- `session_looks`: in a map of several sessions, a point's further looks (its medoid in
  another session, where far from the kept ones);
- `select_vrfs`: per landmark, database images chosen by greedy set cover of its
  points (PRAM's virtual reference frames);
- `triangulation_angles_deg`: the widest angle between a point's viewing rays; points
  below `min_tri_angle_deg` are poorly constrained in depth and are not kept;
- `redundant_points`: a point is dropped when, in every VRF that observes it, an
  already kept point of its landmark lies within `drop_radius_px`. Points are visited
  best first (long tracks, low error), so the kept ones are the reliable ones.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from pram_ros.features import Features
from pram_ros.mapping.sfm import Tracks

logger = logging.getLogger(__name__)


@dataclass
class CompressionConfig:
    max_vrfs_per_landmark: int = 8
    vrf_coverage: float = 0.9  # stop adding VRFs once this share of the landmark's points is seen
    drop_radius_px: float = 6.0
    # XFeat keypoints are good to about half a pixel: at 2-3 m, 6 degrees of parallax
    # keeps depth error near 1 cm (measured on the demo world).
    min_tri_angle_deg: float = 6.0
    # A map of several sessions keeps a point's look in another session (the medoid of its
    # observations there) when it is this far (L2, unit descriptors) from every look kept,
    # up to `max_looks_per_point` looks in all.
    look_min_distance: float = 0.4
    max_looks_per_point: int = 3


def medoid_descriptors(tracks: Tracks, features: list[Features]) -> np.ndarray:
    """[P x D] float16: per point, the track descriptor with the least total L2 distance
    to the others (grouped by track length, so each group is one batched computation)."""
    observed = _observed_descriptors(tracks, features)
    medoids = np.empty((len(tracks), observed.shape[1]), dtype=np.float16)
    lengths = tracks.lengths
    for length in np.unique(lengths):
        points = np.flatnonzero(lengths == length)
        rows = tracks.offsets[points][:, None] + np.arange(length)
        group = observed[rows]  # [n x length x D]
        gram = np.einsum("nid,njd->nij", group, group)
        squared = np.einsum("nid,nid->ni", group, group)
        distance = np.sqrt(np.maximum(squared[:, :, None] + squared[:, None, :] - 2 * gram, 0.0))
        best = distance.sum(axis=2).argmin(axis=1)
        medoids[points] = group[np.arange(len(points)), best].astype(np.float16)
    return medoids


def _observed_descriptors(tracks: Tracks, features: list[Features]) -> np.ndarray:
    """[O x D] float32: the descriptor of each observation of the tracks, in track order."""
    observed = np.zeros((len(tracks.obs_image), features[0].descriptors.shape[1]), dtype=np.float32)
    for image in np.unique(tracks.obs_image):
        rows = np.flatnonzero(tracks.obs_image == image)
        observed[rows] = features[image].descriptors[tracks.obs_keypoint[rows]]
    return observed


def session_looks(tracks: Tracks, features: list[Features], image_session: np.ndarray, medoids: np.ndarray,
                  points: np.ndarray, config: CompressionConfig) -> tuple[np.ndarray, np.ndarray]:
    """Further looks of points seen in several sessions: per point of `points` (in order),
    the medoid of its observations in each session, kept when far from the looks kept so far.
    -> (position in `points` [A] int32, descriptor [A x D] float16)."""
    owners, looks, shared = [], [], 0
    several = image_session.max(initial=0) > 0
    observed = _observed_descriptors(tracks, features) if several else None
    for position, point in enumerate(points if several else ()):
        rows = np.arange(tracks.offsets[point], tracks.offsets[point + 1])
        sessions = image_session[tracks.obs_image[rows]]
        if sessions.min() == sessions.max():
            continue
        shared += 1
        kept = [medoids[point].astype(np.float32)]
        for session in np.unique(sessions):
            if len(kept) >= config.max_looks_per_point:
                break
            own = observed[rows[sessions == session]]
            look = own[np.linalg.norm(own[:, None] - own[None], axis=2).sum(axis=1).argmin()]
            if min(np.linalg.norm(look - other) for other in kept) >= config.look_min_distance:
                kept.append(look)
                owners.append(position)
                looks.append(look)
    if several:
        logger.info("sessions: %d of %d points seen in more than one; %d further looks kept", shared, len(points),
                    len(looks))
    dim = medoids.shape[1]
    return (np.asarray(owners, np.int32),
            np.asarray(looks, np.float16).reshape(-1, dim))


def triangulation_angles_deg(tracks: Tracks, camera_centres: np.ndarray) -> np.ndarray:
    """[P]: per point, the largest angle (degrees) between the rays to its observing cameras."""
    angles = np.zeros(len(tracks))
    lengths = tracks.lengths
    for length in np.unique(lengths):
        points = np.flatnonzero(lengths == length)
        rows = tracks.offsets[points][:, None] + np.arange(length)
        rays = camera_centres[tracks.obs_image[rows]] - tracks.xyz[points][:, None]
        rays /= np.maximum(np.linalg.norm(rays, axis=2, keepdims=True), 1e-12)
        cosines = np.einsum("nid,njd->nij", rays, rays).reshape(len(points), -1).min(axis=1)
        angles[points] = np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0)))
    return angles


def select_vrfs(tracks: Tracks, labels: np.ndarray, num_landmarks: int, config: CompressionConfig) -> list[np.ndarray]:
    """Per landmark id 1..K (list index k-1): database image indices chosen greedily to
    cover its points until `vrf_coverage` or `max_vrfs_per_landmark` is reached."""
    point_of_obs = np.repeat(np.arange(len(tracks)), tracks.lengths)
    vrfs = []
    for landmark in range(1, num_landmarks + 1):
        in_landmark = labels[point_of_obs] == landmark
        obs_points, obs_images = point_of_obs[in_landmark], tracks.obs_image[in_landmark]
        num_points = len(np.unique(obs_points))
        covered: set[int] = set()
        chosen: list[int] = []
        by_image = {image: set(obs_points[obs_images == image].tolist()) for image in np.unique(obs_images)}
        while by_image and len(chosen) < config.max_vrfs_per_landmark:
            if len(covered) >= config.vrf_coverage * num_points:
                break
            image, seen = max(by_image.items(), key=lambda item: (len(item[1] - covered), -item[0]))
            if not seen - covered:
                break
            chosen.append(int(image))
            covered |= seen
            del by_image[image]
        vrfs.append(np.array(sorted(chosen), dtype=np.int32))
    return vrfs


def _near_kept(occupancy: dict, landmark: int, image: int, xy: np.ndarray, radius: float) -> bool:
    """Whether a kept point of `landmark` lies within `radius` of xy in `image`."""
    cx, cy = int(xy[0] // radius), int(xy[1] // radius)
    return any(
        (other[0] - xy[0]) ** 2 + (other[1] - xy[1]) ** 2 < radius * radius
        for dx in (-1, 0, 1)
        for dy in (-1, 0, 1)
        for other in occupancy.get((landmark, image, cx + dx, cy + dy), ())
    )


def redundant_points(
    tracks: Tracks, labels: np.ndarray, vrfs: list[np.ndarray], features: list[Features], config: CompressionConfig
) -> np.ndarray:
    """Boolean [P]: points to drop (see the module docstring). Background points
    (label 0) are not judged here."""
    radius = config.drop_radius_px
    order = np.lexsort((tracks.error_px, -tracks.lengths))
    # occupancy[(landmark, image, cell_x, cell_y)] -> kept keypoint positions in that cell
    occupancy: dict[tuple[int, int, int, int], list[np.ndarray]] = {}
    drop = np.zeros(len(tracks), dtype=bool)
    vrf_sets = [set(v.tolist()) for v in vrfs]
    for point in order:
        landmark = labels[point]
        if landmark == 0:
            continue
        start, end = tracks.offsets[point], tracks.offsets[point + 1]
        in_vrfs = [(image, features[image].keypoints[keypoint])
                   for image, keypoint in zip(tracks.obs_image[start:end], tracks.obs_keypoint[start:end])
                   if image in vrf_sets[landmark - 1]]
        if not in_vrfs:
            continue  # seen by no VRF: it covers views the VRFs miss
        if all(_near_kept(occupancy, landmark, image, xy, radius) for image, xy in in_vrfs):
            drop[point] = True
            continue
        for image, xy in in_vrfs:
            occupancy.setdefault((landmark, image, int(xy[0] // radius), int(xy[1] // radius)), []).append(xy)
    logger.info("dropped %d of %d landmark points as redundant within %.1f px in their VRFs",
                drop.sum(), (labels > 0).sum(), radius)
    return drop
