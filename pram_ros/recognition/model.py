"""The landmark recognizer: a transformer over a query image's sparse keypoints.

In: one image's keypoints (pixels), descriptors and image size. Each keypoint is a token:
its descriptor projected to `dim` dimensions plus a Fourier encoding of its normalized
position. `layers` pre-norm self-attention blocks (built on `scaled_dot_product_attention`,
which is faster on CPU than `nn.TransformerEncoder`'s fast path) mix the tokens, and a
linear head gives per-keypoint logits over K+1 classes: 0 is background, 1..K the map's
landmarks (in a map set, the landmarks of every scene, one after another).

Out: `Recognition` with per-keypoint probabilities and labels, and per-landmark vote
counts that rank the landmarks registration should try.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from torch import nn

from pram_ros.features import Features
from pram_ros.recognition.config import PRESETS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecognizerConfig:
    num_classes: int  # K + 1: background and every landmark
    descriptor_dim: int
    dim: int = 96
    layers: int = 3
    heads: int = 2
    mlp_ratio: float = 2.0
    position_frequencies: int = 6
    max_keypoints: int = 1024  # inference keeps the best-scoring ones
    dropout: float = 0.0
    descriptor_mlp: bool = True  # a per-token MLP on the descriptor before attention

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ValueError(f"RecognizerConfig: num_classes must be >= 2 (background + a landmark), got {self.num_classes}")
        for name in ("descriptor_dim", "dim", "layers", "heads", "position_frequencies", "max_keypoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"RecognizerConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.dim % self.heads:
            raise ValueError(f"RecognizerConfig: dim {self.dim} is not divisible by heads {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"RecognizerConfig: dropout must be in [0, 1), got {self.dropout}")

    @classmethod
    def from_preset(cls, preset: str, num_classes: int, descriptor_dim: int, **overrides) -> RecognizerConfig:
        if preset not in PRESETS:
            raise ValueError(f"unknown recognizer preset {preset!r}, known: {sorted(PRESETS)}")
        return cls(num_classes=num_classes, descriptor_dim=descriptor_dim, **{**PRESETS[preset], **overrides})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RecognizerConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"RecognizerConfig: unknown fields {sorted(unknown)}")
        return cls(**data)

    def with_max_keypoints(self, max_keypoints: int) -> RecognizerConfig:
        return replace(self, max_keypoints=max_keypoints)


def normalize_positions(keypoints: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Pixels -> about [-1, 1], centred, scaled by the longer side so the aspect ratio is kept."""
    width, height = image_size
    centre = keypoints.new_tensor([(width - 1) / 2.0, (height - 1) / 2.0])
    return (keypoints - centre) / (max(width, height) / 2.0)


