"""Registration: 2D-3D matching against the map's points, PnP RANSAC, and a pure gate.

In: a frame's `Features`, the map's points (`MapPoints`: xyz, one descriptor each, their
landmarks and look-alike twins) and the camera. Out: a `Registration` (pose, covariance,
inliers) or None, and the gate's verdict on it. Nothing here keeps state between frames:
every function returns what it found and changes nothing, so the localizers decide what
a result means for their track.

Matching is mutual nearest neighbour with a ratio test, then a second ratio test against
each matched point's twin (the most similar point elsewhere), which repeated textures need.
`register_in_view` matches against the points a predicted pose sees: by descriptor (unbiased
by the prediction), then, if that fails the gate, each projected point against the best
keypoint near it (guided). `refine` registers an accepted pose once more that way.
"""

from __future__ import annotations

import functools
import io
import logging
from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np
import pycolmap
import torch
from scipy.spatial import cKDTree

from pram_ros.cache import cache_path, content_key, read_cached, write_cached
from pram_ros.features import Features, match_mutual_nn
from pram_ros.geometry import in_view, invert, pnp_covariance, pose_difference, project_points
from pram_ros.localization.result import LOST_VARIANCE, Reason, Result, State
from pram_ros.mapping.mapfile import PramMap

logger = logging.getLogger(__name__)

# A refinement round that moved the pose less than this (m, deg) ends the refinement: its
# projections would move by under a pixel, and the next round repeat its matches.
REFINE_SETTLED = (0.002, 0.05)


@dataclass(frozen=True)
class Camera:
    """A pinhole camera: the map's, or a query image's once prepared (frontend.InputCamera)."""

    K: np.ndarray
    width: int
    height: int
    colmap: pycolmap.Camera

    @classmethod
    def of_map(cls, pram_map: PramMap) -> "Camera":
        width, height = (int(v) for v in pram_map.camera_size[0])
        return cls.of_intrinsics(pram_map.K(0), width, height)

    @classmethod
    def of_intrinsics(cls, K: np.ndarray, width: int, height: int) -> "Camera":
        K = np.asarray(K, np.float64)
        # Keypoints and intrinsics share OpenCV's pixel convention, so no half-pixel shift is needed.
        colmap = pycolmap.Camera(model="PINHOLE", width=width, height=height,
                                 params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2]])
        return cls(K, width, height, colmap)

    def image_problem(self, image) -> str:
        """Why this image cannot be localized against the map ("" when it can)."""
        if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
            return "not an image array"
        if image.shape[0] != self.height or image.shape[1] != self.width:
            return f"image is {image.shape[1]}x{image.shape[0]}, the map's camera {self.width}x{self.height}"
        if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
            return f"image has {image.shape[2]} channels"
        return ""

    def mismatch(self, K: np.ndarray, width: int, height: int) -> str:
        """Why a camera (intrinsics, size) is not the map's ("" when it is)."""
        if (width, height) != (self.width, self.height):
            return f"the camera is {width}x{height}, the map's {self.width}x{self.height}"
        if not np.allclose(K, self.K, rtol=5e-3, atol=0.5):
            return (f"the camera (fx {K[0, 0]:.1f} fy {K[1, 1]:.1f} cx {K[0, 2]:.1f} cy {K[1, 2]:.1f}) is not the "
                    f"map's (fx {self.K[0, 0]:.1f} fy {self.K[1, 1]:.1f} cx {self.K[0, 2]:.1f} cy {self.K[1, 2]:.1f})")
        return ""


