"""The per-frame front end every localizer shares: bring the image to the map's camera,
check it, make it gray, extract features, and time each stage.

In: an image (RGB or mono) of the query camera and the extractor. Out: `Frame` (gray
image, features) or the reason the frame cannot be localized; stage times go into the
caller's timings dict. `InputCamera` takes any pinhole camera (with plumb_bob or rational
distortion) to the map's: undistorted, then resized so that the focal length, and so the
features' scale, matches the map's (a map of a photo collection has many cameras: a query
whose focal length lies among theirs is not resized); PnP uses the resulting intrinsics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import cv2
import numpy as np

from pram_ros.features import FeatureExtractor, Features
from pram_ros.features.base import to_gray8
from pram_ros.io.camera import undistort_maps
from pram_ros.localization.registration import Camera
from pram_ros.localization.result import Reason, Unusable


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


# Focal lengths within this factor of the map's are used as they are (no resampling).
SAME_SCALE = 1.1


def focal_px(K: np.ndarray) -> float:
    """One focal length for a camera: the geometric mean of fx and fy."""
    return float(np.sqrt(K[0, 0] * K[1, 1]))


@dataclass(frozen=True)
class InputCamera:
    """A query camera's images, made the map camera's kind: `prepare` undistorts and resizes;
    `camera` is the pinhole camera of the prepared images (for PnP)."""

    width: int  # the incoming images'
    height: int
    camera: Camera
    undistort: tuple[np.ndarray, np.ndarray] | None = None  # cv2.remap maps
    source: tuple = ()  # the intrinsics it was made from: (width, height, K, distortion)

    @classmethod
    def same_as(cls, camera: Camera) -> "InputCamera":
        return cls(camera.width, camera.height, camera, None, _source(camera.K, camera.width, camera.height, None))

    @classmethod
    def of(cls, map_focal_px: tuple[float, float], K: np.ndarray, width: int, height: int,
           distortion: np.ndarray | None = None) -> "InputCamera":
        """`map_focal_px`: the smallest and largest focal length of the map's cameras.
        Raises ValueError (one line) for intrinsics that are no pinhole camera."""
        K = np.asarray(K, np.float64).reshape(3, 3)
        if width < 16 or height < 16 or K[0, 0] <= 0 or K[1, 1] <= 0 or not np.all(np.isfinite(K)):
            raise ValueError(f"not a pinhole camera: {width}x{height}, fx {K[0, 0]} fy {K[1, 1]}")
        distortion = np.zeros(0) if distortion is None else np.asarray(distortion, np.float64).ravel()
        undistort = None
        if np.any(np.abs(distortion) > 1e-9):
            if len(distortion) not in (4, 5, 8):
                raise ValueError(f"{len(distortion)} distortion coefficients: plumb_bob (5) or rational_polynomial "
                                 "(8) expected")
            undistort = undistort_maps(K, width, height, distortion)
        focal = focal_px(K)
        low, high = map_focal_px[0] / SAME_SCALE, map_focal_px[1] * SAME_SCALE
        scale = 1.0 if low <= focal <= high else float(np.sqrt(map_focal_px[0] * map_focal_px[1]) / focal)
        new_width, new_height = max(16, round(width * scale)), max(16, round(height * scale))
        sx, sy = new_width / width, new_height / height
        # Resizing maps pixel centres: u' = (u + 0.5) * s - 0.5.
        scaled = np.array([[K[0, 0] * sx, 0.0, (K[0, 2] + 0.5) * sx - 0.5],
                           [0.0, K[1, 1] * sy, (K[1, 2] + 0.5) * sy - 0.5], [0.0, 0.0, 1.0]])
        return cls(width, height, Camera.of_intrinsics(scaled, new_width, new_height), undistort,
                   _source(K, width, height, distortion))

    @property
    def resized(self) -> bool:
        return (self.camera.width, self.camera.height) != (self.width, self.height)

    def prepare(self, image) -> np.ndarray | Unusable:
        """The image as the map's camera would see it, or why it cannot be."""
        if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
            return Unusable(Reason.UNDECODABLE_IMAGE, "not an image array")
        if image.shape[:2] != (self.height, self.width):
            return Unusable(Reason.CAMERA_MISMATCH,
                            f"image is {image.shape[1]}x{image.shape[0]}, its camera {self.width}x{self.height}")
        if self.undistort is not None:
            image = cv2.remap(image, *self.undistort, cv2.INTER_LINEAR)
        if self.resized:
            shrink = self.camera.width < self.width
            image = cv2.resize(image, (self.camera.width, self.camera.height),
                               interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        return image


class TakesAnyCamera:
    """What every localizer does with the query camera: `set_camera` once it is known
    (CameraInfo, camera.yaml); until then images are taken to be of the map's camera."""

    map_camera: Camera  # the map's first camera: images are taken to be its until set_camera
    map_focal_px: tuple[float, float]
    input: InputCamera

    def use_map_cameras(self, pram_map) -> None:
        self.map_camera = Camera.of_map(pram_map)
        focals = [focal_px(pram_map.K(c)) for c in range(pram_map.num_cameras)]
        self.map_focal_px = (min(focals), max(focals))
        self.input = InputCamera.same_as(self.map_camera)

    @property
    def camera(self) -> Camera:
        """The camera of the prepared images: what registration projects with."""
        return self.input.camera

    def set_camera(self, K: np.ndarray, width: int, height: int, distortion: np.ndarray | None = None) -> bool:
        """Use this query camera from the next frame on; -> whether it changed anything.
        Raises ValueError for intrinsics that are no pinhole camera."""
        if _source(K, width, height, distortion) == self.input.source:
            return False
        self.input = InputCamera.of(self.map_focal_px, K, width, height, distortion)
        return True


def _source(K: np.ndarray, width: int, height: int, distortion: np.ndarray | None) -> tuple:
    coefficients = () if distortion is None else tuple(np.round(np.asarray(distortion, float).ravel(), 9))
    if not any(coefficients):
        coefficients = ()
    return int(width), int(height), tuple(np.round(np.asarray(K, float).ravel(), 6)), coefficients


@dataclass
class Frame:
    gray: np.ndarray | None
    features: Features


def extract(extractor: FeatureExtractor, camera: Camera, image, min_keypoints: int, timings: dict,
            gray: np.ndarray | None = None) -> Frame | Unusable:
    """Features of a frame, or why it has none worth registering (a one-line reason)."""
    problem = camera.image_problem(image)
    if problem:
        return Unusable(Reason.CAMERA_MISMATCH, problem)
    if gray is None:
        gray = gray_of(image)
    tick = time.perf_counter()
    try:
        # The extractor takes gray too, and gives the same features: hand it the gray made once.
        features = extractor.extract(gray if gray is not None else image)
    except (TypeError, ValueError) as exc:  # an encoding the extractor does not take
        return Unusable(Reason.UNDECODABLE_IMAGE, f"cannot extract features: {exc}")
    timings["features_ms"] = elapsed_ms(tick)
    if len(features) < min_keypoints:
        return Unusable(Reason.TOO_FEW_FEATURES, f"{len(features)} keypoints: too little texture")
    return Frame(gray, features)
