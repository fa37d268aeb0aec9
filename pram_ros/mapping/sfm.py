"""Structure from motion through pycolmap, on our own features.

In: database images (names, one pinhole camera), their `Features`, and optionally
their poses (world_from_cam, OpenCV axes). Out: an `SfmResult` holding a
pycolmap.Reconstruction (cameras, images, 3D points, tracks) in the poses' frame.

- With poses: covisible pairs are chosen from the poses, matches are checked against
  the known epipolar geometry, and pycolmap triangulates with the poses held fixed.
  The result is metric, in the poses' frame.
- Without poses: capture-order (or all) pairs, pycolmap's geometric verification, then
  incremental SfM, or global SfM (GLOMAP, in pycolmap); the result is up to scale unless
  aligned (`align_to_positions`). Global SfM (intrinsics held fixed) suits photo
  collections: every photo of Strecha entry at 1.5 cm median (incremental 2.5 cm) and of
  Sacré-Cœur (incremental: 6 of 10 with XFeat). Incremental stays the default: on walks
  that mostly turn (the demo's rendered ones) global positioning misplaces many frames
  (a 40-frame orbit: median 3.2 m off; docs/benchmarks.md).

Our features use the OpenCV pixel convention (centre of the top-left pixel at (0, 0));
COLMAP puts it at (0.5, 0.5): `COLMAP_PIXEL_OFFSET` (io/colmap.py) converts.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pycolmap
from pram_ros.progress import progress

from pram_ros.features import Features, match_mutual_nn
from pram_ros.geometry import invert
from pram_ros.io.colmap import COLMAP_PIXEL_OFFSET
from pram_ros.mapping.sfm_config import SfmConfig

logger = logging.getLogger(__name__)


@dataclass
class SfmResult:
    reconstruction: pycolmap.Reconstruction
    image_ids: list[int]  # COLMAP image id of each input image (same order as the inputs)
    timings_s: dict[str, float] = field(default_factory=dict)

    def registered(self) -> np.ndarray:
        """Boolean [N]: which input images have a pose in the reconstruction."""
        images = self.reconstruction.images
        return np.array([i in images and images[i].has_pose for i in self.image_ids])


def colmap_camera(K: np.ndarray, width: int, height: int, camera_id: int = 1) -> pycolmap.Camera:
    camera = pycolmap.Camera(
        model="PINHOLE",
        width=int(width),
        height=int(height),
        params=[K[0, 0], K[1, 1], K[0, 2] + COLMAP_PIXEL_OFFSET, K[1, 2] + COLMAP_PIXEL_OFFSET],
        camera_id=camera_id,
    )
    # The intrinsics are calibrated: without this flag COLMAP re-estimates the focal length.
    camera.has_prior_focal_length = True
    return camera


def rigid_from_matrix(a_from_b: np.ndarray) -> pycolmap.Rigid3d:
    return pycolmap.Rigid3d(pycolmap.Rotation3d(a_from_b[:3, :3]), a_from_b[:3, 3])


def covisible_pairs(world_from_cam: np.ndarray, config: SfmConfig, min_index_gap: int = 1) -> np.ndarray:
    """[M x 2] image index pairs (i < j) whose views likely overlap, from poses alone.

    Two cameras are partners when their optical axes are within `pair_max_angle_deg`
    and the points they look at (`pair_lookat_m` ahead) are within `pair_radius_m`; each
    image keeps its `pair_neighbors` best partners, at least `min_index_gap` apart in
    capture order (odometry pairs skip what the capture-order pairs hold: loops).
    """
    if config.pair_lookat_m is None:
        raise ValueError("SfmConfig.pair_lookat_m: not set (build_map measures it from the images)")
    radius_m = config.pair_radius_m if config.pair_radius_m is not None else 2.0 * config.pair_lookat_m
    centres = world_from_cam[:, :3, 3]
    axes = world_from_cam[:, :3, 2]
    lookat = centres + config.pair_lookat_m * axes
    distance = np.linalg.norm(lookat[:, None] - lookat[None], axis=-1)
    cos_angle = np.clip(axes @ axes.T, -1.0, 1.0)
    distance[cos_angle < np.cos(np.deg2rad(config.pair_max_angle_deg))] = np.inf
    distance[distance > radius_m] = np.inf
    gap = np.abs(np.arange(len(distance))[:, None] - np.arange(len(distance))[None])
    distance[gap < max(min_index_gap, 1)] = np.inf
    pairs = set()
    k = min(config.pair_neighbors, len(centres) - 1)
    if k <= 0:
        return np.zeros((0, 2), dtype=np.int64)
    nearest = np.argsort(distance, axis=1)[:, :k]
    for i, row in enumerate(nearest):
        for j in row:
            if np.isfinite(distance[i, j]):
                pairs.add((min(i, j), max(i, j)))
    return np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)


def unposed_pairs(num_images: int, config: SfmConfig) -> np.ndarray:
    """Pairs without poses. "sequential" (a video or a walk): each image with the next
    `sequential_window` in capture order, so look-alike places seen at other times are
    never matched (exact repeats, like a brick wall in two rooms, fool SfM otherwise).
    "exhaustive" (an unordered photo collection): all pairs."""
    if config.unposed_pairing == "exhaustive":
        i, j = np.triu_indices(num_images, k=1)
        return np.stack([i, j], axis=1)
    if config.unposed_pairing != "sequential":
        raise ValueError(f"SfmConfig.unposed_pairing: expected 'sequential' or 'exhaustive', got {config.unposed_pairing!r}")
    pairs = [(i, j) for i in range(num_images) for j in range(i + 1, min(i + 1 + config.sequential_window, num_images))]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def sampson_error_px2(points_a: np.ndarray, points_b: np.ndarray, F: np.ndarray) -> np.ndarray:
    """Squared Sampson distance (px^2) of correspondences under fundamental matrix F (b^T F a = 0)."""
    homogeneous_a = np.hstack([points_a, np.ones((len(points_a), 1))])
    homogeneous_b = np.hstack([points_b, np.ones((len(points_b), 1))])
    Fa = homogeneous_a @ F.T
    Ftb = homogeneous_b @ F
    numerator = np.sum(homogeneous_b * Fa, axis=1) ** 2
    denominator = Fa[:, 0] ** 2 + Fa[:, 1] ** 2 + Ftb[:, 0] ** 2 + Ftb[:, 1] ** 2
    return numerator / np.maximum(denominator, 1e-12)


def fundamental_from_poses(K_a: np.ndarray, K_b: np.ndarray, cam_a_from_world: np.ndarray,
                           cam_b_from_world: np.ndarray) -> np.ndarray:
    b_from_a = cam_b_from_world @ invert(cam_a_from_world)
    t = b_from_a[:3, 3]
    t_cross = np.array([[0, -t[2], t[1]], [t[2], 0, -t[0]], [-t[1], t[0], 0]])
    essential = t_cross @ b_from_a[:3, :3]
    return np.linalg.inv(K_b).T @ essential @ np.linalg.inv(K_a)


def _open_database(path: Path, cameras: list[pycolmap.Camera], camera_of_image: list[int], names: list[str],
                   world_from_cam: np.ndarray | None) -> tuple[pycolmap.Database, pycolmap.Reconstruction, list[int]]:
    """A COLMAP database with the cameras, trivial rigs/frames and the images; plus the
    matching reconstruction (posed frames where poses are known)."""
    reconstruction = pycolmap.Reconstruction()
    for camera in cameras:
        reconstruction.add_camera_with_trivial_rig(camera)
    image_ids = []
    for index, name in enumerate(names):
        camera_id = cameras[camera_of_image[index]].camera_id
        image = pycolmap.Image(name=name, camera_id=camera_id, image_id=index + 1)
        if world_from_cam is None:
            reconstruction.add_image_with_trivial_frame(image)
        else:
            reconstruction.add_image_with_trivial_frame(image, rigid_from_matrix(invert(world_from_cam[index])))
        image_ids.append(index + 1)
    database = pycolmap.Database.open(str(path))
    for value in reconstruction.cameras.values():
        database.write_camera(value, use_camera_id=True)
    for value in reconstruction.rigs.values():
        database.write_rig(value, use_rig_id=True)
    for value in reconstruction.frames.values():
        database.write_frame(value, use_frame_id=True)
    for value in reconstruction.images.values():
        database.write_image(value, use_image_id=True)
    return database, reconstruction, image_ids


@contextmanager
def _colmap_log_level(level):
    """COLMAP (glog) messages below `level` are dropped inside the block."""
    previous = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = int(level)
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = previous


def _pipeline_options(config: SfmConfig, posed: bool, fixed_intrinsics: bool = True) -> pycolmap.IncrementalPipelineOptions:
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = config.num_threads
    options.random_seed = config.seed
    options.extract_colors = False
    max_error = config.max_reproj_error_px if posed else config.unposed_max_reproj_error_px
    min_angle = config.min_tri_angle_deg if posed else config.unposed_min_tri_angle_deg
    options.mapper.filter_max_reproj_error = max_error
    options.mapper.filter_min_tri_angle = min_angle
    options.triangulation.min_angle = min_angle
    if fixed_intrinsics:
        options.mapper.abs_pose_refine_focal_length = False
        options.mapper.abs_pose_refine_extra_params = False
        options.ba_refine_focal_length = False
        options.ba_refine_principal_point = False
        options.ba_refine_extra_params = False
    return options


def _global_options(config: SfmConfig) -> pycolmap.GlobalPipelineOptions:
    """GLOMAP with the intrinsics held fixed (as the incremental path holds them), on the CPU."""
    options = pycolmap.GlobalPipelineOptions()
    options.num_threads = config.num_threads
    options.random_seed = config.seed
    options.min_num_matches = config.min_pair_matches
    mapper = options.mapper
    mapper.global_positioning.use_gpu = False
    mapper.bundle_adjustment.ceres.use_gpu = False
    mapper.bundle_adjustment.refine_focal_length = False
    mapper.bundle_adjustment.refine_principal_point = False
    mapper.bundle_adjustment.refine_extra_params = False
    return options


def reconstruct(
    names: list[str],
    features: list[Features],
    K: np.ndarray,
    width: int | np.ndarray,
    height: int | np.ndarray,
    work_dir: Path,
    world_from_cam: np.ndarray | None = None,
    config: SfmConfig | None = None,
    odometry_pairs: np.ndarray | None = None,
) -> SfmResult:
    """Match and reconstruct (see the module docstring). `work_dir` receives the
    COLMAP database and model; it must exist and be empty of a previous database.

    One camera for all images (K [3 x 3], width and height ints), or one per image
    (K [N x 3 x 3], widths and heights [N]), as in a photo collection. Without poses,
    `odometry_pairs` [M x 2] (from the odometry's covisibility) join the capture-order ones."""
    config = config or SfmConfig()
    work_dir = Path(work_dir)
    if len(names) != len(features):
        raise ValueError(f"{len(names)} image names but {len(features)} feature sets")
    if world_from_cam is not None and len(world_from_cam) != len(names):
        raise ValueError(f"{len(names)} images but {len(world_from_cam)} poses")
    if len(names) < 2:
        raise ValueError(f"mapping needs at least 2 images, got {len(names)}")
    timings: dict[str, float] = {}
    pycolmap.set_random_seed(config.seed)

    start = time.perf_counter()
    pairs = covisible_pairs(world_from_cam, config) if world_from_cam is not None else unposed_pairs(len(names), config)
    if world_from_cam is None and odometry_pairs is not None and len(odometry_pairs):
        # Pairs near in space by odometry, however far apart in time: loops close, and
        # look-alikes elsewhere are never paired.
        pairs = np.unique(np.concatenate([pairs, np.sort(odometry_pairs, axis=1)]), axis=0)
    shared_camera = np.ndim(K) == 2
    Ks = np.broadcast_to(np.asarray(K, float), (len(names), 3, 3))
    widths = np.broadcast_to(np.asarray(width), (len(names),))
    heights = np.broadcast_to(np.asarray(height), (len(names),))
    num_cameras = 1 if shared_camera else len(names)
    cameras = [colmap_camera(Ks[i], int(widths[i]), int(heights[i]), camera_id=i + 1) for i in range(num_cameras)]
    camera_of_image = [0] * len(names) if shared_camera else list(range(len(names)))
    database_path = work_dir / "database.db"
    if database_path.exists():
        raise FileExistsError(f"{database_path} exists: use an empty work folder")
    database, reconstruction, image_ids = _open_database(database_path, cameras, camera_of_image, names, world_from_cam)
    for image_id, feature in zip(image_ids, features):
        database.write_keypoints(image_id, (feature.keypoints + COLMAP_PIXEL_OFFSET).astype(np.float32))
    cam_from_world = None if world_from_cam is None else np.array([invert(p) for p in world_from_cam])

    kept_pairs = []
    for i, j in progress(pairs, desc="matching", unit="pair", leave=False):
        ratio = config.match_ratio if cam_from_world is not None else config.unposed_match_ratio
        matches = match_mutual_nn(features[i].descriptors, features[j].descriptors, ratio=ratio)
        if cam_from_world is not None and len(matches):
            F = fundamental_from_poses(Ks[i], Ks[j], cam_from_world[i], cam_from_world[j])
            error = sampson_error_px2(features[i].keypoints[matches[:, 0]], features[j].keypoints[matches[:, 1]], F)
            matches = matches[error < config.epipolar_max_px**2]
        if len(matches) < config.min_pair_matches:
            continue
        matches = matches.astype(np.uint32)
        database.write_matches(image_ids[i], image_ids[j], matches)
        if cam_from_world is not None:
            # Poses are known: the epipolar check above is the geometric verification.
            geometry = pycolmap.TwoViewGeometry()
            geometry.config = pycolmap.TwoViewGeometryConfiguration.CALIBRATED
            geometry.inlier_matches = matches
            database.write_two_view_geometry(image_ids[i], image_ids[j], geometry)
        kept_pairs.append((i, j))
    database.close()
    timings["matching"] = time.perf_counter() - start
    logger.info("matched %d of %d pairs in %.1f s", len(kept_pairs), len(pairs), timings["matching"])
    if cam_from_world is not None and not kept_pairs:
        raise ValueError(f"no image pair shares {config.min_pair_matches} matches that fit the poses ({len(pairs)} "
                         f"pairs tried, cameras assumed to look {config.pair_lookat_m:.2f} m ahead): set "
                         "--pair-lookat-m / --pair-radius-m to the scene's size")

    start = time.perf_counter()
    model_dir = work_dir / "model"
    model_dir.mkdir(exist_ok=True)
    if cam_from_world is not None:
        # COLMAP's point triangulator ends by reading every image for point colours; the
        # images are not in work_dir and the colours are not needed, so its per-image
        # "Could not read image" warnings (one per image) are noise.
        with _colmap_log_level(pycolmap.logging.ERROR):
            result = pycolmap.triangulate_points(
                reconstruction, database_path, work_dir, model_dir, options=_pipeline_options(config, posed=True)
            )
        timings["triangulation"] = time.perf_counter() - start
    else:
        pairs_path = work_dir / "pairs.txt"
        pairs_path.write_text("".join(f"{names[i]} {names[j]}\n" for i, j in kept_pairs))
        verification = pycolmap.TwoViewGeometryOptions()
        verification.compute_relative_pose = True
        # COLMAP logs hundreds of progress lines here; only its warnings reach the user.
        with _colmap_log_level(pycolmap.logging.WARNING):
            pycolmap.verify_matches(database_path, pairs_path, verification)
        timings["verification"] = time.perf_counter() - start
        start = time.perf_counter()
        if config.unposed_mapper == "global":
            # ERROR: the pipeline ends by reading every image for point colours (not in work_dir).
            with _colmap_log_level(pycolmap.logging.ERROR):
                models = pycolmap.global_mapping(database_path, work_dir, model_dir, _global_options(config))
        else:
            with _colmap_log_level(pycolmap.logging.WARNING):
                models = pycolmap.incremental_mapping(database_path, work_dir, model_dir,
                                                      options=_pipeline_options(config, posed=False))
        timings[f"{config.unposed_mapper}_sfm"] = time.perf_counter() - start
        if not models:
            raise RuntimeError(f"{config.unposed_mapper} SfM registered no image pair: too few matches between the "
                               "images")
        result = max(models.values(), key=lambda model: model.num_reg_images())
    return SfmResult(result, image_ids, timings)


@dataclass
class Tracks:
    """3D points and their observations as flat arrays (CSR by point)."""

    xyz: np.ndarray  # [P x 3] float64
    error_px: np.ndarray  # [P] mean reprojection error
    offsets: np.ndarray  # [P+1] int64
    obs_image: np.ndarray  # [O] int32, index of the input image
    obs_keypoint: np.ndarray  # [O] int32, index of the keypoint in that image's Features

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.xyz)


