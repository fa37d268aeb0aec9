"""The per-frame front end every localizer shares: check the image, make it gray, extract
features, and time each stage.

In: an image (RGB or mono of the map's camera) and the extractor. Out: `Frame` (gray
image, features) or the reason the frame cannot be localized; stage times go into the
caller's timings dict.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from pram_ros.features import FeatureExtractor, Features
from pram_ros.features.base import to_gray8
from pram_ros.localization.registration import Camera


def elapsed_ms(since: float) -> float:
    """Milliseconds since a time.perf_counter() reading, as Result.timings_ms keeps them."""
    return round(1000.0 * (time.perf_counter() - since), 3)


def gray_of(image: np.ndarray) -> np.ndarray | None:
    """The mono8 image the extractor and optical flow read; None when it cannot be made
    (the extractor then reports what is wrong with the image)."""
    try:
        return to_gray8(image)
    except (TypeError, ValueError):
        return None


@dataclass
class Frame:
    gray: np.ndarray | None
    features: Features


def extract(extractor: FeatureExtractor, camera: Camera, image, min_keypoints: int, timings: dict,
            gray: np.ndarray | None = None) -> Frame | str:
    """Features of a frame, or why it has none worth registering (a one-line reason)."""
    problem = camera.image_problem(image)
    if problem:
        return problem
    if gray is None:
        gray = gray_of(image)
    tick = time.perf_counter()
    try:
        # The extractor takes gray too, and gives the same features: hand it the gray made once.
        features = extractor.extract(gray if gray is not None else image)
    except (TypeError, ValueError) as exc:  # an encoding the extractor does not take
        return f"cannot extract features: {exc}"
    timings["features_ms"] = elapsed_ms(tick)
    if len(features) < min_keypoints:
        return f"{len(features)} keypoints: too little texture"
    return Frame(gray, features)
