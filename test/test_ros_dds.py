"""Messages over real DDS (localhost) between rclpy processes, and pram_node's start/stop."""

from __future__ import annotations

import subprocess
import sys

import pytest
from rclpy.qos import QoSProfile
from tf2_msgs.msg import TFMessage

from conftest import REPO, spin_until, stop_process, venv_executable
from pram_ros.msg import LocalizationStatus


def test_status_and_tf_cross_process(ros_node, processes):
    node, executor = ros_node
    statuses, tf_messages = [], []
    node.create_subscription(LocalizationStatus, "/test/status", statuses.append, QoSProfile(depth=10))
    node.create_subscription(TFMessage, "/tf", tf_messages.append, QoSProfile(depth=10))
    publisher = processes.start([sys.executable, str(REPO / "test/helpers/publish_status_and_tf.py")])

    assert spin_until(node, executor, lambda: statuses and tf_messages, timeout_s=30.0), (
        f"nothing received over DDS; publisher stderr: {stop_process(publisher)[2][-2000:]}"
    )
    status = statuses[0]
    assert status.state == LocalizationStatus.TRACKING
    assert list(status.landmark_ids) == [7, 3, 12]
    assert status.num_inliers == 321
    assert status.inlier_ratio == pytest.approx(0.625)
    assert (status.features_ms, status.recognition_ms) == pytest.approx((45.5, 23.25))
    assert (status.registration_ms, status.total_ms) == pytest.approx((12.0, 80.75))
    assert status.header.stamp.sec == 1_700_000_123 and status.header.frame_id == "map"
    transform = tf_messages[0].transforms[0]
    assert (transform.header.frame_id, transform.child_frame_id) == ("map", "odom")
    assert transform.transform.translation.x == pytest.approx(1.5)
    assert (transform.transform.rotation.z, transform.transform.rotation.w) == pytest.approx((0.6, 0.8))

    code, _, err = stop_process(publisher)
    assert code == 0, err
    assert "Traceback" not in err


def test_status_constants_are_distinct():
    states = [
        LocalizationStatus.UNINITIALIZED,
        LocalizationStatus.RELOCALIZING,
        LocalizationStatus.TRACKING,
        LocalizationStatus.LOST,
    ]
    assert len(set(states)) == 4


def test_pram_node_refuses_bad_parameter(processes):
    process = processes.start([venv_executable("pram_node"), "--ros-args", "-p", "status_period_s:=-1.0"])
    try:
        _, err = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("pram_node kept running with a refused parameter")
    assert process.returncode == 2
    assert "parameter status_period_s refused" in err and "0.05" in err
    assert "Traceback" not in err