def tracks_from_result(result: SfmResult) -> Tracks:
    """Flatten the reconstruction's points and tracks, indexed by input image order."""
    index_of = {image_id: index for index, image_id in enumerate(result.image_ids)}
    points = result.reconstruction.points3D
    point_ids = sorted(points)
    xyz = np.empty((len(point_ids), 3))
    error = np.empty(len(point_ids))
    lengths = np.empty(len(point_ids), dtype=np.int64)
    images, keypoints = [], []
    for row, point_id in enumerate(point_ids):
        point = points[point_id]
        xyz[row] = point.xyz
        error[row] = point.error
        elements = point.track.elements
        lengths[row] = len(elements)
        images.extend(index_of[element.image_id] for element in elements)
        keypoints.extend(element.point2D_idx for element in elements)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return Tracks(xyz, error, offsets, np.array(images, dtype=np.int32), np.array(keypoints, dtype=np.int32))


def align_to_positions(result: SfmResult, names: list[str], world_positions: np.ndarray,
                       max_error_m: float = 0.05) -> pycolmap.Sim3d:
    """Sim3-align an up-to-scale reconstruction to known camera centres (in place).

    `names[i]` has centre `world_positions[i]`; images the reconstruction lacks are
    ignored. Raises if fewer than 3 registered images have a known centre.
    """
    ransac = pycolmap.RANSACOptions()
    ransac.max_error = max_error_m
    sim3 = pycolmap.align_reconstruction_to_locations(
        result.reconstruction, list(names), np.asarray(world_positions, np.float64), 3, ransac
    )
    if sim3 is None:
        raise RuntimeError("Sim3 alignment failed: fewer than 3 registered images agree with the given poses")
    result.reconstruction.transform(sim3)
    return sim3


