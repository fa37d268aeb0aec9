"""`pram replay` and `pram record` as processes, over real DDS (localhost)."""

from __future__ import annotations

import time

import numpy as np
import rclpy
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from conftest import spin_until, stop_process, venv_executable
from pram_ros.io.rosbag import BagTopics, deserialize, iter_bag_messages

TOPICS = BagTopics()


def _stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def _bag_stamps(bag, topic: str) -> list[int]:
    return [_stamp_ns(deserialize(raw, msgtype).header)
            for _, msgtype, _, raw in iter_bag_messages(bag, [topic])]


def test_replay_publishes_the_bag_with_its_stamps_qos_and_clock(tiny_world, ros_node, processes):
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import CameraInfo, Image
    from tf2_msgs.msg import TFMessage

    node, executor = ros_node
    bag = tiny_world / "query_offpath" / "bag"
    received: dict[str, list] = {"image": [], "info": [], "clock": [], "tf_static": []}
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(Image, TOPICS.image, received["image"].append, reliable)
    node.create_subscription(CameraInfo, TOPICS.camera_info, received["info"].append, reliable)
    node.create_subscription(Clock, "/clock", received["clock"].append,
                             QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE))
    process = processes.start([venv_executable("pram"), "replay", "--bag", str(bag), "--clock", "--delay", "2",
                               "--topics", TOPICS.image, TOPICS.camera_info, TOPICS.tf_static])

    assert spin_until(node, executor, lambda: received["image"], timeout_s=30.0), stop_process(process)[2][-3000:]
    # Subscribed only now, after the bag's one /tf_static message went out: it must be latched.
    node.create_subscription(TFMessage, TOPICS.tf_static, received["tf_static"].append,
                             QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    image_stamps = _bag_stamps(bag, TOPICS.image)
    spin_until(node, executor, lambda: process.poll() is not None and len(received["image"]) == len(image_stamps)
               and received["tf_static"], timeout_s=30.0)
    spin_until(node, executor, lambda: False, timeout_s=0.5)  # take what is still queued (/clock)
    code, _, err = stop_process(process)
    assert code == 0, err[-3000:]
    assert "Traceback" not in err
    assert "done after" in err

    assert [_stamp_ns(message.header) for message in received["image"]] == image_stamps
    assert [_stamp_ns(message.header) for message in received["info"]] == _bag_stamps(bag, TOPICS.camera_info)
    first = received["image"][0]
    assert (first.encoding, first.width, first.height, len(first.data)) == ("rgb8", 640, 480, 640 * 480 * 3)
    assert len(received["tf_static"]) == 1
    assert received["tf_static"][0].transforms[0].child_frame_id == TOPICS.camera_frame

    clock_ns = [message.clock.sec * 1_000_000_000 + message.clock.nanosec for message in received["clock"]]
    assert clock_ns == sorted(clock_ns), "/clock never goes back"
    bag_times = [timestamp for _, _, timestamp, _ in iter_bag_messages(bag)]
    assert clock_ns[0] == min(bag_times) and clock_ns[-1] == image_stamps[-1]
    assert set(image_stamps) <= set(clock_ns), "/clock reaches each message's time"
    # About a second of bag time at >= 100 Hz of wall time.
    assert len(clock_ns) >= 60


def test_replay_refuses_a_topic_the_bag_lacks(tiny_world, processes):
    process = processes.start([venv_executable("pram"), "replay", "--bag", str(tiny_world / "foreign" / "bag"),
                               "--topics", "/no/such/topic"])
    _, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "no topic /no/such/topic in the bag" in err and "Traceback" not in err


def test_replay_waits_for_a_subscriber_before_the_first_frame(tiny_world, ros_node, processes):
    """--wait-for: a subscriber that comes late (slow start, slow discovery) still gets
    every frame, where a fixed --delay would have lost the first ones."""
    from sensor_msgs.msg import Image

    node, executor = ros_node
    bag = tiny_world / "query_offpath" / "bag"
    process = processes.start([venv_executable("pram"), "replay", "--bag", str(bag), "--topics", TOPICS.image,
                               "--wait-for", TOPICS.image])
    spin_until(node, executor, lambda: process.poll() is not None, timeout_s=3.0)
    assert process.poll() is None, "played without a subscriber"
    images = []
    node.create_subscription(Image, TOPICS.image, images.append, QoSProfile(depth=100,
                                                                             reliability=ReliabilityPolicy.RELIABLE))
    image_stamps = _bag_stamps(bag, TOPICS.image)
    spin_until(node, executor, lambda: process.poll() is not None and len(images) == len(image_stamps), 60.0)
    code, _, err = stop_process(process)
    assert code == 0 and "Traceback" not in err, err[-3000:]
    assert [_stamp_ns(message.header) for message in images] == image_stamps

    wrong = processes.start([venv_executable("pram"), "replay", "--bag", str(bag), "--wait-for", "/no/such/topic"])
    _, err = wrong.communicate(timeout=30)
    assert wrong.returncode == 2 and "no topic /no/such/topic to wait for" in err and "Traceback" not in err


def test_replay_stops_cleanly_on_sigint(tiny_world, ros_node, processes):
    from sensor_msgs.msg import Image

    node, executor = ros_node
    images = []
    node.create_subscription(Image, TOPICS.image, images.append, 10)
    process = processes.start([venv_executable("pram"), "replay", "--bag", str(tiny_world / "mapping" / "bag"),
                               "--rate", "0.2"])
    assert spin_until(node, executor, lambda: images, timeout_s=30.0), stop_process(process)[2][-3000:]
    code, _, err = stop_process(process)
    assert code == 0, err[-3000:]
    assert "interrupted after" in err and "Traceback" not in err


def test_record_writes_what_was_published(tmp_path, ros_node, processes):
    from geometry_msgs.msg import PoseStamped
    from tf2_msgs.msg import TFMessage

    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    from pram_ros.msg import LocalizationStatus
    from pram_ros.ros.record import ensure_type
    from pram_ros.ros.tf import time_msg_from_ns, transform_stamped_msg

    node, executor = ros_node
    out = tmp_path / "recorded"
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    pose_publisher = node.create_publisher(PoseStamped, "/test/pose", reliable)
    status_publisher = node.create_publisher(LocalizationStatus, "/test/status", reliable)
    static_publisher = node.create_publisher(TFMessage, "/tf_static",
                                             QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    static_publisher.publish(TFMessage(transforms=[transform_stamped_msg(time_msg_from_ns(5), "base_link", "camera",
                                                                         np.eye(4))]))
    process = processes.start([venv_executable("pram"), "record", "--topics", "/test/pose", "/test/status",
                               "/tf_static", "--out", str(out), "--stamp", "header"])
    # Publish only once the recorder has subscribed (it finds the topics on the graph).
    assert spin_until(node, executor, lambda: pose_publisher.get_subscription_count() > 0
                      and status_publisher.get_subscription_count() > 0, timeout_s=30.0), \
        stop_process(process)[2][-3000:]
    stamps = [1_700_000_000_000_000_000 + index * 50_000_000 for index in range(10)]
    for index, stamp in enumerate(stamps):
        pose = PoseStamped()
        pose.header.stamp = time_msg_from_ns(stamp)
        pose.header.frame_id = "map"
        pose.pose.position.x = float(index)
        pose_publisher.publish(pose)
        status = LocalizationStatus()
        status.header.stamp = time_msg_from_ns(stamp)
        status.state = LocalizationStatus.TRACKING
        status.landmark_ids = [index, 7]
        status_publisher.publish(status)
    spin_until(node, executor, lambda: pose_publisher.wait_for_all_acked(rclpy.duration.Duration(seconds=0.1))
               and status_publisher.wait_for_all_acked(rclpy.duration.Duration(seconds=0.1)), timeout_s=10.0)
    code, _, err = stop_process(process)
    assert code == 0, err[-3000:]
    assert "Traceback" not in err

    recorded: dict[str, list] = {}
    for topic, msgtype, timestamp, raw in iter_bag_messages(out):
        recorded.setdefault(topic, []).append((msgtype, timestamp, raw))
    assert set(recorded) == {"/test/pose", "/test/status", "/tf_static"}
    poses = [(timestamp, deserialize(raw, msgtype)) for msgtype, timestamp, raw in recorded["/test/pose"]]
    assert [timestamp for timestamp, _ in poses] == stamps  # --stamp header
    assert [pose.pose.position.x for _, pose in poses] == [float(index) for index in range(10)]
    assert recorded["/test/status"][0][0] == "pram_ros/msg/LocalizationStatus"
    typestore = get_typestore(Stores.ROS2_JAZZY)
    ensure_type(typestore, "pram_ros/msg/LocalizationStatus")  # from the installed .msg
    statuses = [typestore.deserialize_cdr(raw, msgtype) for msgtype, _, raw in recorded["/test/status"]]
    assert [list(status.landmark_ids) for status in statuses] == [[index, 7] for index in range(10)]
    assert {int(status.state) for status in statuses} == {LocalizationStatus.TRACKING}
    with Reader(out) as reader:
        qos = {connection.topic: connection.ext.offered_qos_profiles[0] for connection in reader.connections}
        status_connection = next(c for c in reader.connections if c.topic == "/test/status")
        assert status_connection.msgcount == 10
    assert qos["/tf_static"].durability.name == "TRANSIENT_LOCAL"
    assert qos["/test/pose"].durability.name == "VOLATILE"
    assert len(recorded["/tf_static"]) == 1
    # TFMessage has no header: its bag time is the receive time, not bytes read as a stamp.
    assert abs(recorded["/tf_static"][0][1] - time.time_ns()) < 120 * 1_000_000_000
