"""camera.yaml: pinhole intrinsics in the ROS camera_calibration format, and undistortion.

In/out: (K [3 x 3], width, height) <-> the YAML file, written as plumb_bob with zero
distortion. `load_distortion` reads the coefficients back (plumb_bob or
rational_polynomial; others are refused), and `undistort_maps` makes the cv2.remap maps
that turn such images into pinhole images with the same K.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml

# ROS distortion models OpenCV's undistortion takes, by their coefficient counts.
DISTORTION_MODELS = {"plumb_bob": (4, 5), "rational_polynomial": (8,)}


def save_camera_yaml(path: Path, K: np.ndarray, width: int, height: int, camera_name: str = "camera",
                     distortion: np.ndarray | None = None) -> None:
    """Write pinhole intrinsics (and plumb_bob or rational_polynomial distortion) in the ROS
    camera_calibration YAML format."""
    K = np.asarray(K, float)
    coefficients = [0.0] * 5 if distortion is None or not len(distortion) else [float(v) for v in distortion]
    projection = np.hstack([K, np.zeros((3, 1))])
    data = {
        "image_width": int(width),
        "image_height": int(height),
        "camera_name": camera_name,
        "camera_matrix": {"rows": 3, "cols": 3, "data": [float(v) for v in K.ravel()]},
        "distortion_model": "rational_polynomial" if len(coefficients) == 8 else "plumb_bob",
        "distortion_coefficients": {"rows": 1, "cols": len(coefficients), "data": coefficients},
        "rectification_matrix": {"rows": 3, "cols": 3, "data": [float(v) for v in np.eye(3).ravel()]},
        "projection_matrix": {"rows": 3, "cols": 4, "data": [float(v) for v in projection.ravel()]},
    }
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None))


def load_camera_yaml(path: Path) -> tuple[np.ndarray, int, int]:
    """(K [3 x 3], width, height) from a ROS camera_calibration YAML file."""
    path = Path(path)
    data = yaml.safe_load(path.read_text())
    for key in ("image_width", "image_height", "camera_matrix"):
        if key not in data:
            raise ValueError(f"{path}: missing field '{key}'")
    values = data["camera_matrix"].get("data", [])
    if len(values) != 9:
        raise ValueError(f"{path}: camera_matrix.data must hold 9 numbers, got {len(values)}")
    return np.array(values, float).reshape(3, 3), int(data["image_width"]), int(data["image_height"])


def load_distortion(path: Path) -> np.ndarray:
    """The distortion coefficients of a camera.yaml ([] when it has none or all are zero)."""
    path = Path(path)
    data = yaml.safe_load(path.read_text()) or {}
    coefficients = np.asarray((data.get("distortion_coefficients") or {}).get("data") or [], float)
    if not np.any(np.abs(coefficients) > 1e-12):
        return np.zeros(0)
    model = data.get("distortion_model", "plumb_bob")
    check_distortion(model, coefficients, str(path))
    return coefficients


def check_distortion(model: str, coefficients: np.ndarray, where: str) -> None:
    """ValueError (one line, naming `where`) for a model or count OpenCV cannot undistort."""
    if model not in DISTORTION_MODELS:
        raise ValueError(f"{where}: distortion model {model!r} is not supported (plumb_bob or rational_polynomial): "
                         "rectify the images first")
    if len(coefficients) not in DISTORTION_MODELS[model]:
        raise ValueError(f"{where}: {model} needs {' or '.join(map(str, DISTORTION_MODELS[model]))} coefficients, "
                         f"got {len(coefficients)}")


def undistort_maps(K: np.ndarray, width: int, height: int, coefficients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps from distorted images to pinhole images with the same K and size."""
    K = np.asarray(K, np.float64)
    return cv2.initUndistortRectifyMap(K, np.asarray(coefficients, np.float64), None, K, (int(width), int(height)),
                                       cv2.CV_32FC1)

