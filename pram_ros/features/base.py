"""The feature extractor interface: one image in, sparse keypoints and descriptors out.

In: an image as a numpy array, RGB uint8 [H x W x 3], mono8 uint8 [H x W] (or [H x W x 1]),
or mono16 uint16 [H x W] (divided by 257, so 65535 becomes 255).
Out: `Features`, with
  keypoints    [N x 2] float32, (x, y) pixels, OpenCV convention: the centre of the
               top-left pixel is (0, 0);
  descriptors  [N x D] float32, rows L2-normalised;
  scores       [N] float32, higher is better, sorted in descending order;
  image_size   (width, height).

`ExtractorConfig` names an extractor and its settings; the map records it with `to_dict()`
so that queries are described the same way. `PRESETS` holds the named configurations, and
`create_extractor("xfeat")` builds one.
"""

from __future__ import annotations

import abc
import dataclasses
import logging
import re
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

logger = logging.getLogger(__name__)

EXTRACTORS = ("xfeat", "sift")
DEVICES = ("auto", "cpu", "cuda")
# XFeat's network: "auto" runs ONNX Runtime on the CPU when it loads (torch otherwise, and
# always on cuda); "torch", "onnxruntime" and "openvino" choose.
RUNTIMES = ("auto", "torch", "onnxruntime", "openvino")
MIN_IMAGE_SIDE = 32  # smaller images give no features (XFeat needs at least one 32-px cell)


@dataclass
class Features:
    """Sparse features of one image (shapes and conventions in the module docstring)."""

    keypoints: np.ndarray
    descriptors: np.ndarray
    scores: np.ndarray
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        self.keypoints = np.ascontiguousarray(self.keypoints, dtype=np.float32).reshape(-1, 2)
        self.descriptors = np.ascontiguousarray(self.descriptors, dtype=np.float32)
        self.scores = np.ascontiguousarray(self.scores, dtype=np.float32).reshape(-1)
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        n = len(self.keypoints)
        if self.descriptors.ndim != 2 or len(self.descriptors) != n or len(self.scores) != n:
            raise ValueError(
                f"Features: keypoints {self.keypoints.shape}, descriptors {self.descriptors.shape} and "
                f"scores {self.scores.shape} must be [N x 2], [N x D] and [N]"
            )

    @classmethod
    def empty(cls, descriptor_dim: int, image_size: tuple[int, int]) -> Features:
        return cls(np.zeros((0, 2), np.float32), np.zeros((0, descriptor_dim), np.float32),
                   np.zeros(0, np.float32), image_size)

    def __len__(self) -> int:
        return len(self.keypoints)

    @property
    def descriptor_dim(self) -> int:
        return self.descriptors.shape[1]

    def subset(self, indices: np.ndarray) -> Features:
        """The features at `indices` (ints or a boolean mask of length N).

        They come back in their original order, duplicates removed, so they stay sorted by score;
        pass sorted unique indices when positions in the subset must line up with `indices`.
        """
        indices = np.asarray(indices)
        if indices.dtype == bool:
            if indices.shape != (len(self),):
                raise ValueError(f"Features.subset: mask of shape {indices.shape}, expected ({len(self)},)")
            indices = np.flatnonzero(indices)
        elif indices.size and not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(f"Features.subset: indices must be integers or a boolean mask, got {indices.dtype}")
        indices = np.unique(indices.astype(np.int64).reshape(-1))
        if indices.size and (indices[0] < 0 or indices[-1] >= len(self)):
            raise ValueError(f"Features.subset: indices must lie in [0, {len(self)}), got {indices[0]}..{indices[-1]}")
        return Features(self.keypoints[indices], self.descriptors[indices], self.scores[indices], self.image_size)

    def top(self, k: int) -> Features:
        """The k highest-scoring features (all of them when k >= N)."""
        if k < 0:
            raise ValueError(f"Features.top: k must be >= 0, got {k}")
        # Scores are sorted, so the first k are the best; the slice copies nothing.
        return Features(self.keypoints[:k], self.descriptors[:k], self.scores[:k], self.image_size)


