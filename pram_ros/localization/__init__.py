"""Localization: one image in, a gated pose or LOST out (see localizer.py for the map of
this package). The public API:

    from pram_ros.localization import LocalizerConfig, load_localizer
    localizer = load_localizer("demo/map.npz", method="pram")
    result = localizer.process(rgb, stamp_ns)
"""

from pram_ros.localization.config import LocalizerConfig
from pram_ros.localization.loading import METHODS, LocalizerParts, create_localizer, load_localizer, load_parts
from pram_ros.localization.localizer import Localizer
from pram_ros.localization.result import LOST_VARIANCE, Reason, Result, State

__all__ = ["LOST_VARIANCE", "METHODS", "Localizer", "LocalizerConfig", "LocalizerParts", "Reason", "Result", "State", "create_localizer",
           "load_localizer", "load_parts"]