class MapPoints:
    """The map's points as registration reads them: xyz, descriptors, landmarks, twins.

    Its entries ("points" to every caller) are the map's points followed by their further
    appearances (a map of several sessions): an appearance is an entry of its own at its
    point's place, so matching takes whichever look fits the query. `point_of` maps entries
    to map points; matching never lets two looks of one point make a keypoint ambiguous."""

    def __init__(self, pram_map: PramMap, twin_min_distance_m: float):
        # The map's own arrays, not float32/float64 copies: the resident map stays small, and
        # only the points a frame matches against are widened (`descriptors`).
        self.xyz = pram_map.point_xyz
        self.descriptor = pram_map.point_descriptor
        self.point_landmark = pram_map.point_landmark
        self.point_of = None  # [entries] map point of each entry; None: the identity
        self.max_entries_per_point = 1
        extra = pram_map.appearance_point
        if len(extra):
            self.max_entries_per_point = 1 + int(np.bincount(extra).max())
            self.xyz = np.concatenate([self.xyz, self.xyz[extra]])
            self.descriptor = np.concatenate([self.descriptor, pram_map.appearance_descriptor])
            self.point_landmark = np.concatenate([self.point_landmark, self.point_landmark[extra]])
            self.point_of = np.concatenate([np.arange(pram_map.num_points, dtype=np.int32), extra])
        self.num_landmarks = pram_map.num_landmarks
        self.landmark_points = [np.flatnonzero(self.point_landmark == k).astype(np.int32)
                                for k in range(self.num_landmarks + 1)]
        self.twin = cached_descriptor_twins(self.descriptor, self.xyz, twin_min_distance_m)

    def __len__(self) -> int:
        return len(self.xyz)

    def descriptors(self, points: np.ndarray) -> np.ndarray:
        """float32 descriptors of these points (stored as float16)."""
        return self.descriptor[points].astype(np.float32)

    def landmarks_of(self, points: np.ndarray) -> np.ndarray:
        """Landmark ids of these (inlier) points, most points first."""
        counts = np.bincount(self.point_landmark[points], minlength=self.num_landmarks + 1)
        used = np.argsort(-counts, kind="stable")
        return used[counts[used] > 0]

    def working_bytes(self) -> int:
        """What this index holds beyond the map's own arrays."""
        copies = () if self.point_of is None else (self.xyz, self.descriptor, self.point_landmark, self.point_of)
        return sum(int(a.nbytes) for a in (self.twin, *self.landmark_points, *copies))


@dataclass
class Registration:
    cam_from_world: np.ndarray
    inlier_points: np.ndarray  # point indices of the inliers
    inliers_uv: np.ndarray  # their keypoints' pixels
    num_inliers: int
    num_candidates: int
    inliers_xyz: np.ndarray | None = None  # their points' xyz, for the covariance
    K: np.ndarray | None = None
    polished: bool = True  # refined by least squares on the inliers (see polish)

    @functools.cached_property
    def covariance(self) -> np.ndarray:
        """The pose's covariance (pycolmap's convention), computed when first asked: a frame
        registers several times (refinement rounds) and keeps one."""
        covariance = None if self.inliers_xyz is None or self.K is None else \
            pnp_covariance(self.cam_from_world, self.K, self.inliers_uv, self.inliers_xyz)
        return np.eye(6) * LOST_VARIANCE if covariance is None else covariance


class Outcome(NamedTuple):
    """A registration and the gate's verdict: `reason` is "" when it passed."""

    registration: Registration | None
    reason: str
    search: str = ""  # what the keypoints were matched against (relocalization reports it)
    code: Reason = Reason.GATE_FAILED  # the reason's code, when there is one

    @property
    def accepted(self) -> bool:
        return self.registration is not None and not self.reason

    def result(self, stamp_ns: int, state: State, landmark_ids: np.ndarray) -> Result:
        """The localized Result when accepted, else LOST with the reason."""
        registration = self.registration
        if registration is None:
            return Result(stamp_ns, State.LOST, message=self.reason, reason=self.code, search=self.search)
        if self.reason:
            return Result(stamp_ns, State.LOST, num_inliers=registration.num_inliers,
                          num_candidates=registration.num_candidates, message=self.reason, reason=self.code,
                          search=self.search)
        return Result(stamp_ns, state, registration.cam_from_world, registration.covariance, landmark_ids,
                      registration.num_inliers, registration.num_candidates, inliers_uv=registration.inliers_uv,
                      inlier_points=registration.inlier_points, search=self.search)


def gate(registration: Registration | None, min_inliers: int, min_inlier_ratio: float) -> Outcome:
    """Accept a registration with at least `min_inliers` inliers making up at least
    `min_inlier_ratio` of its candidates and a finite pose."""
    if registration is None:
        return Outcome(None, "no pose: too few matches")
    ratio = registration.num_inliers / max(registration.num_candidates, 1)
    if registration.num_inliers < min_inliers or ratio < min_inlier_ratio \
            or not np.all(np.isfinite(registration.cam_from_world)):
        return Outcome(registration, f"gate: {registration.num_inliers} inliers of {registration.num_candidates}")
    return Outcome(registration, "")


