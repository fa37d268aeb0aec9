"""Recognition metrics, shared by training's validation and `pram eval --stage recognition`.

Per keypoint (ground-truth labels with IGNORE skipped):
  landmark_accuracy      share of landmark keypoints given their own landmark;
  background_precision   share of keypoints called background that are background;
  background_recall      share of background keypoints called background.
Per frame:
  top3_recall            share of frames with a truly visible landmark (>= 20 points) in which
                         one of them is among the 3 most-voted landmarks; frames that see no
                         landmark are left out and counted in `frames_without_landmark`;
  background_share       distribution over frames of the share of keypoints called background.
Map sets add `scene_accuracy`: share of the frames with a truly visible landmark whose
most-voted scene (landmark votes summed per scene) is the true one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pram_ros.recognition.dataset import IGNORE
from pram_ros.recognition.model import Recognition

TOP_K = 3


def scene_votes(votes: np.ndarray, label_offsets: list[int], landmark_counts: list[int]) -> np.ndarray:
    """Landmark votes (background excluded) summed per scene."""
    return np.array([votes[1 + offset:1 + offset + count].sum()
                     for offset, count in zip(label_offsets, landmark_counts)], dtype=np.int64)


@dataclass
class RecognitionMetrics:
    """Accumulates frames with `add`, then `summary()` gives the numbers in the module docstring."""

    correct_landmark: int = 0
    landmark_keypoints: int = 0
    true_background_called: int = 0
    called_background: int = 0
    true_background: int = 0
    frames: int = 0
    frames_with_landmark: int = 0
    frames_top_hit: int = 0
    scene_frames: int = 0
    scene_correct: int = 0
    background_shares: list[float] = field(default_factory=list)

    def add(self, recognition: Recognition, truth: np.ndarray | None, visible: np.ndarray,
            true_scene: int | None = None, scene_of_votes: np.ndarray | None = None) -> None:
        """truth: labels of recognition's keypoints (or None when unknown); visible: landmark ids
        truly seen with enough points; scene_of_votes: per-scene votes when the model spans scenes."""
        self.frames += 1
        self.background_shares.append(recognition.background_share if len(recognition.labels) else 1.0)
        if truth is not None:
            predicted = recognition.labels
            known = truth != IGNORE
            predicted, truth = predicted[known], truth[known]
            landmark = truth > 0
            self.landmark_keypoints += int(landmark.sum())
            self.correct_landmark += int((predicted[landmark] == truth[landmark]).sum())
            self.called_background += int((predicted == 0).sum())
            self.true_background += int((truth == 0).sum())
            self.true_background_called += int(((predicted == 0) & (truth == 0)).sum())
        if len(visible):
            self.frames_with_landmark += 1
            top = recognition.ranked_landmarks()[:TOP_K]
            self.frames_top_hit += int(np.isin(top, visible).any())
        if true_scene is not None and scene_of_votes is not None and len(visible):
            self.scene_frames += 1
            self.scene_correct += int(scene_of_votes.sum() > 0 and int(np.argmax(scene_of_votes)) == true_scene)

    def summary(self) -> dict:
        def ratio(numerator: int, denominator: int) -> float | None:
            return round(numerator / denominator, 4) if denominator else None

        shares = np.asarray(self.background_shares) if self.background_shares else np.zeros(1)
        result = {
            "frames": self.frames,
            "frames_without_landmark": self.frames - self.frames_with_landmark,
            "top3_recall": ratio(self.frames_top_hit, self.frames_with_landmark),
            "landmark_accuracy": ratio(self.correct_landmark, self.landmark_keypoints),
            "background_precision": ratio(self.true_background_called, self.called_background),
            "background_recall": ratio(self.true_background_called, self.true_background),
            "background_share": {
                "mean": round(float(shares.mean()), 4),
                "p10": round(float(np.percentile(shares, 10)), 4),
                "p50": round(float(np.percentile(shares, 50)), 4),
                "p90": round(float(np.percentile(shares, 90)), 4),
            },
        }
        if self.scene_frames:
            result["scene_accuracy"] = ratio(self.scene_correct, self.scene_frames)
        return result