@dataclass(frozen=True)
class ExtractorConfig:
    """Which extractor, and its settings. Frozen: the map records it, and presets are shared.

    detection_threshold: XFeat, the keypoint heatmap threshold (its default 0.05);
    SIFT, OpenCV's contrastThreshold (default 0.04; lower gives more, weaker keypoints).
    None means the extractor's default.
    """

    name: str = "xfeat"
    max_keypoints: int = 2048
    detection_threshold: float | None = None
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda" or "cuda:N"; SIFT runs on the CPU
    root_sift: bool = True  # SIFT only: RootSIFT descriptors instead of plain SIFT
    runtime: str = "auto"  # XFeat only: RUNTIMES; the descriptors are the same (within float error)

    def __post_init__(self) -> None:
        if isinstance(self.detection_threshold, int) and not isinstance(self.detection_threshold, bool):
            # JSON and YAML write 0.0 as 0: accept it as the float it means.
            object.__setattr__(self, "detection_threshold", float(self.detection_threshold))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the field when a value has the wrong type or range."""
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            allowed = _FIELD_TYPES[field.name]
            # bool is an int subclass: only accept it where bool is the declared type.
            if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
                names = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
                raise ValueError(f"ExtractorConfig.{field.name}: expected {names}, got {value!r}")
        if self.name not in EXTRACTORS:
            raise ValueError(f"ExtractorConfig.name: expected one of {EXTRACTORS}, got {self.name!r}")
        if self.max_keypoints < 1:
            raise ValueError(f"ExtractorConfig.max_keypoints: expected >= 1, got {self.max_keypoints}")
        if self.detection_threshold is not None and not self.detection_threshold >= 0.0:
            raise ValueError(
                f"ExtractorConfig.detection_threshold: expected >= 0 or None, got {self.detection_threshold}")
        if self.device not in DEVICES and not re.fullmatch(r"cuda:\d+", self.device):
            raise ValueError(f"ExtractorConfig.device: expected one of {DEVICES} or 'cuda:N', got {self.device!r}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"ExtractorConfig.runtime: expected one of {RUNTIMES}, got {self.runtime!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (every field), the inverse of `from_dict`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExtractorConfig:
        """Build from a dict such as `to_dict()` wrote; unknown keys and wrong types raise ValueError."""
        if not isinstance(data, dict):
            raise ValueError(f"ExtractorConfig: expected a dict, got {type(data).__name__}")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"ExtractorConfig: unknown field(s) {unknown}, expected some of {sorted(known)}")
        return cls(**data)

    def same_descriptors(self, other: ExtractorConfig) -> bool:
        """Whether descriptors from the two configurations can be matched with each other."""
        if self.name != other.name:
            return False
        return self.name != "sift" or self.root_sift == other.root_sift


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "max_keypoints": (int,),
    "detection_threshold": (float, type(None)),
    "device": (str,),
    "root_sift": (bool,),
    "runtime": (str,),
}

PRESETS: dict[str, ExtractorConfig] = {
    "xfeat": ExtractorConfig("xfeat", max_keypoints=2048, detection_threshold=0.05),
    "xfeat-1024": ExtractorConfig("xfeat", max_keypoints=1024, detection_threshold=0.05),
    "xfeat-4096": ExtractorConfig("xfeat", max_keypoints=4096, detection_threshold=0.05),
    # A lower contrast threshold than OpenCV's 0.04: rendered and indoor images are soft,
    # and the max_keypoints cut keeps only the strongest anyway.
    "sift": ExtractorConfig("sift", max_keypoints=2048, detection_threshold=0.02, root_sift=True),
}
DEFAULT_PRESET = "xfeat"


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when torch sees a GPU, else "cpu"; "cuda" without a GPU raises ValueError."""
    import torch  # here, so that SIFT-only users never wait for torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested, but torch sees no CUDA device (use 'auto' or 'cpu')")
    return device


