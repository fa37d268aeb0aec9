"""Image and depth files of a sequence folder.

In/out: `images/*.png`, 8-bit RGB (PNG stores BGR; arrays here are RGB uint8 [H x W x 3]);
`depth/*.png`, uint16 depth along the camera z axis times `depth_scale` (1000: mm), 0
where nothing was hit, read back as float32 metres [H x W].
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

DEPTH_SCALE = 1000  # depth PNG units per metre


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