class Block(nn.Module):
    """Pre-norm self-attention and MLP, with residuals."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.dropout = dropout

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(batch, tokens, 3, self.heads, dim // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, heads, N, dim/heads]
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                                  dropout_p=self.dropout if self.training else 0.0)
        x = x + self.proj(attended.transpose(1, 2).reshape(batch, tokens, dim))
        return x + self.mlp(self.norm2(x))


class RecognizerNet(nn.Module):
    """Keypoint tokens -> per-keypoint class logits. Batched and padded: `valid` marks real tokens."""

    def __init__(self, config: RecognizerConfig):
        super().__init__()
        self.config = config
        if config.descriptor_mlp:
            self.descriptor_proj = nn.Sequential(nn.Linear(config.descriptor_dim, 2 * config.dim), nn.GELU(),
                                                 nn.Linear(2 * config.dim, config.dim))
        else:
            self.descriptor_proj = nn.Linear(config.descriptor_dim, config.dim)
        self.position_proj = nn.Linear(4 * config.position_frequencies, config.dim)
        self.register_buffer(
            "frequencies", math.pi * 2.0 ** torch.arange(config.position_frequencies, dtype=torch.float32),
            persistent=False,
        )
        self.blocks = nn.ModuleList(
            Block(config.dim, config.heads, config.mlp_ratio, config.dropout) for _ in range(config.layers)
        )
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.num_classes)

    def encode_positions(self, positions: torch.Tensor) -> torch.Tensor:
        angles = positions.unsqueeze(-1) * self.frequencies  # [B, N, 2, F]
        return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)  # [B, N, 4F]

    def forward(self, descriptors: torch.Tensor, positions: torch.Tensor,
                valid: torch.Tensor | None = None) -> torch.Tensor:
        """descriptors [B, N, D], positions [B, N, 2] normalized, valid [B, N] bool -> logits [B, N, C]."""
        x = self.descriptor_proj(descriptors) + self.position_proj(self.encode_positions(positions))
        # Padding tokens are never attended to; a fully padded row still attends to itself
        # (its output is ignored) so that softmax never sees a row of -inf.
        attn_mask = None
        if valid is not None and not bool(valid.all()):
            attn_mask = valid[:, None, None, :] | torch.eye(valid.shape[1], dtype=torch.bool, device=valid.device)
        for block in self.blocks:
            x = block(x, attn_mask)
        return self.head(self.norm(x))


@dataclass
class Recognition:
    """What the recognizer says about one image's keypoints.

    keypoint_indices [M]: which of the input features were used (the best-scoring M).
    probabilities [M x C]: per keypoint, over background (column 0) and landmarks 1..K.
    labels [M]: the most probable class of each keypoint (0 = background).
    votes [C]: keypoints per class (votes[0] counts background).
    """

    keypoint_indices: np.ndarray
    probabilities: np.ndarray
    labels: np.ndarray
    votes: np.ndarray

    @property
    def background_share(self) -> float:
        return float(self.votes[0] / max(len(self.labels), 1))

    def ranked_landmarks(self, min_votes: int = 1) -> np.ndarray:
        """Landmark ids (1..K), most votes first; ties broken by the smaller id."""
        counts = self.votes[1:]
        order = np.lexsort((np.arange(len(counts)), -counts))
        return (order[counts[order] >= min_votes] + 1).astype(np.int64)


RUNTIMES = ("auto", "torch", "openvino", "onnxruntime")
# "auto" on the CPU, first that loads. OpenVINO in bf16 took 7.6 ms p50 against torch's
# 13 ms, with top-1 labels agreeing 0.999 (`pram bench --stage recognition`).
AUTO_RUNTIMES = ("openvino", "onnxruntime")


class Recognizer:
    """Inference wrapper: `recognize(features)` on one image. Holds the net in eval mode.

    runtime: "torch", or on the CPU a runtime from `pram_ros.inference` running the net
    exported with any number of keypoints ("auto": the first of AUTO_RUNTIMES that loads,
    else torch, with a log line). precision "auto": bf16 on OpenVINO where the CPU computes
    it natively, f32 elsewhere."""

    def __init__(self, net: RecognizerNet, device: str = "cpu", dtype: torch.dtype = torch.float32,
                 runtime: str = "torch", precision: str = "auto"):
        if runtime not in RUNTIMES:
            raise ValueError(f"recognizer runtime: expected one of {RUNTIMES}, got {runtime!r}")
        self.net = net.to(device).eval()
        self.device = torch.device(device)
        self.dtype = dtype  # torch.bfloat16 runs under autocast
        self.runtime = "torch"
        self.precision = "f32" if dtype == torch.float32 else str(dtype).removeprefix("torch.")
        self._session = None
        if runtime != "torch" and self.device.type == "cpu":
            self._session = self._exported(runtime, precision)

    def _exported(self, runtime: str, precision: str):
        from pram_ros.inference import RuntimeUnavailable, cpu_computes_bf16, create_session, onnx_bytes

        example = (torch.zeros(1, 8, self.config.descriptor_dim), torch.zeros(1, 8, 2))
        model = onnx_bytes(self.net, example, ["descriptors", "positions"], ["logits"],
                           {"descriptors": {1: "keypoints"}, "positions": {1: "keypoints"}, "logits": {1: "keypoints"}})
        errors = []
        for candidate in AUTO_RUNTIMES if runtime == "auto" else (runtime,):
            chosen = precision
            if precision == "auto":
                chosen = "bf16" if candidate == "openvino" and cpu_computes_bf16() else "f32"
            try:
                session = create_session(candidate, model, torch.get_num_threads(), chosen)
            except RuntimeUnavailable as error:
                errors.append(str(error))
                continue
            self.runtime, self.precision = candidate, chosen
            logger.info("the recognizer runs on %s (%s)", candidate, chosen)
            return session
        if runtime != "auto":
            raise RuntimeError(f"the recognizer on {runtime}: {errors[0]}")
        logger.warning("the recognizer runs on torch: %s", "; ".join(errors))
        return None

    @property
    def config(self) -> RecognizerConfig:
        return self.net.config

    @property
    def num_landmarks(self) -> int:
        return self.config.num_classes - 1

    @torch.inference_mode()
    def recognize(self, features: Features, max_keypoints: int | None = None) -> Recognition:
        limit = self.config.max_keypoints if max_keypoints is None else max_keypoints
        count = min(len(features), limit)
        classes = self.config.num_classes
        if count == 0:
            return Recognition(np.zeros(0, np.int64), np.zeros((0, classes), np.float32),
                               np.zeros(0, np.int64), np.zeros(classes, np.int64))
        if features.descriptor_dim != self.config.descriptor_dim:
            raise ValueError(f"recognizer expects {self.config.descriptor_dim}-d descriptors, "
                             f"got {features.descriptor_dim}-d: the features come from another extractor")
        # Features are sorted by score, so the first `count` are the best.
        if self._session is not None:
            # No torch op around the runtime: torch's idle threads spin after one and slow
            # the runtime's (2 cores, `pram bench --stage recognition`: 11.9 ms p50 with them, 7.6 without).
            width, height = features.image_size
            centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0], np.float32)
            positions = (features.keypoints[:count] - centre) / (max(width, height) / 2.0)
            logits = self._session.run([features.descriptors[None, :count], positions[None]])[0][0]
            logits = logits - logits.max(axis=1, keepdims=True)
            probabilities = np.exp(logits)
            probabilities /= probabilities.sum(axis=1, keepdims=True)
        else:
            keypoints = torch.from_numpy(features.keypoints[:count]).to(self.device)
            descriptors = torch.from_numpy(features.descriptors[:count]).to(self.device)
            positions = normalize_positions(keypoints, features.image_size)
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
                logits = self.net(descriptors[None], positions[None])[0]
            probabilities = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        labels = probabilities.argmax(axis=1)
        votes = np.bincount(labels, minlength=classes).astype(np.int64)
        return Recognition(np.arange(count, dtype=np.int64), probabilities, labels, votes)
