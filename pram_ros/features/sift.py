"""SIFT features from OpenCV, with RootSIFT descriptors by default: the fallback extractor.

In: a mono8 image [H x W] (the base class converts RGB and mono16).
Out: up to `max_keypoints` keypoints (strongest DoG response first) in OpenCV pixel
coordinates, with 128-d descriptors: RootSIFT (L1-normalise, square root), or plain SIFT
when `root_sift` is False; rows L2-normalised either way. No weights, no torch.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from pram_ros.features.base import ExtractorConfig, FeatureExtractor

logger = logging.getLogger(__name__)

DEFAULT_CONTRAST_THRESHOLD = 0.04  # OpenCV's default


def root_sift(descriptors: np.ndarray) -> np.ndarray:
    """SIFT descriptors [N x 128] -> RootSIFT: sqrt of the L1-normalised vector (unit L2 norm)."""
    descriptors = np.maximum(np.asarray(descriptors, np.float32), 0.0)
    l1 = descriptors.sum(axis=1, keepdims=True)
    return np.sqrt(descriptors / np.maximum(l1, 1e-12))


class SiftExtractor(FeatureExtractor):
    """OpenCV SIFT (cv2.SIFT_create); keeps the `max_keypoints` strongest responses."""

    descriptor_dim = 128

    def __init__(self, config: ExtractorConfig):
        if config.name != "sift":
            raise ValueError(f"SiftExtractor needs a 'sift' config, got name={config.name!r}")
        super().__init__(config)
        threshold = config.detection_threshold
        self.sift = cv2.SIFT_create(
            nfeatures=config.max_keypoints,
            contrastThreshold=DEFAULT_CONTRAST_THRESHOLD if threshold is None else threshold,
            # Without it OpenCV's 2x upsampled first octave shifts keypoints by about +0.25 px
            # in x and y (measured in the tests); with it, pixel index x maps exactly to 2x.
            enable_precise_upscale=True,
        )

    def _detect(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        keypoints, descriptors = self.sift.detectAndCompute(gray, None)
        if not keypoints or descriptors is None:
            return np.zeros((0, 2)), np.zeros((0, self.descriptor_dim)), np.zeros(0)
        points = np.array([k.pt for k in keypoints], np.float32)
        scores = np.array([k.response for k in keypoints], np.float32)
        if self.config.root_sift:
            descriptors = root_sift(descriptors)
        return points, descriptors, scores
