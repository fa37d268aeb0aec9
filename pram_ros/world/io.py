"""Files of a sequence folder: poses (TUM), camera (ROS YAML), depth (uint16 PNG), images.

In/out, per sequence folder:
- `poses.tum`: `timestamp tx ty tz qx qy qz qw` per line, world_from_cam with OpenCV
  camera axes; timestamps written exactly from integer nanoseconds.
- `camera.yaml`: the ROS camera_calibration format (pinhole, plumb_bob, no distortion).
- `depth/*.png`: uint16, depth along the camera z axis times `depth_scale` (1000: mm),
  0 where nothing was hit.
- `images/*.png`: 8-bit RGB (stored as PNG, read back as RGB).

Pure helpers without ROS; the rest of the project reads sequences through these.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml
from scipy.spatial.transform import Rotation

DEPTH_SCALE = 1000  # depth PNG units per metre


def format_stamp(stamp_ns: int) -> str:
    """Integer nanoseconds as exact decimal seconds, e.g. 1700000000.100000000."""
    stamp_ns = int(stamp_ns)
    return f"{stamp_ns // 10**9}.{stamp_ns % 10**9:09d}"


def parse_stamp(text: str) -> int:
    """Decimal seconds (as written by format_stamp, or any TUM file) to integer nanoseconds."""
    whole, _, fraction = text.strip().partition(".")
    fraction = (fraction + "000000000")[:9]
    sign = -1 if whole.startswith("-") else 1
    return int(whole) * 10**9 + sign * int(fraction)


def save_tum(path: Path, stamps_ns: np.ndarray, world_from_cam: np.ndarray) -> None:
    """Write poses [N x 4 x 4] with stamps [N] (int ns) as TUM text (quaternion with qw >= 0)."""
    world_from_cam = np.asarray(world_from_cam, float)
    quats = Rotation.from_matrix(world_from_cam[:, :3, :3]).as_quat()
    quats[quats[:, 3] < 0] *= -1
    lines = []
    for stamp, pose, quat in zip(stamps_ns, world_from_cam, quats):
        values = " ".join(f"{v:.9f}" for v in (*pose[:3, 3], *quat))
        lines.append(f"{format_stamp(int(stamp))} {values}\n")
    Path(path).write_text("".join(lines))


def load_tum(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(stamps_ns int64 [N], world_from_cam float64 [N x 4 x 4]) from a TUM file ('#' lines skipped)."""
    path = Path(path)
    stamps, poses = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 8:
            raise ValueError(f"{path}:{number}: expected 8 fields 'timestamp tx ty tz qx qy qz qw', got {len(fields)}")
        stamps.append(parse_stamp(fields[0]))
        values = np.array([float(v) for v in fields[1:]])
        pose = np.eye(4)
        pose[:3, :3] = Rotation.from_quat(values[3:]).as_matrix()
        pose[:3, 3] = values[:3]
        poses.append(pose)
    return np.array(stamps, dtype=np.int64), np.array(poses).reshape(-1, 4, 4)


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


def depth_to_png(depth_m: np.ndarray, depth_scale: float = DEPTH_SCALE) -> np.ndarray:
    """Metres float [H x W] -> uint16 units of 1/depth_scale m (0 = no hit, clipped at 65535)."""
    units = np.rint(np.nan_to_num(depth_m, nan=0.0) * depth_scale)
    return np.clip(units, 0, 65535).astype(np.uint16)


def save_depth(path: Path, depth_m: np.ndarray, depth_scale: float = DEPTH_SCALE) -> None:
    if not cv2.imwrite(str(path), depth_to_png(depth_m, depth_scale)):
        raise OSError(f"{path}: could not write depth PNG")


def load_depth(path: Path, depth_scale: float = DEPTH_SCALE) -> np.ndarray:
    """Depth PNG -> float32 metres along the camera z axis [H x W] (0 = no hit)."""
    units = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if units is None:
        raise ValueError(f"{path}: not a readable depth PNG")
    if units.dtype != np.uint16 or units.ndim != 2:
        raise ValueError(f"{path}: depth must be a single-channel uint16 PNG, got {units.dtype} {units.shape}")
    return units.astype(np.float32) / float(depth_scale)


def save_image(path: Path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write image PNG")


def load_image(path: Path) -> np.ndarray:
    """PNG -> RGB uint8 [H x W x 3]."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
