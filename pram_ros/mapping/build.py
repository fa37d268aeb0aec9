"""Build a PRAM map: images (+ poses) -> features -> pycolmap SfM -> landmarks -> compressed map.

In: an `ImageSet` (a folder of images, or an image topic of a rosbag2; one pinhole
camera; optional poses) and a `MapBuildConfig`. Out: a `PramMap` (see mapfile.py)
and a `BuildSummary` with the numbers a user checks: images registered, 3D points,
mean track length, reprojection error, map size against the full reconstruction,
and seconds per step.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pycolmap

from pram_ros.features import PRESETS, Features, create_extractor
from pram_ros.geometry import quat_from_transform
from pram_ros.io.imageset import ImageSet
from pram_ros.io.tum import load_tum
from pram_ros.mapping.landmarks import LandmarkConfig, cluster_landmarks
from pram_ros.mapping.mapfile import MAP_FORMAT, MAP_VERSION, PramMap
from pram_ros.mapping.posecheck import PoseCheck, check_poses
from pram_ros.mapping.sfm import (
    SfmConfig,
    SfmResult,
    align_to_positions,
    covisible_pairs,
    reconstruct,
    short_span_scale,
    tracks_from_result,
)
from pram_ros.mapping.sparsify import (
    CompressionConfig,
    medoid_descriptors,
    redundant_points,
    select_vrfs,
    session_looks,
    triangulation_angles_deg,
)
from pram_ros.progress import progress

logger = logging.getLogger(__name__)

ALIGN_MAX_ERROR_M = 0.05  # --align: RANSAC inlier distance, and what the summary calls off
ODOMETRY_ALIGN_MAX_ERROR_M = 0.25  # odometry drifts: a looser Sim3 inlier distance
ODOMETRY_MIN_SPANS = 20  # short spans the odometry's scale needs; fewer: the whole walk's Sim3 scale
DEFAULT_LOOKAT_M = 2.0  # pairing's look-at distance when the scene's depth cannot be measured


@dataclass
class MapBuildConfig:
    extractor: str = "xfeat"  # a preset of pram_ros.features
    sfm: SfmConfig = field(default_factory=SfmConfig)
    landmarks: LandmarkConfig = field(default_factory=LandmarkConfig)
    compression: CompressionConfig = field(default_factory=CompressionConfig)


@dataclass
class BuildSummary:
    images: int
    registered: int
    points_reconstructed: int
    mean_track_length: float
    reprojection_error_px: float
    points_kept: int
    landmarks: int
    map_bytes: int
    full_reconstruction_bytes: int
    timings_s: dict[str, float]
    # With --align: distance [registered] of each registered camera centre from its given pose.
    aligned_centre_errors_m: np.ndarray | None = None
    pose_check: str | None = None  # with poses: what the pose check found
    scale: str = "none: the map is up to scale (no poses, no odometry, no --align)"  # where metres come from
    pair_lookat_m: float | None = None  # with poses: the pairing's look-at distance

    def describe(self) -> str:
        share = 100.0 * self.map_bytes / max(self.full_reconstruction_bytes, 1)
        steps = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.timings_s.items())
        return "\n".join([
            f"images registered: {self.registered} of {self.images}",
            f"3D points: {self.points_reconstructed} reconstructed, mean track length {self.mean_track_length:.2f}, "
            f"mean reprojection error {self.reprojection_error_px:.2f} px",
            f"map: {self.points_kept} points in {self.landmarks} landmarks, {self.map_bytes / 1e6:.2f} MB = "
            f"{share:.1f}% of the full reconstruction ({self.full_reconstruction_bytes / 1e6:.1f} MB)",
            *([self._describe_alignment()] if self.aligned_centre_errors_m is not None else []),
            *([self.pose_check, f"pairing: cameras look {self.pair_lookat_m:.2f} m ahead"]
              if self.pose_check is not None else []),
            f"scale: {self.scale}",
            f"time: {steps}",
        ])

    def alignment_stats(self) -> dict | None:
        """With --align: median and p90 centre error (m), and how many exceed ALIGN_MAX_ERROR_M."""
        errors = self.aligned_centre_errors_m
        if errors is None or not len(errors):
            return None
        return {"median": round(float(np.median(errors)), 4), "p90": round(float(np.percentile(errors, 90)), 4),
                "over_max_error": int(np.sum(errors > ALIGN_MAX_ERROR_M)), "max_error_m": ALIGN_MAX_ERROR_M}

    def _describe_alignment(self) -> str:
        stats = self.alignment_stats()
        if stats is None:
            return "Sim3 alignment: no registered image"
        return (f"Sim3 alignment: camera centres from the given poses median {100 * stats['median']:.1f} cm, "
                f"90th percentile {100 * stats['p90']:.1f} cm; {stats['over_max_error']} of "
                f"{len(self.aligned_centre_errors_m)} registered images more than {100 * ALIGN_MAX_ERROR_M:.0f} cm off")


def _centre_errors(result: SfmResult, world_positions: np.ndarray) -> np.ndarray:
    """Distance of each registered camera centre from its known position."""
    images = result.reconstruction.images
    return np.array([np.linalg.norm(images[image_id].projection_center() - world_positions[index])
                     for index, image_id in enumerate(result.image_ids)
                     if image_id in images and images[image_id].has_pose])


def extract_all(images: ImageSet, preset: str) -> list[Features]:
    extractor = create_extractor(preset)
    features: list[Features] = []
    for _, rgb in progress(images.frames(), total=len(images.names), desc="features", unit="image", leave=False):
        features.append(extractor.extract(rgb))
    return features


def full_reconstruction_bytes(reconstruction, descriptor_dim: int, work_dir: Path) -> int:
    """What a classic SfM map needs: the COLMAP binary model plus a float16 descriptor
    per observation (as hloc stores them)."""
    model_dir = work_dir / "full_model"
    model_dir.mkdir(exist_ok=True)
    reconstruction.write_binary(str(model_dir))
    model_bytes = sum(f.stat().st_size for f in model_dir.iterdir())
    return int(model_bytes + reconstruction.compute_num_observations() * descriptor_dim * 2)


def build_map(images: ImageSet, config: MapBuildConfig | None = None, align_tum: Path | None = None,
              work_dir: Path | None = None,
              keep_features: dict[str, Features] | None = None) -> tuple[PramMap, BuildSummary]:
    """Run every mapping step; see the module docstring. `align_tum` (poses of some of
    the same images, matched by name order or stamp) Sim3-aligns an unposed reconstruction.
    `keep_features`: filled with each image's features by name (training reuses them)."""
    config = config or MapBuildConfig()
    if config.extractor not in PRESETS:
        raise ValueError(f"unknown feature preset {config.extractor!r}, known: {sorted(PRESETS)}")
    timings: dict[str, float] = {}
    aligned_poses = None
    if align_tum is not None and images.world_from_cam is None:
        _, aligned_poses = load_tum(align_tum)  # checked before the long work
        if len(aligned_poses) != len(images.names):
            raise ValueError(f"{align_tum}: {len(aligned_poses)} poses for {len(images.names)} images")
    pose_check = None
    odometry = images.odometry if images.world_from_cam is None else None
    if images.world_from_cam is not None or odometry is not None:
        start = time.perf_counter()
        pose_check = check_poses(images, config.extractor,
                                 None if odometry is None else odometry.odom_from_cam,
                                 None if odometry is None else f"{images.source.get('bag')}: odometry {odometry.chain}")
        timings["pose_check"] = time.perf_counter() - start
        logger.info(pose_check.describe())
        config = _scaled_pairing(config, pose_check)
    odometry_pairs = None
    if odometry is not None:
        odometry_pairs = covisible_pairs(odometry.odom_from_cam, config.sfm,
                                         min_index_gap=config.sfm.sequential_window + 1)
        logger.info("odometry: %d pairs of images near in space, apart in time", len(odometry_pairs))
    temporary = work_dir is None
    work_dir = Path(tempfile.mkdtemp(prefix="pram_map_")) if temporary else Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        features = extract_all(images, config.extractor)
        timings["features"] = time.perf_counter() - start
        if keep_features is not None:
            keep_features.update(zip(images.names, features))
        logger.info("features: %d images, %.0f keypoints per image, %.1f s", len(features),
                    np.mean([len(f) for f in features]), timings["features"])

        cameras = (images.K, images.width, images.height) if images.one_camera else \
            (images.Ks, images.sizes[:, 0], images.sizes[:, 1])
        result = reconstruct(images.names, features, *cameras, work_dir, images.world_from_cam, config.sfm,
                             odometry_pairs)
        timings.update(result.timings_s)
        metric = images.world_from_cam is not None
        aligned_errors = None
        scale_source = "poses" if metric else None
        odometry_dropped = 0
        if odometry is not None and aligned_poses is None:
            covered = odometry.covered
            align_to_positions(result, [n for n, c in zip(images.names, covered) if c],
                               odometry.odom_from_cam[covered, :3, 3], ODOMETRY_ALIGN_MAX_ERROR_M)
            odometry_dropped = _drop_disagreeing_with_odometry(result, odometry)
            spans = _scale_to_odometry(result, odometry)
            metric, scale_source = True, f"odometry ({odometry.chain}; the map's frame is {odometry.odom_frame})"
            scale_source += f"; scale over {spans} short spans" if spans else "; scale of a Sim3 over the whole walk"
            if odometry_dropped:
                scale_source += f"; {odometry_dropped} images dropped, placed far from their odometry"
        if aligned_poses is not None:
            scale_source = f"--align {align_tum}"
            align_to_positions(result, images.names, aligned_poses[:, :3, 3], ALIGN_MAX_ERROR_M)
            aligned_errors = _centre_errors(result, aligned_poses[:, :3, 3])
            metric = True
        reconstruction = result.reconstruction
        full_bytes = full_reconstruction_bytes(reconstruction, features[0].descriptors.shape[1], work_dir)

        start = time.perf_counter()
        tracks = tracks_from_result(result)
        centres = np.zeros((len(images.names), 3))
        for index, image_id in enumerate(result.image_ids):
            if image_id in reconstruction.images and reconstruction.images[image_id].has_pose:
                centres[index] = reconstruction.images[image_id].projection_center()
        well_triangulated = triangulation_angles_deg(tracks, centres) >= config.compression.min_tri_angle_deg
        # Poorly triangulated points take no part in landmarks (their track length is zeroed).
        labels, num_landmarks = cluster_landmarks(tracks.xyz, np.where(well_triangulated, tracks.lengths, 0),
                                                  config.landmarks, num_images=len(images.names))
        timings["landmarks"] = time.perf_counter() - start

        start = time.perf_counter()
        descriptors = medoid_descriptors(tracks, features)
        vrfs = select_vrfs(tracks, labels, num_landmarks, config.compression)
        drop = redundant_points(tracks, labels, vrfs, features, config.compression)
        keep = np.flatnonzero((labels > 0) & ~drop)
        looks = session_looks(tracks, features, images.sessions, descriptors, keep, config.compression)
        timings["compression"] = time.perf_counter() - start

        pram_map = _assemble(images, config, result, tracks, labels, num_landmarks, descriptors, vrfs, keep,
                             features, full_bytes, metric, looks)
        summary = BuildSummary(
            images=len(images.names),
            registered=int(result.registered().sum()),
            points_reconstructed=len(tracks),
            mean_track_length=float(tracks.lengths.mean()) if len(tracks) else 0.0,
            reprojection_error_px=float(reconstruction.compute_mean_reprojection_error()),
            points_kept=len(keep),
            landmarks=num_landmarks,
            map_bytes=pram_map.nbytes(),
            full_reconstruction_bytes=full_bytes,
            aligned_centre_errors_m=aligned_errors,
            pose_check=None if pose_check is None else pose_check.describe(),
            pair_lookat_m=config.sfm.pair_lookat_m if pose_check is not None else None,
            **({"scale": f"metres, from {scale_source}"} if scale_source else {}),
            timings_s={k: round(v, 2) for k, v in timings.items()},
        )
        pram_map.meta["stats"].update({k: v for k, v in asdict(summary).items()
                                       if k not in ("timings_s", "aligned_centre_errors_m", "pose_check")})
        alignment = summary.alignment_stats()
        if alignment is not None:
            pram_map.meta["stats"]["aligned_centre_error_m"] = alignment
        pram_map.meta["stats"]["timings_s"] = summary.timings_s
        return pram_map, summary
    finally:
        if temporary:
            shutil.rmtree(work_dir, ignore_errors=True)


