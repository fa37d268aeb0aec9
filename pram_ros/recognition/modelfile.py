"""The recognizer file: weights in safetensors (no pickle), settings in its metadata.

In: a trained `RecognizerNet`, the label space (`Scene`s) it was trained on and the
feature extractor its descriptors come from. Out: one `.safetensors` file; `load_model`
reads it back, checks format, version, configuration and weights, and, given the maps it
should serve, checks that it was trained on exactly those maps (by content hash).

Metadata keys (all strings, JSON where structured): format "pram_ros.recognizer",
version "1", config (RecognizerConfig), scenes ([{name, fingerprint, num_landmarks,
label_offset}]), extractor (the maps' extractor settings), training (the train settings
and report).

By default the model lives beside its map: `office.npz` -> `office.recognizer.safetensors`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from pram_ros.mapping.mapfile import PramMap, map_fingerprint
from pram_ros.recognition.dataset import Scene
from pram_ros.recognition.model import Recognizer, RecognizerConfig, RecognizerNet

MODEL_FORMAT = "pram_ros.recognizer"
MODEL_VERSION = 1
MODEL_SUFFIX = ".recognizer.safetensors"


class ModelFileError(ValueError):
    """A recognizer file that cannot be used; the message is one line naming the file."""


@dataclass
class RecognizerModel:
    recognizer: Recognizer
    scenes: list[Scene]
    extractor: dict
    training: dict

    @property
    def config(self) -> RecognizerConfig:
        return self.recognizer.config


def default_model_path(map_path: str | Path) -> Path:
    map_path = Path(map_path)
    return map_path.with_name(map_path.name.removesuffix(map_path.suffix) + MODEL_SUFFIX)


def save_model(path: str | Path, net: RecognizerNet, scenes: list[Scene], extractor: dict,
               training: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if sum(s.num_landmarks for s in scenes) + 1 != net.config.num_classes:
        raise ValueError(f"save_model: {net.config.num_classes} classes, but the scenes hold "
                         f"{sum(s.num_landmarks for s in scenes)} landmarks")
    metadata = {
        "format": MODEL_FORMAT,
        "version": str(MODEL_VERSION),
        "config": json.dumps(net.config.to_dict()),
        "scenes": json.dumps([s.to_dict() for s in scenes]),
        "extractor": json.dumps(extractor, sort_keys=True),
        "training": json.dumps(training or {}, sort_keys=True, default=str),
    }
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in net.state_dict().items()}
    temporary = path.with_name(path.name + ".partial")
    save_file(state, str(temporary), metadata=metadata)
    temporary.replace(path)  # never leaves a half-written model under the real name
    return path


def _metadata(path: Path) -> dict[str, str]:
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
        if len(head) < 8:
            raise ModelFileError(f"{path}: not a recognizer file (truncated: {path.stat().st_size} bytes)")
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"{path}: not a readable safetensors recognizer file ({_one_line(exc)})") from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else type(exc).__name__


def load_model(path: str | Path, maps: list[tuple[str, PramMap]] | None = None, device: str = "cpu",
               dtype: torch.dtype = torch.float32, runtime: str = "torch") -> RecognizerModel:
    """Read and check a recognizer file; `maps` ([(path, map)]) must be the maps it was trained on.
    `runtime`: `Recognizer`'s (localization uses "auto")."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such recognizer file: train one with `pram train --map MAP`")
    metadata = _metadata(path)
    if metadata.get("format") != MODEL_FORMAT:
        raise ModelFileError(f"{path}: not a pram_ros recognizer (format {metadata.get('format')!r})")
    if metadata.get("version") != str(MODEL_VERSION):
        raise ModelFileError(f"{path}: recognizer file version {metadata.get('version')!r}, this pram_ros reads "
                             f"version {MODEL_VERSION}: retrain it with `pram train`")
    try:
        config = RecognizerConfig.from_dict(json.loads(metadata["config"]))
        scenes = [Scene(**s) for s in json.loads(metadata["scenes"])]
        extractor = json.loads(metadata.get("extractor", "{}"))
        training = json.loads(metadata.get("training", "{}"))
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: bad metadata ({_one_line(exc)})") from None
    if sum(s.num_landmarks for s in scenes) + 1 != config.num_classes:
        raise ModelFileError(f"{path}: {config.num_classes} classes, but its scenes hold "
                             f"{sum(s.num_landmarks for s in scenes)} landmarks")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: cannot read weights ({_one_line(exc)})") from None
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"{path}: {name}: non-finite weights")
    net = RecognizerNet(config)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: weights do not fit the configuration ({_one_line(exc)})") from None
    if maps is not None:
        check_maps(path, scenes, maps)
    return RecognizerModel(Recognizer(net, device=device, dtype=dtype, runtime=runtime), scenes, extractor,
                           training)


def check_maps(path: Path, scenes: list[Scene], maps: list[tuple[str, PramMap]]) -> None:
    if len(maps) != len(scenes):
        raise ModelFileError(f"{path}: trained on {len(scenes)} map(s) ({', '.join(s.name for s in scenes)}), "
                             f"given {len(maps)}")
    for scene, (map_path, pram_map) in zip(scenes, maps):
        fingerprint = map_fingerprint(pram_map)
        if fingerprint != scene.fingerprint:
            raise ModelFileError(
                f"{path}: trained on another map than {map_path} (map hash {fingerprint[:12]}, the model's "
                f"{scene.name!r} has {scene.fingerprint[:12]}): retrain with `pram train --map {map_path}`")