def to_gray8(image: np.ndarray) -> np.ndarray:
    """Validate an input image and return it as contiguous mono uint8 [H x W].

    RGB uint8 [H x W x 3] goes through OpenCV's luminance weights, so an RGB frame and the
    mono8 frame made from it with cv2.cvtColor give identical features.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        if image.dtype == np.uint8:
            return np.ascontiguousarray(image)
        if image.dtype == np.uint16:
            return np.rint(image.astype(np.float32) / 257.0).astype(np.uint8)
        raise ValueError(f"a mono image must be uint8 or uint16, got {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 3:
        if image.dtype != np.uint8:
            raise ValueError(f"an RGB image must be uint8, got {image.dtype}")
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    raise ValueError(
        f"image must be RGB uint8 [H x W x 3], mono8 uint8 [H x W] or mono16 uint16 [H x W], "
        f"got {image.dtype} of shape {image.shape}"
    )


class FeatureExtractor(abc.ABC):
    """Turns an image into `Features`. Subclasses implement `_detect` on a mono8 image.

    This class validates the input, returns empty features for empty or flat images, and
    enforces the output contract (dtypes, score order, max_keypoints, L2-normalised rows).
    """

    descriptor_dim: int

    def __init__(self, config: ExtractorConfig):
        self.config = config

    def extract(self, image: np.ndarray) -> Features:
        gray = to_gray8(image)
        height, width = gray.shape
        if min(height, width) < MIN_IMAGE_SIDE or int(gray.min()) == int(gray.max()):
            return Features.empty(self.descriptor_dim, (width, height))
        keypoints, descriptors, scores = self._detect(gray)
        if len(scores) == 0:
            return Features.empty(self.descriptor_dim, (width, height))
        order = np.argsort(-np.asarray(scores, np.float32), kind="stable")[: self.config.max_keypoints]
        descriptors = np.asarray(descriptors, np.float32)[order]
        norms = np.linalg.norm(descriptors, axis=1, keepdims=True)
        descriptors = descriptors / np.maximum(norms, 1e-12)
        return Features(np.asarray(keypoints)[order], descriptors, np.asarray(scores)[order], (width, height))

    def prepare_for(self, width: int, height: int) -> None:
        """Get ready for images of this size now, not on the first one (default: nothing)."""

    @abc.abstractmethod
    def _detect(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mono8 [H x W] (not flat) -> keypoints [N x 2], descriptors [N x D], scores [N], any order."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"


def create_extractor(preset_or_config: str | ExtractorConfig = DEFAULT_PRESET, *, num_threads: int | None = None,
                     **overrides: Any) -> FeatureExtractor:
    """Build the extractor for a preset name or a config; `overrides` replace config fields.

    num_threads: torch intra-op threads for XFeat (a process-wide setting, so only changed
    when given). SIFT ignores it.
    """
    if isinstance(preset_or_config, str):
        if preset_or_config not in PRESETS:
            raise ValueError(f"unknown feature preset {preset_or_config!r}, known: {sorted(PRESETS)}")
        config = PRESETS[preset_or_config]
    elif isinstance(preset_or_config, ExtractorConfig):
        config = preset_or_config
    else:
        raise TypeError(f"expected a preset name or an ExtractorConfig, got {type(preset_or_config).__name__}")
    if overrides:
        known = {field.name for field in dataclasses.fields(ExtractorConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"ExtractorConfig: unknown field(s) {unknown}, expected some of {sorted(known)}")
        config = dataclasses.replace(config, **overrides)
    if config.name == "xfeat":
        from pram_ros.features.xfeat import XFeatExtractor

        return XFeatExtractor(config, num_threads=num_threads)
    from pram_ros.features.sift import SiftExtractor

    return SiftExtractor(config)
