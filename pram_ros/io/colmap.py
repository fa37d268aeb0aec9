"""COLMAP models (from COLMAP, hloc, or any tool that writes one): cameras and poses.

In: a model folder (cameras/images/points3D as .bin or .txt). Out: a `ColmapModel`, the
registered images' names (sorted), each image's pinhole camera in OpenCV's pixel convention
(a photo collection has many), and world_from_cam [N x 4 x 4]. Points are not read: the
map is triangulated again from our own features against these poses.

COLMAP puts the centre of the top-left pixel at (0.5, 0.5), OpenCV at (0, 0):
`COLMAP_PIXEL_OFFSET` is that difference, and this module its one home.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

COLMAP_PIXEL_OFFSET = 0.5  # COLMAP pixel centres are at +0.5 of OpenCV's

# Models whose first parameters are the pinhole ones, and how many those are.
_PINHOLE_PARAMS = {"SIMPLE_PINHOLE": 3, "PINHOLE": 4, "SIMPLE_RADIAL": 3, "RADIAL": 3, "OPENCV": 4,
                   "FULL_OPENCV": 4, "RADIAL_FISHEYE": 3, "SIMPLE_RADIAL_FISHEYE": 3, "OPENCV_FISHEYE": 4}


@dataclass
class ColmapModel:
    names: list[str]
    K: np.ndarray  # [N x 3 x 3], each image's
    sizes: np.ndarray  # [N x 2] width, height
    world_from_cam: np.ndarray


def camera_intrinsics(camera, where: str) -> np.ndarray:
    """K (OpenCV pixel convention) of a pycolmap camera without distortion; refused otherwise."""
    model = camera.model.name
    if model not in _PINHOLE_PARAMS:
        raise ValueError(f"{where}: camera {camera.camera_id} has model {model}, which is not supported")
    params = np.asarray(camera.params, float)
    count = _PINHOLE_PARAMS[model]
    if np.any(np.abs(params[count:]) > 1e-9):
        raise ValueError(f"{where}: camera {camera.camera_id} ({model}) has lens distortion: undistort the images "
                         "and the model first (colmap image_undistorter writes PINHOLE cameras)")
    fx, fy = (params[0], params[0]) if count == 3 else (params[0], params[1])
    cx, cy = params[count - 2:count] - COLMAP_PIXEL_OFFSET
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def load_colmap_model(model_dir: Path) -> ColmapModel:
    """The registered images of a COLMAP model, sorted by name, with their cameras."""
    import pycolmap

    model_dir = Path(model_dir)
    if not any((model_dir / f"images.{suffix}").is_file() for suffix in ("bin", "txt")):
        raise FileNotFoundError(f"{model_dir}: not a COLMAP model (no images.bin or images.txt)")
    try:
        reconstruction = pycolmap.Reconstruction(str(model_dir))
    except Exception as error:  # pycolmap raises its own exception types for unreadable files
        raise ValueError(f"{model_dir}: unreadable COLMAP model ({error})") from None
    posed = sorted((image for image in reconstruction.images.values() if image.has_pose), key=lambda i: i.name)
    if len(posed) < 2:
        raise ValueError(f"{model_dir}: {len(posed)} registered images; a map needs at least 2")
    cameras = {image.camera_id for image in posed}
    intrinsics = {camera_id: camera_intrinsics(reconstruction.cameras[camera_id], str(model_dir))
                  for camera_id in cameras}
    world_from_cam = []
    for image in posed:
        cam_from_world = np.eye(4)
        cam_from_world[:3] = image.cam_from_world().matrix()
        world_from_cam.append(np.linalg.inv(cam_from_world))
    sizes = [(reconstruction.cameras[image.camera_id].width, reconstruction.cameras[image.camera_id].height)
             for image in posed]
    return ColmapModel([image.name for image in posed], np.array([intrinsics[image.camera_id] for image in posed]),
                       np.array(sizes, np.int64), np.array(world_from_cam))
