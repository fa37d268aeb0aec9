"""metrics.json values on a hand-made trajectory with known errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pram_ros.evaluation.metrics import pose_errors, sequence_metrics


def _pose(x: float, y: float = 0.0, yaw_deg: float = 0.0) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = Rotation.from_euler("z", yaw_deg, degrees=True).as_matrix()
    pose[:3, 3] = [x, y, 0.0]
    return pose


def test_known_errors():
    truth = [_pose(float(i)) for i in range(5)]
    estimates = [
        _pose(0.0),                      # exact
        _pose(1.0, y=0.03),              # 3 cm: within 5 cm / 5 deg
        _pose(2.1, yaw_deg=1.0),         # 10 cm, 1 deg: within 25 cm / 2 deg only
        _pose(3.0, yaw_deg=10.0),        # 10 deg: reported, and wrong
        None,                            # not localized
    ]
    timings = [{"features_ms": 50.0, "total_ms": 100.0}] * 3 + [{"features_ms": 70.0, "total_ms": 200.0}] * 2
    metrics = sequence_metrics(truth, estimates, timings)
    assert metrics["frames"] == 5
    assert metrics["localized_ratio"] == pytest.approx(0.8)
    assert metrics["recall_5cm_5deg"] == pytest.approx(0.4)
    assert metrics["recall_25cm_2deg"] == pytest.approx(0.6)
    assert metrics["recall_50cm_5deg"] == pytest.approx(0.6)
    assert metrics["median_t_m"] == pytest.approx(0.015)
    assert metrics["median_r_deg"] == pytest.approx(0.5)
    assert metrics["wrong_ratio"] == pytest.approx(0.2) and metrics["wrong_frames"] == [3]
    assert metrics["latency_ms"]["total_ms"]["p50"] == pytest.approx(100.0)
    assert metrics["latency_ms"]["features_ms"]["p90"] == pytest.approx(70.0)


def test_nothing_localized_and_mismatched_lengths():
    metrics = sequence_metrics([_pose(0.0)] * 3, [None] * 3)
    assert metrics["localized_ratio"] == 0.0 and metrics["wrong_ratio"] == 0.0
    assert metrics["median_t_m"] is None and metrics["latency_ms"] == {}
    with pytest.raises(ValueError, match="2 ground-truth poses for 3"):
        sequence_metrics([_pose(0.0)] * 2, [None] * 3)


def test_pose_errors_are_symmetric_in_rotation():
    dt, dr = pose_errors(_pose(0.0, yaw_deg=30.0), _pose(0.0, yaw_deg=-15.0))
    assert dt == pytest.approx(0.0) and dr == pytest.approx(45.0)
