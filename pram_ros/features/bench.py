"""Feature extraction speed per runtime: torch against ONNX Runtime and OpenVINO (XFeat's network).

In: an extractor configuration (a map's) and images. Out: one row per runtime: p50/p90
milliseconds of `extract` over every image, the runtimes interleaved image by image (the
machine's speed drifts between runs), and how well its features agree with torch's
(keypoints within 1 px, the smallest descriptor cosine of those).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from pram_ros.features.base import ExtractorConfig, Features, create_extractor

RUNTIMES = ("torch", "onnxruntime", "openvino")


def agreement(reference: Features, other: Features) -> tuple[float, float]:
    """(share of the reference's keypoints with one of `other`'s within 1 px, the smallest
    descriptor cosine over those pairs)."""
    if not len(reference) or not len(other):
        return (1.0, 1.0) if len(reference) == len(other) else (0.0, 0.0)
    distance = np.linalg.norm(reference.keypoints[:, None] - other.keypoints[None], axis=2)
    nearest = distance.argmin(axis=1)
    close = distance[np.arange(len(reference)), nearest] <= 1.0
    if not close.any():
        return 0.0, 0.0
    cosine = np.sum(reference.descriptors[close] * other.descriptors[nearest[close]], axis=1)
    return float(close.mean()), float(cosine.min())


def bench_runtimes(config: ExtractorConfig, images: list[np.ndarray], num_threads: int, rounds: int = 2) -> list[dict]:
    """Every runtime that loads, over every image `rounds` times (after one uncounted
    frame each)."""
    extractors = {}
    for runtime in RUNTIMES:
        try:
            extractors[runtime] = create_extractor(dataclasses.replace(config, runtime=runtime),
                                                   num_threads=num_threads)
        except RuntimeError as error:
            extractors[runtime] = error
    loaded = {name: e for name, e in extractors.items() if not isinstance(e, Exception)}
    for extractor in loaded.values():
        extractor.extract(images[0])
    times = {name: [] for name in loaded}
    worst = {name: (1.0, 1.0) for name in loaded}
    for _ in range(rounds):
        for image in images:
            features = {}
            for name, extractor in loaded.items():
                start = time.perf_counter()
                features[name] = extractor.extract(image)
                times[name].append(1000.0 * (time.perf_counter() - start))
            if "torch" in features:
                for name, found in features.items():
                    share, cosine = agreement(features["torch"], found)
                    worst[name] = (min(worst[name][0], share), min(worst[name][1], cosine))
    rows = []
    for name in RUNTIMES:
        if name not in loaded:
            rows.append({"runtime": name, "error": str(extractors[name])})
            continue
        rows.append({"runtime": name, "frames": len(times[name]),
                     "p50_ms": round(float(np.percentile(times[name], 50)), 2),
                     "p90_ms": round(float(np.percentile(times[name], 90)), 2),
                     "keypoints_within_1px_min": round(worst[name][0], 4),
                     "descriptor_cosine_min": round(worst[name][1], 4)})
    return rows


def format_rows(rows: list[dict], image_size: tuple[int, int], num_threads: int) -> str:
    lines = [f"feature extraction, {image_size[0]}x{image_size[1]}, {num_threads} threads; agreement with torch: "
             "share of keypoints within 1 px (worst image), smallest descriptor cosine",
             f"{'runtime':12s} {'p50 ms':>7s} {'p90 ms':>7s} {'within 1 px':>11s} {'cosine':>7s}"]
    for row in rows:
        if "error" in row:
            lines.append(f"{row['runtime']:12s} not available: {row['error']}")
        else:
            lines.append(f"{row['runtime']:12s} {row['p50_ms']:7.1f} {row['p90_ms']:7.1f} "
                         f"{row['keypoints_within_1px_min']:11.4f} {row['descriptor_cosine_min']:7.4f}")
    return "\n".join(lines)