def _drop_disagreeing_with_odometry(result: SfmResult, odometry) -> int:
    """Images that SfM placed far from where the odometry puts them (a segment registered
    on a look-alike, or mirrored) leave the reconstruction with their observations: a map
    must not hold confident wrong poses. Far: over ODOMETRY_ALIGN_MAX_ERROR_M and 4 times
    the median distance (the odometry's drift). -> how many were dropped."""
    errors = _centre_errors(result, np.where(odometry.covered[:, None], odometry.odom_from_cam[:, :3, 3], np.nan))
    registered = np.flatnonzero(result.registered())
    finite = np.isfinite(errors)
    if not finite.any():
        return 0
    limit = max(ODOMETRY_ALIGN_MAX_ERROR_M, 4.0 * float(np.median(errors[finite])))
    bad = registered[finite & (errors > limit)]
    for index in bad:
        image = result.reconstruction.images[result.image_ids[index]]
        result.reconstruction.deregister_frame(image.frame_id)
    if len(bad):
        logger.warning("dropped %d of %d registered images more than %.2f m from their odometry", len(bad),
                       len(registered), limit)
    return len(bad)


def _scale_to_odometry(result: SfmResult, odometry) -> int:
    """Rescale the odometry-aligned reconstruction (in place, about its centre) by how much
    longer the odometry's short moves are than its own (sfm.short_span_scale): the whole
    walk's Sim3 takes the odometry's drift partly as scale. -> the spans used (0: too few,
    the Sim3's scale is kept)."""
    images = result.reconstruction.images
    rows = [index for index, image_id in enumerate(result.image_ids)
            if image_id in images and images[image_id].has_pose and odometry.covered[index]]
    centres = np.array([images[result.image_ids[index]].projection_center() for index in rows]).reshape(-1, 3)
    positions = odometry.odom_from_cam[rows, :3, 3]
    scale, spans = short_span_scale(odometry.stamps_ns[rows], centres, positions)
    if spans < ODOMETRY_MIN_SPANS:
        logger.warning("scale: %d spans of 0.5-4 s with 10 cm of odometry motion (at least %d needed); the map "
                       "keeps the scale of a Sim3 over the whole walk, which the odometry's drift biases", spans,
                       ODOMETRY_MIN_SPANS)
        return 0
    centre = centres.mean(axis=0)
    result.reconstruction.transform(pycolmap.Sim3d(scale, pycolmap.Rotation3d(), (1.0 - scale) * centre))
    logger.info("scale: the odometry's moves over %d spans of 0.5-4 s are %.4f times the map's; map rescaled",
                spans, scale)
    return spans


