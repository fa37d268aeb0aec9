"""Loading a localizer: the map, its recognizer and its extractor, and a method by name.

`load_localizer(map_path, method=...)` is what the CLI, the node, the benchmarks and the
tools call. `load_parts` loads what every method shares once (the bench runs several
methods on one map), and `create_localizer` makes a method's localizer from them.
Methods: `pram` (recognition, registration, tracking), `pram-reloc` (recognition and
registration on every frame), `exhaustive` and `retrieval` (baselines.py).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from pram_ros.features import ExtractorConfig, FeatureExtractor, create_extractor
from pram_ros.features.base import resolve_device
from pram_ros.localization.config import LocalizerConfig
from pram_ros.mapping.mapfile import PramMap, load_map

METHODS = ("pram", "pram-reloc", "exhaustive", "retrieval", "retrieval-lg")
RETRIEVAL_METHODS = {"retrieval": "mutual-nn", "retrieval-lg": "lighterglue"}  # method: matcher


def map_extractor(pram_map: PramMap, num_threads: int | None = None, device: str | None = None) -> FeatureExtractor:
    """The extractor the map was built with (queries must use the same)."""
    settings = pram_map.extractor_config()
    if device is not None:
        settings = {**settings, "device": device}
    extractor = create_extractor(ExtractorConfig.from_dict(settings), num_threads=num_threads)
    extractor.prepare_for(*(int(v) for v in pram_map.camera_size[0]))  # not on the first frame
    return extractor


@dataclass
class LocalizerParts:
    """What every method on one map shares."""

    map_path: Path
    map: PramMap
    model: object | None  # RecognizerModel; None when only baselines run
    extractor: FeatureExtractor


def load_parts(map_path: str | Path, model_path: str | Path | None = None, *, with_model: bool = True,
               num_threads: int | None = None, device: str = "auto") -> LocalizerParts:
    """The map (MapFileError names the file), its recognizer (default MAP.recognizer.safetensors
    beside it; ModelFileError names the file) and its extractor on `device` (auto: cuda when
    present)."""
    from pram_ros.recognition.modelfile import default_model_path, load_model

    map_path = Path(map_path).expanduser()
    device = resolve_device(device)
    pram_map = load_map(map_path)
    extractor = map_extractor(pram_map, num_threads, device)  # first: it sets torch's thread count
    model = None
    if with_model:
        model_path = Path(model_path).expanduser() if model_path else default_model_path(map_path)
        model = load_model(model_path, [(str(map_path), pram_map)], device=device, runtime="auto")
    return LocalizerParts(map_path, pram_map, model, extractor)


def create_localizer(method: str, parts: LocalizerParts, config: LocalizerConfig | None = None,
                     database=None, background: bool = False):
    """The localizer of a method (METHODS). The retrieval methods need their RetrievalDatabase.
    `background`: pram's full frames of the track on a worker thread (background.py)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}, expected one of {list(METHODS)}")
    config = config or LocalizerConfig()
    if method in RETRIEVAL_METHODS:
        from pram_ros.localization.baselines import RetrievalLocalizer

        if database is None:
            raise ValueError(f"method {method!r} needs a retrieval database")
        return RetrievalLocalizer(parts.map, database, config, extractor=parts.extractor,
                                  matcher=RETRIEVAL_METHODS[method])
    if method == "exhaustive":
        from pram_ros.localization.baselines import ExhaustiveLocalizer

        return ExhaustiveLocalizer(parts.map, config, parts.extractor)
    from pram_ros.localization.localizer import Localizer

    if parts.model is None:
        raise ValueError(f"method {method!r} needs the map's recognizer")
    if method == "pram-reloc":
        config = replace(config, tracking=False)
    return Localizer(parts.map, parts.model.recognizer, config, parts.extractor, background=background)


def load_localizer(map_path: str | Path, model_path: str | Path | None = None, method: str = "pram",
                   config: LocalizerConfig | None = None, *, num_threads: int | None = None, device: str = "auto",
                   retrieval_db: str | Path | None = None):
    """A ready localizer: `load_localizer("demo/map.npz").process(rgb, stamp_ns)`.
    The retrieval methods read their database from `retrieval_db` (default MAP.retrieval.npz)."""
    from pram_ros.mapping.retrieval_db import default_database_path, load_retrieval_database

    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}, expected one of {list(METHODS)}")
    parts = load_parts(map_path, model_path, with_model=method in ("pram", "pram-reloc"), num_threads=num_threads,
                       device=device)
    database = None
    if method in RETRIEVAL_METHODS:
        database = load_retrieval_database(retrieval_db or default_database_path(parts.map_path), parts.map)
    return create_localizer(method, parts, config, database)
