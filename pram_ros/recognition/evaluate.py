"""Evaluate a recognizer on a query sequence with ground-truth poses and depth.

In: a recognizer, the label space it was trained on, the map of the scene the query was
taken in, and a query folder (images, a TUM file of world_from_cam poses in image-name
order, and 16-bit depth PNGs in millimetres, as the demo world writes them).
Out: `RecognitionMetrics.summary()` (see metrics.py).

Ground truth: the ground-truth pose projects every map point; a point is visible when it
lies in front of the camera, inside the image, and within a few centimetres of the
rendered depth there. Landmarks with at least 20 visible points are "truly visible".
Keypoints are labelled from the visible points as the training data is (dataset.py).

As a reference, the same frames are also "recognized" by exhaustive descriptor matching:
mutual nearest neighbours (ratio 0.9) between the query keypoints and every map point,
counted per landmark. Its top-3 recall shows how much of the sequence the descriptors
alone can tell apart (repeated textures seen up close defeat both).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pram_ros.progress import progress

from pram_ros.features import FeatureExtractor, match_mutual_nn
from pram_ros.geometry import in_view, project_points
from pram_ros.io.images import load_depth
from pram_ros.io.imageset import images_from_folder
from pram_ros.mapping.mapfile import PramMap
from pram_ros.recognition.dataset import MIN_VISIBLE_POINTS, LabelConfig, Scene, label_keypoints
from pram_ros.recognition.metrics import RecognitionMetrics, scene_votes
from pram_ros.recognition.model import Recognizer


@dataclass
class QueryTruth:
    points_uv: np.ndarray  # [V x 2] visible map points' pixels
    points_label: np.ndarray  # [V] their global landmark ids
    visible_landmarks: np.ndarray  # global ids with >= MIN_VISIBLE_POINTS visible points

    def label(self, keypoints: np.ndarray, labels: LabelConfig) -> np.ndarray:
        """Ground-truth labels of keypoints, by the training data's rule."""
        return label_keypoints(keypoints, self.points_uv, self.points_label, labels.near_px, labels.far_px)


def depth_tolerance_m(depth_m: np.ndarray) -> np.ndarray:
    return np.maximum(0.05, 0.03 * depth_m)


def query_truth(pram_map: PramMap, label_offset: int, cam_from_world: np.ndarray, depth_m: np.ndarray) -> QueryTruth:
    uv, z = project_points(pram_map.point_xyz, cam_from_world, pram_map.K(0))
    height, width = depth_m.shape
    pixel = np.rint(uv).astype(np.int64)
    inside = in_view(uv, z, width, height)
    visible = np.zeros(len(z), bool)
    rendered = depth_m[pixel[inside, 1], pixel[inside, 0]]
    visible[inside] = (rendered > 0) & (np.abs(rendered - z[inside]) < depth_tolerance_m(rendered))
    labels = pram_map.point_landmark[visible].astype(np.int64) + label_offset
    counts = np.bincount(labels, minlength=1)
    return QueryTruth(uv[visible], labels, np.flatnonzero(counts >= MIN_VISIBLE_POINTS))


def evaluate_sequence(recognizer: Recognizer, extractor: FeatureExtractor, scenes: list[Scene], scene_index: int,
                      pram_map: PramMap, images_dir: Path, gt_tum: Path, depth_dir: Path | None = None,
                      labels: LabelConfig | None = None, max_keypoints: int | None = None,
                      unmapped: bool = False, reference: bool = True) -> dict:
    """Recognition metrics over every image of a query folder (see the module docstring).
    `unmapped`: the query shows a place the map does not hold; every keypoint is background."""
    labels = labels or LabelConfig()
    images_dir = Path(images_dir)
    depth_dir = Path(depth_dir) if depth_dir else images_dir.parent / "depth"
    if not unmapped and not depth_dir.is_dir():
        raise FileNotFoundError(f"{depth_dir}: no depth images; recognition ground truth needs them (--depth DIR)")
    images = images_from_folder(images_dir, None, gt_tum)
    if not unmapped and (not np.allclose(images.K, pram_map.K(0), atol=1e-3) or
                         (images.width, images.height) != tuple(int(v) for v in pram_map.camera_size[0])):
        raise ValueError(f"{images_dir}: camera differs from the map's; ground truth needs the map's camera")
    metrics = RecognitionMetrics()
    reference_hits = reference_frames = 0
    map_descriptors = pram_map.point_descriptor.astype(np.float32) if reference and not unmapped else None
    offsets = [s.label_offset for s in scenes]
    counts = [s.num_landmarks for s in scenes]
    scene = scenes[scene_index]
    for index, rgb in progress(images.frames(), total=len(images.names), desc=f"recognition {images_dir.parent.name}",
                           unit="image", leave=False):
        features = extractor.extract(rgb)
        recognition = recognizer.recognize(features, max_keypoints)
        if unmapped:
            keypoint_truth, visible = np.zeros(len(recognition.labels), np.int64), np.zeros(0, np.int64)
        else:
            cam_from_world = np.linalg.inv(images.world_from_cam[index])
            truth = query_truth(pram_map, scene.label_offset, cam_from_world,
                                load_depth(depth_dir / images.names[index]))
            keypoint_truth = truth.label(features.keypoints[recognition.keypoint_indices], labels)
            visible = truth.visible_landmarks
            if map_descriptors is not None and len(visible):
                used = features.descriptors[recognition.keypoint_indices]
                matches = match_mutual_nn(used, map_descriptors, ratio=0.9)
                votes = np.bincount(pram_map.point_landmark[matches[:, 1]], minlength=pram_map.num_landmarks + 1)
                votes[0] = 0
                top = np.argsort(-votes, kind="stable")[:3]
                reference_frames += 1
                reference_hits += int(np.isin(top[votes[top] > 0] + scene.label_offset, visible).any())
        metrics.add(recognition, keypoint_truth, visible, scene_index if len(scenes) > 1 else None,
                    scene_votes(recognition.votes, offsets, counts))
    summary = metrics.summary()
    if reference_frames:
        summary["exhaustive_nn_top3_recall"] = round(reference_hits / reference_frames, 4)
    return summary
