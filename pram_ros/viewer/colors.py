"""Landmark colours, the one source for the viewer and the RViz markers (ros/convert.py).

In: landmark ids (0 background, -1 not recognized). Out: RGB in 0..1 or uint8. No ROS here,
so the viewer runs where rclpy's message packages are not installed.
"""

from __future__ import annotations

import colorsys

import numpy as np

GOLDEN_RATIO_CONJUGATE = 0.618034  # hue step: neighbouring ids get far-apart hues
BACKGROUND_RGB = (0.5, 0.5, 0.5)
UNKNOWN_RGB8 = (255, 255, 255)


def landmark_rgb(landmark: int) -> tuple[float, float, float]:
    """A distinct, stable colour per landmark id in 0..1 (0, background, is gray)."""
    if landmark <= 0:
        return BACKGROUND_RGB
    return colorsys.hsv_to_rgb((landmark * GOLDEN_RATIO_CONJUGATE) % 1.0, 0.75, 0.95)


def landmark_rgb8(landmarks: np.ndarray) -> np.ndarray:
    """[N] landmark ids -> [N x 3] uint8 colours; -1 (not recognized) is white."""
    landmarks = np.asarray(landmarks, np.int64)
    table = np.array([landmark_rgb(k) for k in range(int(landmarks.max(initial=0)) + 1)])
    colors = np.full((len(landmarks), 3), UNKNOWN_RGB8, np.uint8)
    known = landmarks >= 0
    colors[known] = np.rint(table[landmarks[known]] * 255).astype(np.uint8)
    return colors
