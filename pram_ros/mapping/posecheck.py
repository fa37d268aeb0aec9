"""Given poses checked against the images, and the scene's depth measured, before mapping.

In: an `ImageSet` with poses and a feature preset. Out: a `PoseCheck` (how many
image-verified matches between neighbouring images the poses explain, and the median
depth of what those images see), or a one-line `ValueError` naming the poses file and the
likely mistake. Only a few neighbouring pairs in capture order are extracted and matched
(a second or two), so a wrong pose file fails before the long feature extraction.

Why: triangulating with wrong poses runs to the end and writes a map of a handful of
points with exit 0. The commonest mistakes are cam_from_world given as world_from_cam
(inverted), and camera poses in ROS body axes (x forward, z up) instead of the optical
axes (z forward, y down) the map expects. The image pairs themselves say which fits: an
essential matrix from the matches alone, then the share of its inliers that each reading
of the poses explains.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from pram_ros.features import Features, create_extractor, match_mutual_nn
from pram_ros.geometry import invert
from pram_ros.io.imageset import ImageSet

logger = logging.getLogger(__name__)

CHECK_PAIRS = 6  # neighbouring pairs in capture order, spread over the sequence
AGREE_PX = 4.0  # Sampson distance within which a match fits a pose pair (looser than mapping's 2 px)
MIN_VERIFIED = 30  # image-verified matches for a pair to count
# body_from_optical: ROS optical frame (z forward, x right, y down) in REP-103 body axes.
BODY_FROM_OPTICAL = np.array([[0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 0, 1]], float)


@dataclass
class PoseCheck:
    pairs: int  # neighbouring pairs with enough image-verified matches
    verified_matches: int
    agreement: dict[str, float]  # reading of the poses -> share of verified matches it explains
    scene_depth_m: float | None  # median depth of the triangulated matches, in the poses' units

    def describe(self) -> str:
        shares = ", ".join(f"{name} {share:.0%}" for name, share in self.agreement.items())
        depth = "unknown" if self.scene_depth_m is None else f"{self.scene_depth_m:.2f} m"
        return (f"pose check: {self.verified_matches} matches in {self.pairs} neighbouring pairs fit the poses "
                f"({shares}); median scene depth {depth}")


def readings(world_from_cam: np.ndarray) -> dict[str, np.ndarray]:
    """The poses as given, and as the two commonest mistakes would mean them."""
    return {
        "as given": world_from_cam,
        "inverted": np.array([invert(pose) for pose in world_from_cam]),
        "body axes": world_from_cam @ BODY_FROM_OPTICAL,
    }


def check_pairs(num_images: int) -> list[tuple[int, int]]:
    """Up to CHECK_PAIRS pairs (i, i + 1), spread evenly over the capture order."""
    if num_images < 2:
        return []
    starts = np.unique(np.linspace(0, num_images - 2, min(CHECK_PAIRS, num_images - 1)).round().astype(int))
    return [(int(i), int(i) + 1) for i in starts]


def check_poses(images: ImageSet, preset: str, world_from_cam: np.ndarray | None = None,
                source: str | None = None) -> PoseCheck:
    """Extract and match a few neighbouring pairs; refuse poses that the images contradict.
    The poses are the image set's, or `world_from_cam` (e.g. odometry; NaN rows skipped)
    named by `source` in messages."""
    world_from_cam = images.world_from_cam if world_from_cam is None else world_from_cam
    if world_from_cam is None:
        raise ValueError("check_poses needs poses")
    known = np.flatnonzero(np.isfinite(world_from_cam[:, 0, 0]))
    pairs = [(int(known[i]), int(known[j])) for i, j in check_pairs(len(known))]
    wanted = {i for pair in pairs for i in pair}
    extractor = create_extractor(preset)
    features = {index: extractor.extract(rgb) for index, rgb in images.frames() if index in wanted}
    return _check(images.Ks, world_from_cam, pairs, features, source or images.source.get("poses") or "the poses")


def _check(Ks: np.ndarray, world_from_cam: np.ndarray, pairs: list[tuple[int, int]], features: dict[int, Features],
           source: str) -> PoseCheck:
    hypotheses = readings(world_from_cam)
    agree = dict.fromkeys(hypotheses, 0)
    usable, verified_total, depths = 0, 0, []
    for i, j in pairs:
        points_i, points_j = _verified_matches(features[i], features[j], Ks[i], Ks[j])
        if len(points_i) < MIN_VERIFIED:
            continue
        usable += 1
        verified_total += len(points_i)
        for name, world_from_cam in hypotheses.items():
            fits = _fits(points_i, points_j, Ks[i], Ks[j], invert(world_from_cam[i]), invert(world_from_cam[j]))
            agree[name] += int(fits.sum())
            if name == "as given" and fits.sum() >= MIN_VERIFIED:
                depths.append(_depths(points_i[fits], points_j[fits], Ks[i], Ks[j], invert(world_from_cam[i]),
                                      invert(world_from_cam[j])))
    share = {name: count / verified_total if verified_total else 0.0 for name, count in agree.items()}
    depth = None
    if depths and len(np.concatenate(depths)) >= MIN_VERIFIED:
        depth = float(np.median(np.concatenate(depths)))
    check = PoseCheck(usable, verified_total, share, depth)
    _refuse_wrong_poses(check, source)
    return check


def _refuse_wrong_poses(check: PoseCheck, source: str) -> None:
    if check.pairs == 0:
        logger.warning("pose check: no neighbouring images share %d matches; the poses were not checked",
                       MIN_VERIFIED)
        return
    given = check.agreement["as given"]
    name, best = max(((n, s) for n, s in check.agreement.items() if n != "as given"), key=lambda item: item[1])
    if best >= 0.5 and best > 2.0 * given:
        cause = {
            "inverted": "they look inverted: give world_from_camera (the camera's pose in the world), not "
                        "cam_from_world",
            "body axes": "they look like poses of a body frame (x forward, z up): give the camera's optical "
                         "frame (z forward, y down), e.g. through the base_link->camera transform",
        }[name]
        raise ValueError(f"{source}: {cause} (neighbouring images: {given:.0%} of {check.verified_matches} "
                         f"image-verified matches fit the poses as given, {best:.0%} fit them read as {name})")
    if given < 0.25:
        raise ValueError(f"{source}: the poses do not fit the images ({given:.0%} of {check.verified_matches} "
                         "image-verified matches between neighbouring images): wrong order, wrong frames, or "
                         "another camera's calibration?")


def _verified_matches(a: Features, b: Features, K_a: np.ndarray, K_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Matches between two images that an essential matrix from the matches alone explains."""
    matches = match_mutual_nn(a.descriptors, b.descriptors, ratio=0.8)
    if len(matches) < MIN_VERIFIED:
        return np.zeros((0, 2)), np.zeros((0, 2))
    points_a = a.keypoints[matches[:, 0]].astype(np.float64)
    points_b = b.keypoints[matches[:, 1]].astype(np.float64)
    # In normalized coordinates, so that the two images may have different cameras.
    normalized_a = cv2.undistortPoints(points_a[:, None], K_a, None)[:, 0]
    normalized_b = cv2.undistortPoints(points_b[:, None], K_b, None)[:, 0]
    focal = float(np.sqrt(K_a[0, 0] * K_b[0, 0]))
    _, inliers = cv2.findEssentialMat(normalized_a, normalized_b, np.eye(3), method=cv2.RANSAC, prob=0.999,
                                      threshold=1.0 / focal)
    if inliers is None:
        return np.zeros((0, 2)), np.zeros((0, 2))
    keep = inliers.ravel().astype(bool)
    return points_a[keep], points_b[keep]


