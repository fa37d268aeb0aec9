"""Train the recognizer on a map's (or a map set's) labelled database images.

In: a `TrainingSet` (dataset.py) and a `TrainConfig`. Out: the trained `RecognizerNet`
and a `TrainReport` with losses, validation metrics and a majority-class baseline.

Validation holds out whole chunks of consecutive database frames (neighbouring frames
look alike, so single held-out frames would flatter the model). Each step draws a batch
of random keypoint subsets and augments them: the share of background keypoints varies,
positions get a random rotation, scale and shift plus pixel jitter. The loss is
cross-entropy with inverse-square-root class-frequency weights, so that background,
scarce on a textured map, keeps its recall. The same seed gives the same weights.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from pram_ros.features import Features
from pram_ros.mapping.mapfile import PramMap
from pram_ros.progress import progress
from pram_ros.recognition.dataset import (
    IGNORE,
    Example,
    LabelConfig,
    Scene,
    TrainingSet,
    build_training_set,
    database_images,
    label_space,
)
from pram_ros.recognition.metrics import RecognitionMetrics, scene_votes
from pram_ros.recognition.config import AugmentConfig, TrainConfig
from pram_ros.recognition.model import (
    Recognition,
    RecognizerConfig,
    RecognizerNet,
    normalize_positions,
)

logger = logging.getLogger(__name__)


@dataclass
class TrainReport:
    epochs: int
    steps: int
    seconds: float
    train_examples: int
    val_frames: int
    train_loss: list[float]
    val_loss: list[float]
    val_metrics: dict
    majority_baseline: dict
    class_weights: list[float]

    def to_dict(self) -> dict:
        return asdict(self)


def split_frames(training_set: TrainingSet, config: TrainConfig) -> tuple[list[Example], list[Example]]:
    """Train examples (every variant) and validation examples (the recorded images only)."""
    rng = np.random.default_rng(config.seed)
    held_out: set[tuple[int, int]] = set()
    for scene in range(len(training_set.scenes)):
        frames = sorted({e.frame for e in training_set.examples if e.scene == scene})
        chunks = [frames[i:i + config.val_chunk] for i in range(0, len(frames), config.val_chunk)]
        count = int(round(config.val_fraction * len(chunks)))
        if config.val_fraction > 0 and len(chunks) > 1:
            count = max(count, 1)
        for chunk in rng.choice(len(chunks), size=min(count, len(chunks) - 1), replace=False):
            held_out.update((scene, frame) for frame in chunks[chunk])
    train = [e for e in training_set.examples if (e.scene, e.frame) not in held_out]
    val = [e for e in training_set.examples if (e.scene, e.frame) in held_out and e.variant == 0]
    return train, val


def class_weights(examples: list[Example], num_classes: int) -> np.ndarray:
    counts = np.zeros(num_classes, np.float64)
    for example in examples:
        counts += np.bincount(example.labels[example.labels >= 0], minlength=num_classes)
    frequency = counts / max(counts.sum(), 1.0)
    weights = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(frequency, 1e-12)), 0.0)
    # Normalized so that the average weight per labelled keypoint is 1.
    return weights / max((weights * frequency).sum(), 1e-12)


def _augmented_positions(keypoints: np.ndarray, image_size: tuple[int, int], augment: AugmentConfig,
                         rng: np.random.Generator) -> np.ndarray:
    keypoints = keypoints + rng.normal(0.0, augment.jitter_px, keypoints.shape)
    positions = normalize_positions(torch.from_numpy(keypoints.astype(np.float32)), image_size).numpy()
    angle = np.deg2rad(rng.uniform(-augment.rotation_deg, augment.rotation_deg))
    scale = np.exp(rng.uniform(*np.log(augment.scale_range)))
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return (positions @ rotation.T + rng.uniform(-augment.shift, augment.shift, 2)).astype(np.float32)


def _sample(example: Example, tokens: int, augment: AugmentConfig, rng: np.random.Generator):
    """A random keypoint subset of one example: (descriptors, positions, labels) of up to `tokens`."""
    background = example.labels == 0
    keep = ~background | (rng.random(len(background)) < rng.uniform(*augment.background_keep_range))
    candidates = np.flatnonzero(keep)  # sorted by score, as the features are
    if len(candidates) > tokens:
        if rng.random() < augment.top_score_probability:
            candidates = candidates[:tokens]
        else:
            candidates = np.sort(rng.choice(candidates, size=tokens, replace=False))
    positions = _augmented_positions(example.keypoints[candidates], example.image_size, augment, rng)
    return (example.descriptors[candidates].astype(np.float32), positions,
            example.labels[candidates].astype(np.int64))


def _batch(examples: list[Example], tokens: int, augment: AugmentConfig, rng: np.random.Generator):
    samples = [_sample(e, tokens, augment, rng) for e in examples]
    length = max(1, max(len(s[2]) for s in samples))
    dim = samples[0][0].shape[1]
    descriptors = np.zeros((len(samples), length, dim), np.float32)
    positions = np.zeros((len(samples), length, 2), np.float32)
    labels = np.full((len(samples), length), IGNORE, np.int64)
    valid = np.zeros((len(samples), length), bool)
    for row, (d, p, y) in enumerate(samples):
        descriptors[row, :len(y)], positions[row, :len(y)], labels[row, :len(y)], valid[row, :len(y)] = d, p, y, True
    return (torch.from_numpy(descriptors), torch.from_numpy(positions), torch.from_numpy(labels),
            torch.from_numpy(valid))


def _learning_rate(config: TrainConfig, progress: float) -> float:
    if progress < config.warmup_fraction:
        return config.learning_rate * max(progress / config.warmup_fraction, 0.01)
    remaining = (progress - config.warmup_fraction) / max(1.0 - config.warmup_fraction, 1e-9)
    return config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(remaining, 1.0)))


@torch.inference_mode()
def validate(net: RecognizerNet, examples: list[Example], training_set: TrainingSet, weights: torch.Tensor,
             max_keypoints: int) -> tuple[float, dict]:
    """Loss and RecognitionMetrics on the best-scoring `max_keypoints` of each example, unaugmented,
    plus keypoint accuracy and balanced (per-class mean) accuracy over every labelled keypoint."""
    was_training = net.training
    net.eval()
    metrics = RecognitionMetrics()
    offsets = [s.label_offset for s in training_set.scenes]
    counts = [s.num_landmarks for s in training_set.scenes]
    losses, predicted_known, truth_known = [], [], []
    for example in examples:
        count = min(len(example.labels), max_keypoints)
        truth = example.labels[:count].astype(np.int64)
        if count == 0:
            probabilities = np.zeros((0, training_set.num_classes), np.float32)
        else:
            keypoints = torch.from_numpy(example.keypoints[:count])
            logits = net(torch.from_numpy(example.descriptors[:count].astype(np.float32))[None],
                         normalize_positions(keypoints, example.image_size)[None])[0]
            if (truth != IGNORE).any():
                losses.append(float(F.cross_entropy(logits, torch.from_numpy(truth), weight=weights,
                                                    ignore_index=IGNORE)))
            probabilities = torch.softmax(logits, -1).numpy()
        labels = probabilities.argmax(axis=1)
        known = truth != IGNORE
        predicted_known.append(labels[known])
        truth_known.append(truth[known])
        recognition = Recognition(np.arange(count), probabilities, labels,
                                  np.bincount(labels, minlength=training_set.num_classes))
        metrics.add(recognition, truth, example.visible, example.scene if len(counts) > 1 else None,
                    scene_votes(recognition.votes, offsets, counts))
    net.train(was_training)
    summary = metrics.summary()
    predicted, truth = np.concatenate(predicted_known), np.concatenate(truth_known)
    if len(truth):
        summary["keypoint_accuracy"] = round(float(np.mean(predicted == truth)), 4)
        summary["balanced_accuracy"] = round(_balanced_accuracy(predicted, truth), 4)
    return (float(np.mean(losses)) if losses else float("nan")), summary


def majority_baseline(train: list[Example], val: list[Example], num_classes: int, max_keypoints: int) -> dict:
    """What always answering the most common training label scores on the validation keypoints."""
    counts = np.zeros(num_classes, np.int64)
    for example in train:
        counts += np.bincount(example.labels[example.labels >= 0], minlength=num_classes)
    majority = int(np.argmax(counts))
    truth = np.concatenate([e.labels[:max_keypoints] for e in val]) if val else np.zeros(0, np.int16)
    truth = truth[truth != IGNORE].astype(np.int64)
    if not len(truth):
        return {"label": majority, "keypoint_accuracy": None, "balanced_accuracy": None}
    return {"label": majority, "keypoint_accuracy": round(float(np.mean(truth == majority)), 4),
            "balanced_accuracy": round(_balanced_accuracy(np.full_like(truth, majority), truth), 4)}


def _balanced_accuracy(predicted: np.ndarray, truth: np.ndarray) -> float:
    """Mean over the classes present in `truth` of the share of their keypoints given that class."""
    return float(np.mean([np.mean(predicted[truth == c] == c) for c in np.unique(truth)]))


def train(training_set: TrainingSet, config: TrainConfig | None = None,
          model_overrides: dict | None = None) -> tuple[RecognizerNet, TrainReport]:
    config = config or TrainConfig()
    if not training_set.examples:
        raise ValueError("no training examples: the map has no database images")
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model_config = RecognizerConfig.from_preset(config.preset, training_set.num_classes, training_set.descriptor_dim,
                                                **(model_overrides or {}))
    net = RecognizerNet(model_config)
    train_examples, val_examples = split_frames(training_set, config)
    weights_np = class_weights(train_examples, training_set.num_classes)
    weights = torch.from_numpy(weights_np.astype(np.float32))
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(train_examples) / config.batch_size))
    total_steps = steps_per_epoch * config.epochs
    budget_s = config.minutes * 60.0 if config.minutes else None
    token_choices = np.arange(config.min_tokens, config.max_tokens + 1, 64) if config.max_tokens > config.min_tokens \
        else np.array([config.max_tokens])

    report = TrainReport(0, 0, 0.0, len(train_examples), len(val_examples), [], [], {},
                         majority_baseline(train_examples, val_examples, training_set.num_classes,
                                           model_config.max_keypoints),
                         [round(float(w), 4) for w in weights_np])
    start = time.perf_counter()
    net.train()
    bar = progress(total=budget_s if budget_s else total_steps, desc="train", unit="s" if budget_s else "step",
               leave=False, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} {unit} [{elapsed}<{remaining}{postfix}]")
    step, epoch, done = 0, 0, False
    while not done:
        order = rng.permutation(len(train_examples))
        epoch_losses = []
        for first in range(0, len(order), config.batch_size):
            elapsed = time.perf_counter() - start
            fraction = elapsed / budget_s if budget_s else step / total_steps
            if fraction >= 1.0:
                done = True
                break
            for group in optimizer.param_groups:
                group["lr"] = _learning_rate(config, fraction)
            batch = [train_examples[i] for i in order[first:first + config.batch_size]]
            descriptors, positions, labels, valid = _batch(batch, int(rng.choice(token_choices)), config.augment, rng)
            logits = net(descriptors, positions, valid)
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), weight=weights, ignore_index=IGNORE)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            optimizer.step()
            epoch_losses.append(float(loss.detach()))
            step += 1
            bar.update((min(time.perf_counter() - start, budget_s) - bar.n) if budget_s else 1)
        if not epoch_losses:
            break
        epoch += 1
        report.train_loss.append(round(float(np.mean(epoch_losses)), 4))
        if val_examples:
            val_loss, val_metrics = validate(net, val_examples, training_set, weights, model_config.max_keypoints)
            report.val_loss.append(round(val_loss, 4))
            report.val_metrics = val_metrics
            bar.set_postfix(loss=report.train_loss[-1], val_loss=round(val_loss, 3),
                                 val_acc=val_metrics["landmark_accuracy"], top3=val_metrics["top3_recall"])
        else:
            bar.set_postfix(loss=report.train_loss[-1])
        logger.info("epoch %d: loss %.4f%s", epoch, report.train_loss[-1],
                    f", val loss {report.val_loss[-1]:.4f}, val {report.val_metrics}" if val_examples else "")
        if not budget_s and step >= total_steps:
            done = True
    bar.close()
    net.eval()
    report.epochs, report.steps = epoch, step
    report.seconds = round(time.perf_counter() - start, 2)
    return net, report


def train_on_maps(maps: list[tuple[str, PramMap]], images: list[str | Path | None] | None = None,
                  config: TrainConfig | None = None, labels: LabelConfig | None = None,
                  model_overrides: dict | None = None,
                  known_features: list[dict[str, Features]] | None = None,
                  ) -> tuple[RecognizerNet, TrainReport, list[Scene], float]:
    """The whole of `pram train`: label each map's database images, train one model over
    them all. Returns the net, its report, the label space and the data-preparation seconds.
    `known_features`: see build_training_set."""
    config = config or TrainConfig()
    labels = labels or LabelConfig(seed=config.seed)
    names = [Path(path).name.removesuffix(Path(path).suffix) for path, _ in maps]
    if len(set(names)) != len(names):
        names = [f"{name}_{i}" for i, name in enumerate(names)]
    map_list = [pram_map for _, pram_map in maps]
    image_sets = [database_images(pram_map, source) for pram_map, source in
                  zip(map_list, images if images is not None else [None] * len(maps))]
    scenes = label_space(map_list, names)
    start = time.perf_counter()
    training_set = build_training_set(map_list, image_sets, scenes, labels, num_threads=config.num_threads,
                                      known_features=known_features)
    prepare_s = time.perf_counter() - start
    net, report = train(training_set, config, model_overrides)
    return net, report, scenes, prepare_s


def train_and_save(maps: list[tuple[str, PramMap]], images: list[str | Path | None] | None, out: Path,
                   config: TrainConfig, labels: LabelConfig | None = None,
                   known_features: list[dict[str, Features]] | None = None) -> str:
    """`train_on_maps`, then the model file at `out` (with how it was trained); -> the
    training summary to print."""
    from pram_ros.recognition.modelfile import save_model

    labels = labels or LabelConfig(seed=config.seed)
    net, report, scenes, prepare_s = train_on_maps(maps, images, config, labels, known_features=known_features)
    warning = majority_warning(report, [m.num_landmarks for _, m in maps])
    training = {"config": asdict(config), "labels": asdict(labels), "report": report.to_dict(),
                "prepare_s": round(prepare_s, 2), "beats_majority_class": not warning}
    save_model(out, net, scenes, maps[0][1].meta["extractor"], training)
    summary = describe_training(net, report, scenes, prepare_s)
    if warning:
        logger.warning("%s: %s", out, warning)
        summary += f"\n  WARNING: {warning}"
    return summary


# Share of the way from the majority class's balanced accuracy to 1 that a recognizer must
# cover (a one-room test map: 0.48 learned, 0.26 with its landmarks shuffled, 0.20 majority).
MAJORITY_MARGIN = 0.25


def majority_warning(report: TrainReport, landmarks_per_map: list[int]) -> str:
    """What to change when the recognizer does no better on held-out views than always
    answering the most common class ("" when it does, or when nothing was held out)."""
    metrics, baseline = report.val_metrics, report.majority_baseline
    ours, majority = metrics.get("balanced_accuracy"), baseline.get("balanced_accuracy")
    if ours is None or majority is None or ours >= majority + MAJORITY_MARGIN * (1.0 - majority):
        return ""
    return (f"the recognizer does not beat always answering the majority class on held-out views (balanced "
            f"accuracy {ours:.3f} against {majority:.3f}; landmark keypoint accuracy "
            f"{_fmt(metrics.get('landmark_accuracy'))}): it will rarely recognize a landmark. Rebuild the map with "
            f"fewer landmarks (pram map build --landmarks N; it has {', '.join(map(str, landmarks_per_map))}), map "
            f"with more images, or train longer (pram train --minutes)")


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def describe_training(net: RecognizerNet, report: TrainReport, scenes: list[Scene], prepare_s: float) -> str:
    config = net.config
    parameters = sum(p.numel() for p in net.parameters())
    lines = [
        f"recognizer: {config.layers} layers, d={config.dim}, {config.heads} heads, {parameters / 1e6:.2f}M parameters, "
        f"{config.num_classes - 1} landmarks + background over {len(scenes)} scene(s): "
        + ", ".join(f"{s.name} ({s.num_landmarks})" for s in scenes),
        f"  data:     {report.train_examples} training examples, {report.val_frames} held-out frames, "
        f"prepared in {prepare_s:.0f} s",
        f"  training: {report.epochs} epochs, {report.steps} steps in {report.seconds:.0f} s; "
        f"loss {report.train_loss[0] if report.train_loss else float('nan'):.3f} -> "
        f"{report.train_loss[-1] if report.train_loss else float('nan'):.3f}",
    ]
    metrics = report.val_metrics
    if metrics:
        lines.append(
            f"  validation: loss {report.val_loss[0]:.3f} -> {report.val_loss[-1]:.3f}; top-3 recall "
            f"{_fmt(metrics.get('top3_recall'))}, landmark keypoint accuracy {_fmt(metrics.get('landmark_accuracy'))}, "
            f"background precision {_fmt(metrics.get('background_precision'))} recall "
            f"{_fmt(metrics.get('background_recall'))}")
        baseline = report.majority_baseline
        lines.append(
            f"  keypoint accuracy {_fmt(metrics.get('keypoint_accuracy'))}, balanced over classes "
            f"{_fmt(metrics.get('balanced_accuracy'))}; always answering the majority class gives "
            f"{_fmt(baseline.get('keypoint_accuracy'))} and {_fmt(baseline.get('balanced_accuracy'))}"
            + (f"; scene accuracy {_fmt(metrics.get('scene_accuracy'))}" if "scene_accuracy" in metrics else ""))
    return "\n".join(lines)