def _scaled_pairing(config: MapBuildConfig, pose_check: PoseCheck) -> MapBuildConfig:
    """The pairing's look-at distance from the scene's measured depth, unless set."""
    if config.sfm.pair_lookat_m is not None:
        return config
    depth = pose_check.scene_depth_m
    if depth is None:
        depth = DEFAULT_LOOKAT_M
        logger.warning("the scene's depth could not be measured (too few matches between neighbouring images): "
                       "pairing assumes cameras look %.1f m ahead; set it with --pair-lookat-m", depth)
    logger.info("pairing: cameras look %.2f m ahead (the median scene depth)", depth)
    return replace(config, sfm=replace(config.sfm, pair_lookat_m=depth))


def _assemble(images, config, result, tracks, labels, num_landmarks, descriptors, vrfs, keep, features,
              full_bytes, metric, looks) -> PramMap:
    """Keep the chosen points and the registered images, re-indexed densely."""
    registered = np.flatnonzero(result.registered())
    map_index = np.full(len(images.names), -1, dtype=np.int32)
    map_index[registered] = np.arange(len(registered), dtype=np.int32)
    reconstruction = result.reconstruction

    poses = np.empty((len(registered), 7))
    for row, index in enumerate(registered):
        cam_from_world = np.asarray(reconstruction.images[result.image_ids[index]].cam_from_world().matrix())
        matrix = np.vstack([cam_from_world, [0, 0, 0, 1]])
        translation, quat = quat_from_transform(matrix)
        poses[row, :4], poses[row, 4:] = quat, translation

    lengths = tracks.lengths[keep]
    rows = np.concatenate([np.arange(tracks.offsets[p], tracks.offsets[p + 1]) for p in keep]) if len(keep) else \
        np.zeros(0, dtype=np.int64)
    obs_images = map_index[tracks.obs_image[rows]]
    vrf_lists = [map_index[v] for v in vrfs]

    xyz = tracks.xyz[keep]
    point_landmark = labels[keep].astype(np.int32)
    centroid = np.zeros((num_landmarks, 3), dtype=np.float32)
    extent = np.zeros((num_landmarks, 3), dtype=np.float32)
    for landmark in range(1, num_landmarks + 1):
        members = xyz[point_landmark == landmark]
        if len(members):
            # The box is centred on the centroid, so a marker drawn there holds every point.
            centroid[landmark - 1] = members.mean(axis=0)
            extent[landmark - 1] = np.abs(members - centroid[landmark - 1]).max(axis=0)

    # The map keeps each distinct camera once; image_camera says whose each image is.
    intrinsics = np.concatenate([images.Ks[:, 0, 0, None], images.Ks[:, 1, 1, None], images.Ks[:, 0, 2, None],
                                 images.Ks[:, 1, 2, None], images.sizes], axis=1)[registered]
    cameras, image_camera = np.unique(intrinsics, axis=0, return_inverse=True)
    extractor = dict(PRESETS[config.extractor].to_dict(), preset=config.extractor,
                     descriptor_dim=int(features[0].descriptors.shape[1]))
    meta = {
        "format": MAP_FORMAT,
        "version": MAP_VERSION,
        "extractor": extractor,
        "image_names": [images.names[i] for i in registered],
        "build": {
            "metric": bool(metric),
            "num_landmarks": int(num_landmarks),
            "sfm": asdict(config.sfm),
            "landmarks": asdict(config.landmarks),
            "compression": asdict(config.compression),
        },
        "stats": {"full_reconstruction_bytes": int(full_bytes)},
        "source": images.source,
    }
    return PramMap(
        meta=meta,
        camera_params=cameras[:, :4].astype(np.float64),
        camera_size=cameras[:, 4:].astype(np.int32),
        image_camera=image_camera.ravel().astype(np.int32),
        image_cam_from_world=poses,
        point_xyz=xyz.astype(np.float32),
        point_descriptor=descriptors[keep],
        point_landmark=point_landmark,
        point_error_px=tracks.error_px[keep].astype(np.float32),
        point_obs_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        point_obs_images=obs_images.astype(np.int32),
        landmark_centroid=centroid,
        landmark_extent=extent,
        landmark_vrf_offsets=np.concatenate([[0], np.cumsum([len(v) for v in vrf_lists])]).astype(np.int64),
        landmark_vrf_images=np.concatenate(vrf_lists).astype(np.int32) if vrf_lists else np.zeros(0, np.int32),
        appearance_point=looks[0],
        appearance_descriptor=looks[1],
    )
