"""A PRAM map in a rerun recording: points, landmark boxes, and the mapping cameras.

In: a `PramMap` (mapping/mapfile.py) and, optionally, the folder of its database images.
Out, static entities under `world/map/` (the map frame, z up, metres):
  points           Points3D, every map point in its landmark's colour (the RViz colours)
  landmarks        Boxes3D, one box per landmark (centroid, half-size extent), labelled by id
  cameras/NNNNN    Transform3D (world_from_cam) and Pinhole (K, size) per database image, a
                   frustum; a virtual reference frame's frustum takes its landmark's colour,
                   the others are gray
  cameras/NNNNN/image  the image itself (JPEG), when the images are found
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import rerun as rr

from pram_ros.geometry import invert
from pram_ros.mapping.mapfile import PramMap
from pram_ros.viewer.colors import BACKGROUND_RGB, landmark_rgb8

logger = logging.getLogger(__name__)

WORLD = "world"
MAP = f"{WORLD}/map"
POINT_RADIUS_UI = 2.0  # screen points: stays readable at any zoom
# Frustum depth as a share of the map's size, within a floor and a cap in metres.
FRUSTUM_SHARE = 0.03
FRUSTUM_MIN_M, FRUSTUM_MAX_M = 0.05, 0.5
JPEG_QUALITY = 80  # the images are context, not data: a small file matters more
GRAY_RGB8 = tuple(int(round(c * 255)) for c in BACKGROUND_RGB)


def camera_entity(image_index: int) -> str:
    return f"{MAP}/cameras/{image_index:05d}"


def log_world_frame(recording: rr.RecordingStream) -> None:
    """The map frame's axes: ROS's, x forward, y left, z up."""
    recording.log(WORLD, rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)


def map_images_dir(pram_map: PramMap, images_dir: Path | None) -> Path | None:
    """The database images' folder: `images_dir`, else the one the map was built from, if it still exists."""
    if images_dir is not None:
        if not Path(images_dir).is_dir():
            raise FileNotFoundError(f"{images_dir}: not a folder of the map's images")
        return Path(images_dir)
    source = (pram_map.meta.get("source") or {}).get("images")
    if source and Path(source).is_dir():
        return Path(source)
    logger.info("the map's images are not at hand (%s): cameras drawn without them", source or "not recorded")
    return None


def frustum_depth_m(point_xyz: np.ndarray) -> float:
    if not len(point_xyz):
        return FRUSTUM_MIN_M
    size_m = float(np.linalg.norm(np.ptp(point_xyz, axis=0)))
    return float(np.clip(FRUSTUM_SHARE * size_m, FRUSTUM_MIN_M, FRUSTUM_MAX_M))


def vrf_landmark_per_image(pram_map: PramMap) -> np.ndarray:
    """[I] int: for each database image, the first landmark it is a VRF of, 0 when none."""
    landmark_of = np.zeros(pram_map.num_images, np.int64)
    for k in range(pram_map.num_landmarks, 0, -1):  # backwards: the lowest id wins
        landmark_of[pram_map.landmark_vrfs(k)] = k
    return landmark_of


def log_map(recording: rr.RecordingStream, pram_map: PramMap, images_dir: Path | None = None,
            with_images: bool = True) -> None:
    """Log the entities of the module docstring."""
    log_world_frame(recording)
    colors = landmark_rgb8(pram_map.point_landmark)
    recording.log(f"{MAP}/points", rr.Points3D(pram_map.point_xyz, colors=colors,
                                                radii=rr.Radius.ui_points(POINT_RADIUS_UI)), static=True)
    landmark_ids = np.arange(1, pram_map.num_landmarks + 1)
    recording.log(f"{MAP}/landmarks", rr.Boxes3D(centers=pram_map.landmark_centroid,
                                                   half_sizes=pram_map.landmark_extent,
                                                   colors=landmark_rgb8(landmark_ids),
                                                   labels=[str(k) for k in landmark_ids]), static=True)
    _log_cameras(recording, pram_map, map_images_dir(pram_map, images_dir) if with_images else None)
    logger.info("logged %d points, %d landmarks, %d cameras", pram_map.num_points, pram_map.num_landmarks,
                pram_map.num_images)


def _log_cameras(recording: rr.RecordingStream, pram_map: PramMap, images_dir: Path | None) -> None:
    depth_m = frustum_depth_m(pram_map.point_xyz)
    vrf_landmark = vrf_landmark_per_image(pram_map)
    vrf_colors = landmark_rgb8(vrf_landmark)
    missing = 0
    for i in range(pram_map.num_images):
        entity = camera_entity(i)
        world_from_cam = invert(pram_map.cam_from_world(i))
        camera = int(pram_map.image_camera[i])
        width, height = (int(v) for v in pram_map.camera_size[camera])
        color = tuple(int(c) for c in vrf_colors[i]) if vrf_landmark[i] else GRAY_RGB8
        recording.log(entity, rr.Transform3D(translation=world_from_cam[:3, 3], mat3x3=world_from_cam[:3, :3]),
                      static=True)
        recording.log(entity, rr.Pinhole(image_from_camera=pram_map.K(camera), resolution=[width, height],
                                         image_plane_distance=depth_m, color=color), static=True)
        if images_dir is not None:
            missing += not _log_image(recording, f"{entity}/image", images_dir / pram_map.image_names[i])
    if missing:
        logger.warning("%d of %d map images not found in %s", missing, pram_map.num_images, images_dir)


def _log_image(recording: rr.RecordingStream, entity: str, path: Path) -> bool:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # BGR, 8 bit, whatever the file's depth
    if image is None:
        return False
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        return False
    recording.log(entity, rr.EncodedImage(contents=jpeg.tobytes(), media_type="image/jpeg"), static=True)
    return True
