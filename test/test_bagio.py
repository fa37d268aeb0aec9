"""rosbag2 round trip of a rendered sequence: rosbags and rclpy read the same thing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import yaml
from scipy.spatial.transform import Rotation

from pram_ros.geometry import interpolate_transforms, invert, transform_from_quat
from pram_ros.io.camera import load_camera_yaml
from pram_ros.io.rosbag import (
    BASE_FROM_CAMERA,
    BagTopics,
    bag_storage,
    deserialize,
    iter_bag_messages,
    write_sequence_bag,
)
from pram_ros.io.tum import load_tum

TOPICS = BagTopics()


def _by_topic(bag_path):
    messages: dict[str, list] = {}
    for topic, msgtype, timestamp, raw in iter_bag_messages(bag_path):
        messages.setdefault(topic, []).append((msgtype, timestamp, raw))
    return messages


def _stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def _transform(msg) -> np.ndarray:
    t, q = msg.transform.translation, msg.transform.rotation
    return transform_from_quat(np.array([t.x, t.y, t.z]), np.array([q.x, q.y, q.z, q.w]))


def test_bag_matches_sequence_folder(tiny_world):
    sequence = tiny_world / "mapping"
    bag = sequence / "bag"
    assert bag_storage(bag) == "mcap"
    stamps_ns, world_from_cam = load_tum(sequence / "poses.tum")
    K, width, height = load_camera_yaml(sequence / "camera.yaml")
    messages = _by_topic(bag)
    assert set(messages) == {TOPICS.image, TOPICS.camera_info, TOPICS.ground_truth, TOPICS.tf, TOPICS.tf_static}
    assert len(messages[TOPICS.image]) == len(stamps_ns)
    assert len(messages[TOPICS.tf]) == 2 * len(stamps_ns) - 1

    image_paths = sorted((sequence / "images").glob("*.png"))
    for index, (msgtype, timestamp, raw) in enumerate(messages[TOPICS.image]):
        image = deserialize(raw, msgtype)
        assert _stamp_ns(image.header) == timestamp == stamps_ns[index]
        assert image.header.frame_id == TOPICS.camera_frame and image.encoding == "rgb8"
        rgb = image.data.reshape(image.height, image.width, 3)
        expected = cv2.cvtColor(cv2.imread(str(image_paths[index])), cv2.COLOR_BGR2RGB)
        assert np.array_equal(rgb, expected)

    info = deserialize(messages[TOPICS.camera_info][0][2], "sensor_msgs/msg/CameraInfo")
    assert (info.width, info.height) == (width, height)
    np.testing.assert_allclose(info.k.reshape(3, 3), K)

    for index, (msgtype, timestamp, raw) in enumerate(messages[TOPICS.ground_truth]):
        pose = deserialize(raw, msgtype)
        assert pose.header.frame_id == TOPICS.map_frame and _stamp_ns(pose.header) == stamps_ns[index]
        p, q = pose.pose.position, pose.pose.orientation
        world_from_cam_bag = transform_from_quat(np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w]))
        np.testing.assert_allclose(world_from_cam_bag, world_from_cam[index], atol=1e-6)


def test_tf_is_rep105_with_slow_planar_odom_drift(tiny_world):
    sequence = tiny_world / "mapping"
    stamps_ns, world_from_cam = load_tum(sequence / "poses.tum")
    messages = _by_topic(sequence / "bag")

    (msgtype, _, raw), = messages[TOPICS.tf_static]
    static = deserialize(raw, msgtype).transforms[0]
    assert (static.header.frame_id, static.child_frame_id) == (TOPICS.base_frame, TOPICS.camera_frame)
    np.testing.assert_allclose(_transform(static), BASE_FROM_CAMERA, atol=1e-9)
    metadata = yaml.safe_load((sequence / "bag" / "metadata.yaml").read_text())
    topics_info = {t["topic_metadata"]["name"]: t["topic_metadata"] for t in
                   metadata["rosbag2_bagfile_information"]["topics_with_message_count"]}
    assert "transient_local" in str(topics_info[TOPICS.tf_static]["offered_qos_profiles"])

    odom_stamps, odom_from_base = [], []
    for msgtype, timestamp, raw in messages[TOPICS.tf]:
        transform = deserialize(raw, msgtype).transforms[0]
        assert (transform.header.frame_id, transform.child_frame_id) == (TOPICS.odom_frame, TOPICS.base_frame)
        odom_stamps.append(_stamp_ns(transform.header))
        odom_from_base.append(_transform(transform))
    odom_stamps = np.array(odom_stamps)
    assert np.all(np.diff(odom_stamps) > 0) and set(stamps_ns.tolist()) <= set(odom_stamps.tolist())

    # map_from_odom = map_from_cam * cam_from_base * base_from_odom, at every odometry stamp.
    world_from_base = interpolate_transforms(stamps_ns, world_from_cam, odom_stamps) @ invert(BASE_FROM_CAMERA)
    map_from_odom = world_from_base @ np.linalg.inv(np.array(odom_from_base))
    rotations = Rotation.from_matrix(map_from_odom[:, :3, :3])
    roll, pitch, yaw = rotations.as_euler("xyz").T
    assert np.abs(map_from_odom[:, 2, 3]).max() < 1e-6, "odom drift must stay planar"
    assert np.abs(roll).max() < 1e-6 and np.abs(pitch).max() < 1e-6
    assert np.allclose(map_from_odom[0], np.eye(4), atol=1e-6), "odom starts at map"
    drift_m = np.linalg.norm(map_from_odom[-1, :2, 3])
    assert 1e-3 < drift_m < 0.5 and 1e-4 < abs(yaw[-1]) < np.deg2rad(5)
    step_m = np.linalg.norm(np.diff(map_from_odom[:, :2, 3], axis=0), axis=1)
    assert step_m.max() < 0.01, "drift is slow and smooth"


def _assert_same_fields(ros_message, rosbags_message, path: str) -> None:
    """Field-by-field equality of an rclpy message and a rosbags message of one type."""
    for name in ros_message.get_fields_and_field_types():
        ours, theirs = getattr(ros_message, name), getattr(rosbags_message, name)
        where = f"{path}.{name}"
        if hasattr(ours, "get_fields_and_field_types"):
            _assert_same_fields(ours, theirs, where)
        elif isinstance(ours, (list, tuple)) and ours and hasattr(ours[0], "get_fields_and_field_types"):
            assert len(ours) == len(theirs), where
            for index, (a, b) in enumerate(zip(ours, theirs)):
                _assert_same_fields(a, b, f"{where}[{index}]")
        elif isinstance(ours, (str, int, float, bool)):
            assert ours == theirs, where
        else:
            assert np.array_equal(np.asarray(ours), np.asarray(theirs)), where


def test_rclpy_deserializes_bag_bytes_identically(tiny_world):
    from geometry_msgs.msg import PoseStamped
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CameraInfo, Image
    from tf2_msgs.msg import TFMessage

    ros_types = {
        "sensor_msgs/msg/Image": Image,
        "sensor_msgs/msg/CameraInfo": CameraInfo,
        "geometry_msgs/msg/PoseStamped": PoseStamped,
        "tf2_msgs/msg/TFMessage": TFMessage,
    }
    seen = set()
    for topic, msgtype, _, raw in iter_bag_messages(tiny_world / "query_offpath" / "bag"):
        if topic in seen:
            continue
        seen.add(topic)
        ros_message = deserialize_message(bytes(raw), ros_types[msgtype])
        _assert_same_fields(ros_message, deserialize(raw, msgtype), topic)
        # And back: rclpy's bytes read the same in rosbags (padding bytes may differ).
        again = serialize_message(ros_message)
        assert len(again) == len(raw), topic
        _assert_same_fields(ros_message, deserialize(again, msgtype), topic)
    assert len(seen) == 5


def test_sqlite3_bag_holds_the_same_messages(tiny_world, tmp_path):
    sequence = tiny_world / "query_lighting"
    bag = tmp_path / "bag_sqlite3"
    summary = write_sequence_bag(sequence, bag, storage="sqlite3", seed=3)
    assert bag_storage(bag) == "sqlite3"
    mcap = [(t, ts, bytes(raw)) for t, _, ts, raw in iter_bag_messages(sequence / "bag")]
    sqlite = [(t, ts, bytes(raw)) for t, _, ts, raw in iter_bag_messages(bag)]
    assert sorted(mcap) == sorted(sqlite)
    assert summary.messages[TOPICS.image] == len(list((sequence / "images").glob("*.png")))


def test_bad_sequence_folder_gives_clear_error(tiny_world, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_world / "foreign", broken, ignore=shutil.ignore_patterns("bag"))
    sorted((broken / "images").glob("*.png"))[-1].unlink()
    with pytest.raises(ValueError, match="images in images/ but"):
        write_sequence_bag(broken, tmp_path / "out_bag")
    with pytest.raises(ValueError, match="storage must be one of"):
        write_sequence_bag(tiny_world / "foreign", tmp_path / "out_bag2", storage="bag1")


def test_same_sequence_gives_the_same_bag_bytes(tiny_world, tmp_path):
    import hashlib

    digests = []
    for run in ("a", "b"):
        bag = tmp_path / run / "bag"
        write_sequence_bag(tiny_world / "foreign", bag, storage="mcap", seed=3)
        digests.append({f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(bag.iterdir())})
    assert digests[0] == digests[1]
    existing = tiny_world / "foreign" / "bag"
    with pytest.raises(Exception, match="exists already"):
        write_sequence_bag(tiny_world / "foreign", existing)