def _fits(points_a: np.ndarray, points_b: np.ndarray, K_a: np.ndarray, K_b: np.ndarray, cam_a_from_world: np.ndarray,
          cam_b_from_world: np.ndarray) -> np.ndarray:
    """Which matches lie within AGREE_PX of the epipolar lines these two poses imply. A pair
    whose poses share a centre has no epipolar geometry: nothing fits (no evidence)."""
    from pram_ros.mapping.sfm import fundamental_from_poses, sampson_error_px2

    b_from_a = cam_b_from_world @ invert(cam_a_from_world)
    if np.linalg.norm(b_from_a[:3, 3]) < 1e-9:
        return np.zeros(len(points_a), bool)
    F = fundamental_from_poses(K_a, K_b, cam_a_from_world, cam_b_from_world)
    F = F / np.linalg.norm(F)
    return sampson_error_px2(points_a, points_b, F) < AGREE_PX**2


def _depths(points_a: np.ndarray, points_b: np.ndarray, K_a: np.ndarray, K_b: np.ndarray, cam_a_from_world: np.ndarray,
            cam_b_from_world: np.ndarray) -> np.ndarray:
    """Depths in camera a of the matches triangulated with the poses (positive ones only)."""
    projection_a = K_a @ cam_a_from_world[:3]
    projection_b = K_b @ cam_b_from_world[:3]
    homogeneous = cv2.triangulatePoints(projection_a, projection_b, points_a.T, points_b.T)
    xyz = (homogeneous[:3] / homogeneous[3]).T
    depth = (xyz @ cam_a_from_world[:3, :3].T + cam_a_from_world[:3, 3])[:, 2]
    depth_b = (xyz @ cam_b_from_world[:3, :3].T + cam_b_from_world[:3, 3])[:, 2]
    return depth[(depth > 0) & (depth_b > 0) & np.isfinite(depth)]
