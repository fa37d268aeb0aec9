"""camera.yaml: pinhole intrinsics in the ROS camera_calibration format.

In/out: (K [3 x 3], width, height) <-> the YAML file; written as plumb_bob with zero
distortion, and distortion is not read back (images are taken as rectified).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml


def save_camera_yaml(path: Path, K: np.ndarray, width: int, height: int, camera_name: str = "camera") -> None:
    """Write pinhole intrinsics in the ROS camera_calibration YAML format."""
    K = np.asarray(K, float)
    projection = np.hstack([K, np.zeros((3, 1))])
    data = {
        "image_width": int(width),
        "image_height": int(height),
        "camera_name": camera_name,
        "camera_matrix": {"rows": 3, "cols": 3, "data": [float(v) for v in K.ravel()]},
        "distortion_model": "plumb_bob",
        "distortion_coefficients": {"rows": 1, "cols": 5, "data": [0.0] * 5},
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