def short_span_scale(stamps_ns: np.ndarray, centres: np.ndarray, positions: np.ndarray,
                     spans_s: tuple[float, float] = (0.5, 4.0), min_distance_m: float = 0.1) -> tuple[float, int]:
    """How much longer the odometry's moves are than the reconstruction's, over short spans:
    the median of |odometry move| / |reconstruction move| over every pair of images
    `spans_s` seconds apart whose odometry moved at least `min_distance_m`.

    Odometry drifts slowly (heading, position), so over seconds its moves are within the
    drift's speed of the true ones, in every direction the robot drives; over the whole
    walk the drift bends the trajectory, and a Sim3 fitted to it takes part of that as
    scale (1.3% on the demo walk, against 0.2-0.4% over short spans). Rows of the three
    arrays are the same images. -> (scale to multiply the reconstruction by, pairs used);
    (1.0, 0) without pairs."""
    order = np.argsort(stamps_ns, kind="stable")
    seconds = (np.asarray(stamps_ns, np.int64)[order] - np.min(stamps_ns)) * 1e-9
    centres, positions = np.asarray(centres)[order], np.asarray(positions)[order]
    # Each image with the later ones in its window (not every pair: long bags).
    first = np.searchsorted(seconds, seconds + spans_s[0], side="left")
    last = np.searchsorted(seconds, seconds + spans_s[1], side="right")
    counts = np.maximum(last - first, 0)
    i = np.repeat(np.arange(len(seconds)), counts)
    j = np.concatenate([np.arange(a, a + c) for a, c in zip(first, counts)]).astype(np.int64) if len(i) else i
    moved = np.linalg.norm(positions[j] - positions[i], axis=1)
    mapped = np.linalg.norm(centres[j] - centres[i], axis=1)
    use = (moved >= min_distance_m) & (mapped > 0)
    if not use.any():
        return 1.0, 0
    return float(np.median(moved[use] / mapped[use])), int(use.sum())