def estimate_pose(camera: Camera, keypoints_uv: np.ndarray, points: np.ndarray, points_xyz: np.ndarray,
                  max_error_px: float, polish_pose: bool = True) -> Registration | None:
    """PnP RANSAC (pycolmap) of keypoints [N x 2] against their points' xyz [N x 3]; `points`
    [N] are the points' indices, kept for the inliers. `polish_pose=False`: LO-RANSAC's pose,
    without the least-squares refinement (about two thirds of the cost), for a pose that
    is refined anyway (refine polishes what it returns)."""
    if len(points) < 4:
        return None
    options = pycolmap.AbsolutePoseEstimationOptions()
    options.ransac.max_error = max_error_px
    options.ransac.random_seed = 0  # the same frame gives the same pose
    uv, xyz = keypoints_uv.astype(np.float64), points_xyz.astype(np.float64)
    try:
        if polish_pose:
            estimate = pycolmap.estimate_and_refine_absolute_pose(uv, xyz, camera.colmap, options,
                                                                  pycolmap.AbsolutePoseRefinementOptions(), False)
        else:
            estimate = pycolmap.estimate_absolute_pose(uv, xyz, camera.colmap, options)
    except (RuntimeError, ValueError) as exc:  # degenerate configurations
        logger.debug("PnP failed: %s", exc)
        return None
    if estimate is None:
        return None
    cam_from_world = np.eye(4)
    cam_from_world[:3] = np.asarray(estimate["cam_from_world"].matrix())
    mask = np.asarray(estimate["inlier_mask"], bool)
    return Registration(cam_from_world, points[mask], keypoints_uv[mask], int(mask.sum()), len(points),
                        points_xyz[mask], camera.K, polish_pose)


def polish(camera: Camera, registration: Registration) -> Registration:
    """The pose refined by least squares on its inliers (what estimate_pose does when
    polishing); itself when already polished or when the refinement fails."""
    if registration.polished:
        return registration
    rigid = pycolmap.Rigid3d(registration.cam_from_world[:3])
    try:
        refined = pycolmap.refine_absolute_pose(
            rigid, registration.inliers_uv.astype(np.float64), registration.inliers_xyz.astype(np.float64),
            np.ones(registration.num_inliers, bool), camera.colmap, pycolmap.AbsolutePoseRefinementOptions())
    except (RuntimeError, ValueError) as exc:
        logger.debug("pose refinement failed: %s", exc)
        refined = None
    if refined is None:
        return registration
    cam_from_world = np.eye(4)
    cam_from_world[:3] = np.asarray(refined["cam_from_world"].matrix())
    return replace(registration, cam_from_world=cam_from_world, polished=True)


def register_matches(camera: Camera, index: MapPoints, features: Features, keypoints: np.ndarray,
                     points: np.ndarray, matches: np.ndarray, max_error_px: float,
                     polish_pose: bool = True) -> Registration | None:
    """PnP of matches [M x 2] (positions in `keypoints`, in `points`)."""
    matched = points[matches[:, 1]]
    return estimate_pose(camera, features.keypoints[keypoints[matches[:, 0]]], matched, index.xyz[matched],
                         max_error_px, polish_pose)


def match_points(index: MapPoints, descriptors: np.ndarray, points: np.ndarray, ratio: float,
                 map_side_ratio: bool = True) -> np.ndarray:
    """Query descriptors against these map points: mutual NN, ratio test, then the twin
    test. -> [M x 2] (row in `descriptors`, position in `points`). `map_side_ratio=False`
    tests only whether the keypoint is ambiguous among the points, not whether the point is
    among the keypoints (see relocalization.py)."""
    if index.point_of is None or len(np.unique(index.point_of[points])) == len(points):
        matches = match_mutual_nn(descriptors, index.descriptors(points), ratio=ratio, ratio_b=map_side_ratio)
    else:
        matches = _match_appearances(index, descriptors, points, ratio, map_side_ratio)
    return distinct(index, descriptors, points, matches, ratio)


