"""Recognizer speed and accuracy per runtime and numeric variant: torch in float32, bfloat16
autocast and int8; ONNX Runtime; OpenVINO in f32 and bf16.

In: a loaded recognizer, query images with ground-truth poses and depth, and the map.
Out: one row per variant: p50/p90 milliseconds of `recognize` (features are extracted
once beforehand and not timed), top-3 recall and landmark-keypoint accuracy, and how often
its labels agree with torch float32's. int8 is PyTorch dynamic quantization of the linear
layers (attention itself stays in float32). A runtime that does not load gives a row with
its error.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pram_ros.progress import progress

from pram_ros.features import FeatureExtractor, Features
from pram_ros.io.images import load_depth
from pram_ros.io.imageset import images_from_folder
from pram_ros.mapping.mapfile import PramMap
from pram_ros.recognition.dataset import LabelConfig
from pram_ros.recognition.evaluate import query_truth
from pram_ros.recognition.metrics import RecognitionMetrics
from pram_ros.recognition.model import Recognizer

VARIANTS = ("float32", "bfloat16", "int8", "onnxruntime", "openvino-f32", "openvino-bf16")
EXPORTED = {"onnxruntime": ("onnxruntime", "f32"), "openvino-f32": ("openvino", "f32"),
            "openvino-bf16": ("openvino", "bf16")}


@dataclass
class Query:
    features: Features
    truth: np.ndarray | None  # per keypoint of the first max_keypoints
    visible: np.ndarray


def load_queries(extractor: FeatureExtractor, pram_map: PramMap, label_offset: int, images_dir: Path,
                 gt_tum: Path, max_keypoints: int, step: int = 1) -> list[Query]:
    images = images_from_folder(images_dir, None, gt_tum)
    depth_dir = images_dir.parent / "depth"
    labels = LabelConfig()
    queries = []
    for index, rgb in progress(images.frames(), total=len(images.names), desc="queries", unit="image", leave=False):
        if index % step:
            continue
        features = extractor.extract(rgb)
        truth = query_truth(pram_map, label_offset, np.linalg.inv(images.world_from_cam[index]),
                            load_depth(depth_dir / images.names[index]))
        queries.append(Query(features, truth.label(features.keypoints[:max_keypoints], labels),
                             truth.visible_landmarks))
    return queries


def variant_recognizer(recognizer: Recognizer, variant: str) -> Recognizer:
    if variant == "float32":
        return Recognizer(recognizer.net, device=str(recognizer.device))
    if variant in EXPORTED:
        runtime, precision = EXPORTED[variant]
        return Recognizer(recognizer.net, device="cpu", runtime=runtime, precision=precision)
    if variant == "bfloat16":
        return Recognizer(recognizer.net, device=str(recognizer.device), dtype=torch.bfloat16)
    if variant == "int8":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyTorch marks its quantized tensors deprecated
            net = torch.ao.quantization.quantize_dynamic(copy.deepcopy(recognizer.net).cpu(), {torch.nn.Linear},
                                                         dtype=torch.qint8)
        net.config = recognizer.net.config
        return Recognizer(net, device="cpu")
    raise ValueError(f"unknown variant {variant!r}, known: {VARIANTS}")


def bench_recognizer(recognizer: Recognizer, queries: list[Query], variants=VARIANTS, warmup: int = 3) -> list[dict]:
    rows, reference = [], None
    for variant in variants:
        try:
            candidate = variant_recognizer(recognizer, variant)
        except RuntimeError as error:
            rows.append({"variant": variant, "error": str(error)})
            continue
        for query in queries[:warmup]:
            candidate.recognize(query.features)
        times, labels, metrics = [], [], RecognitionMetrics()
        for query in queries:
            start = time.perf_counter()
            recognition = candidate.recognize(query.features)
            times.append(1000.0 * (time.perf_counter() - start))
            labels.append(recognition.labels)
            metrics.add(recognition, query.truth, query.visible)
        summary = metrics.summary()
        agreement = None
        if reference is None:
            reference = labels
        else:
            agreement = float(np.mean(np.concatenate(labels) == np.concatenate(reference))) if labels else None
        rows.append({
            "variant": variant,
            "p50_ms": round(float(np.percentile(times, 50)), 2),
            "p90_ms": round(float(np.percentile(times, 90)), 2),
            "top3_recall": summary["top3_recall"],
            "landmark_accuracy": summary["landmark_accuracy"],
            "label_agreement_with_float32": None if agreement is None else round(agreement, 4),
        })
    return rows


def format_rows(rows: list[dict], keypoints: int, threads: int) -> str:
    header = f"recognizer, {keypoints} keypoints per image, {threads} threads"
    lines = [header, f"  {'variant':<14}{'p50 ms':>9}{'p90 ms':>9}{'top-3 recall':>14}{'kp accuracy':>13}{'agrees':>9}"]
    for row in rows:
        if "error" in row:
            lines.append(f"  {row['variant']:<14}not available: {row['error']}")
            continue
        agreement = row["label_agreement_with_float32"]
        lines.append(f"  {row['variant']:<14}{row['p50_ms']:>9.1f}{row['p90_ms']:>9.1f}"
                     f"{row['top3_recall'] if row['top3_recall'] is not None else float('nan'):>14.3f}"
                     f"{row['landmark_accuracy'] if row['landmark_accuracy'] is not None else float('nan'):>13.3f}"
                     f"{'-' if agreement is None else f'{agreement:.3f}':>9}")
    return "\n".join(lines)