def _match_appearances(index: MapPoints, descriptors: np.ndarray, points: np.ndarray, ratio: float,
                       map_side_ratio: bool) -> np.ndarray:
    """`match_points` where some points appear more than once (their looks in several
    sessions): mutual NN over the entries (with the entry's ratio test), and the keypoint's
    ratio test against the best entry of another point, not another look of the same one."""
    entries = index.descriptors(points)
    matches = match_mutual_nn(descriptors, entries, ratio=ratio, ratio_b=map_side_ratio, ratio_a=False)
    if not len(matches) or ratio is None:
        return matches
    # Unit rows (what extractors give): distance^2 = 2 - 2 score. Among an entry's best
    # `max_entries_per_point + 1` there is always one of another point.
    query = torch.from_numpy(np.ascontiguousarray(descriptors[matches[:, 0]], np.float32))
    owner = index.point_of[points]
    with torch.inference_mode():
        top, where = (query @ torch.from_numpy(entries).T).topk(min(index.max_entries_per_point + 1, len(entries)),
                                                                dim=1)
    top, where = top.numpy(), where.numpy()
    best = np.einsum("md,md->m", query.numpy(), entries[matches[:, 1]])
    other = owner[where] != owner[matches[:, 1]][:, None]
    second = np.where(other.any(axis=1), top[np.arange(len(top)), other.argmax(axis=1)], -np.inf)
    keep = _distance(best) < ratio * _distance(second)
    return matches[keep]


def distinct(index: MapPoints, descriptors: np.ndarray, points: np.ndarray, matches: np.ndarray,
             ratio: float) -> np.ndarray:
    """Drop matches whose map point has a look-alike elsewhere that the keypoint matches
    almost as well (a ratio test against the point's twin)."""
    if not len(matches):
        return matches
    query = descriptors[matches[:, 0]]
    matched = points[matches[:, 1]]
    best = np.linalg.norm(query - index.descriptors(matched), axis=1)
    twin = index.twin[matched]
    has_twin = twin >= 0
    twin_distance = np.full(len(matches), np.inf)
    twin_distance[has_twin] = np.linalg.norm(query[has_twin] - index.descriptors(twin[has_twin]), axis=1)
    return matches[best < ratio * twin_distance]


def _distance(score: np.ndarray) -> np.ndarray:
    """L2 distance of unit rows from their dot product (-inf, no such row: inf)."""
    return np.sqrt(np.maximum(2.0 - 2.0 * score, 0.0))


def points_in_view(index: MapPoints, camera: Camera, cam_from_world: np.ndarray,
                   slack_px: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The points a pose sees (within `slack_px` of the image) and their pixels."""
    uv, depth = project_points(index.xyz, cam_from_world, camera.K)
    points = np.flatnonzero(in_view(uv, depth, camera.width, camera.height, slack_px=slack_px))
    return points, uv[points]


def guided_matches(index: MapPoints, features: Features, points: np.ndarray, uv: np.ndarray, radius_px: float,
                   ratio: float) -> np.ndarray:
    """For each projected point, the best keypoint within the radius (ratio test against
    the second best there); each keypoint keeps only its best point. -> [M x 2]
    (keypoint index, position in `points`)."""
    if not len(points) or not len(features):
        return np.zeros((0, 2), np.int64)
    neighbours = 4
    distance, nearest = cKDTree(features.keypoints).query(uv, k=neighbours, distance_upper_bound=radius_px)
    valid = np.isfinite(distance)
    nearest = np.where(valid, nearest, 0)
    similarity = np.einsum("pkd,pd->pk", features.descriptors[nearest], index.descriptors(points))
    descriptor_distance = np.sqrt(np.maximum(2.0 - 2.0 * similarity, 0.0))
    descriptor_distance[~valid] = np.inf
    order = np.argsort(descriptor_distance, axis=1)
    best = np.take_along_axis(descriptor_distance, order[:, :1], 1)[:, 0]
    second = np.take_along_axis(descriptor_distance, order[:, 1:2], 1)[:, 0]
    keep = np.isfinite(best) & (best < ratio * second) & (best < 1.0)
    keypoint = np.take_along_axis(nearest, order[:, :1], 1)[:, 0]
    rows = np.flatnonzero(keep)
    # One point per keypoint: the closest in descriptor space.
    rows = rows[np.lexsort((best[rows], keypoint[rows]))]
    first = np.r_[True, keypoint[rows][1:] != keypoint[rows][:-1]] if len(rows) else np.zeros(0, bool)
    rows = rows[first]
    return np.stack([keypoint[rows], rows], axis=1).astype(np.int64)


def register_in_view(camera: Camera, index: MapPoints, features: Features, predicted: np.ndarray, config,
                     modes: tuple[str, ...] = ("descriptor", "guided"), slack: float = 0.25,
                     map_side_ratio: bool = True) -> Outcome:
    """The keypoints against the points a predicted pose sees, by each of `modes` in turn
    until one passes the tracking gate (`config`: a LocalizerConfig). `slack`: descriptor
    matching also takes points this share of the image size outside it (a predicted pose
    can be a frame's motion behind). `map_side_ratio`: see match_points."""
    outcome = Outcome(None, "no pose: too few matches")
    for mode in modes:
        if mode == "descriptor":
            # Unbiased by the prediction: the points it sees, matched by descriptor alone.
            points, _ = points_in_view(index, camera, predicted, slack_px=slack * max(camera.width, camera.height))
            keypoints = np.arange(min(len(features), config.max_keypoints))
            matches = match_points(index, features.descriptors[keypoints], points, config.match_ratio,
                                   map_side_ratio=map_side_ratio)
        else:
            points, uv = points_in_view(index, camera, predicted)
            keypoints = np.arange(len(features))
            matches = guided_matches(index, features, points, uv, config.track_radius_px, config.track_ratio)
        registration = register_matches(camera, index, features, keypoints, points, matches,
                                        config.track_ransac_max_error_px)
        outcome = gate(registration, config.min_track_inliers, config.min_inlier_ratio)
        if outcome.accepted:
            break
    return outcome


def register_tracked(camera: Camera, index: MapPoints, features: Features, predicted: np.ndarray,
                     config, own_pose: bool = False) -> Outcome:
    """A tracked frame: registered in the predicted pose's view, then refined when
    `refine_pose` (its first round skips descriptor matching, which was just done).
    `own_pose`: `predicted` is this frame's pose already (optical flow's): guided matching
    first (about 5 ms, where descriptor matching against the whole view takes 18-28), and
    when it passes, no refinement: a guided round from the frame's own pose is one, and more
    rounds cost the background refresh 14-42 ms of 50-95 (live at 30 Hz, latency p90 was
    52-68 ms in 4 of 6 runs against 2 of 6 with them, 2026-12-07). When it fails, descriptor
    matching and the refinement, as for a predicted pose."""
    modes = ("descriptor", "guided")
    if own_pose:
        guided = register_in_view(camera, index, features, predicted, config, modes=("guided",))
        if guided.accepted:
            return guided
        modes = ("descriptor",)  # guided matching just failed from this pose
    outcome = register_in_view(camera, index, features, predicted, config, modes=modes)
    if outcome.accepted and config.refine_pose:
        outcome = Outcome(refine(camera, index, features, outcome.registration, config, from_view_first=False), "")
    return outcome


def refine(camera: Camera, index: MapPoints, features: Features, accepted: Registration, config,
           from_view_first: bool = True) -> Registration:
    """An accepted pose registered again against every point it sees, matched near their
    projections (the pose is close by now): more inliers, over the whole image. Repeated
    while the inliers grow, up to `refine_rounds` times: a pose from a few landmarks can be
    centimetres off, and each round's projections land nearer the keypoints. The pose
    itself when that fails the tracking gate, polished (its registration may have left that
    to the refinement).

    from_view_first: the first round matches by descriptor against the points the pose sees
    (as tracking does), so a pose 10-30 cm off, whose projections miss their keypoints,
    still gathers the view's matches (on the demo's changed lighting: recognition-gated
    relocalization 0.45 -> 0.48 within 5 cm/5 deg). False where the pose came from that
    matching already. Its ratio test is the keypoint's side only, as relocalization's
    (relocalization.py): one matrix product less, and on the demo `pram` 0.815 against
    0.800, `pram-reloc` 0.730 against 0.735, real photos unchanged (2026-12-07)."""
    best = accepted
    for round_index in range(config.refine_rounds):
        modes = ("descriptor", "guided") if from_view_first and round_index == 0 else ("guided",)
        # Each round polished: the next round's guided matching starts from its pose (LO-RANSAC's
        # alone cost 0.05-0.07 of query_lighting recall at 5 cm, 2026-12-07).
        outcome = register_in_view(camera, index, features, best.cam_from_world, config, modes=modes, slack=0.0,
                                   map_side_ratio=False)
        if not outcome.accepted or (best is not accepted and outcome.registration.num_inliers <= best.num_inliers):
            break
        previous, best = best, outcome.registration
        if modes == ("guided",) and _settled(previous.cam_from_world, best.cam_from_world):
            break  # the next round would match near the same projections again
    return polish(camera, best)


def _settled(cam_from_world_a: np.ndarray, cam_from_world_b: np.ndarray) -> bool:
    """Two poses within REFINE_SETTLED of each other (camera centres and rotation)."""
    distance_m, angle_deg = pose_difference(invert(cam_from_world_a), invert(cam_from_world_b))
    return distance_m < REFINE_SETTLED[0] and angle_deg < REFINE_SETTLED[1]


TWINS_VERSION = 1  # bump when descriptor_twins changes what it returns


def cached_descriptor_twins(descriptors: np.ndarray, xyz: np.ndarray, min_distance_m: float) -> np.ndarray:
    """`descriptor_twins` as int32, from the cache folder (pram_ros/cache.py) when this map's
    points were seen before: computing them is O(points^2), a second for 16k points."""
    path = cache_path("twins", content_key(TWINS_VERSION, float(min_distance_m), descriptors, xyz), ".npy")
    cached = read_cached(path)
    if cached:
        try:
            twins = np.load(io.BytesIO(cached), allow_pickle=False)
            if twins.dtype == np.int32 and twins.shape == (len(xyz),) and \
                    (len(twins) == 0 or (twins.min() >= -1 and twins.max() < len(xyz))):
                return twins
        except ValueError:
            pass
        logger.debug("%s: not a twins array for this map; computing it again", path)
    twins = descriptor_twins(descriptors, xyz, min_distance_m).astype(np.int32)
    buffer = io.BytesIO()
    np.save(buffer, twins, allow_pickle=False)
    write_cached(path, buffer.getvalue())
    return twins


def descriptor_twins(descriptors: np.ndarray, xyz: np.ndarray, min_distance_m: float,
                     candidates: int = 32) -> np.ndarray:
    """For each point, the point at least `min_distance_m` away whose descriptor is the most
    similar (-1 when there is none): its look-alike under a repeated texture. Exhaustive,
    O(points^2) similarities; the distance is checked only for each point's `candidates` most
    similar points, and over all of them for the few points whose candidates are all near
    (on the demo map 2 of 16k; 2x faster than masking every pair)."""
    count = len(descriptors)
    chunk = max(16, min(2048, (1 << 25) // max(count, 1)))  # a [chunk x count] float32 matrix
    twins = np.full(count, -1, np.int64)
    if count < 2:
        return twins
    all_descriptors = torch.from_numpy(np.ascontiguousarray(descriptors, np.float32))
    xyz = np.ascontiguousarray(xyz, np.float64)
    unresolved = []
    with torch.inference_mode():
        for start in range(0, count, chunk):
            rows = np.arange(start, min(start + chunk, count))
            similar = (all_descriptors[rows] @ all_descriptors.T).topk(min(candidates, count), dim=1).indices.numpy()
            far = np.linalg.norm(xyz[similar] - xyz[rows, None], axis=2) >= min_distance_m
            found = far.any(axis=1)
            twins[rows[found]] = similar[found, far[found].argmax(axis=1)]
            unresolved.extend(rows[~found])
        all_xyz = torch.from_numpy(xyz)
        for start in range(0, len(unresolved), chunk):
            rows = np.array(unresolved[start:start + chunk])
            similarity = all_descriptors[rows] @ all_descriptors.T
            similarity.masked_fill_(torch.cdist(all_xyz[rows], all_xyz) < min_distance_m, -np.inf)
            best, nearest = similarity.max(dim=1)
            twins[rows] = torch.where(torch.isfinite(best), nearest, -1).numpy()
    return twins
