"""pram_node as a process over localhost DDS: a real map and model, a real bag replayed into it."""

from __future__ import annotations

import json
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import yaml
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseWithCovarianceStamped
from rcl_interfaces.msg import Log
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage
from visualization_msgs.msg import MarkerArray

from conftest import REPO, spin_until, stop_process, venv_executable
from pram_ros.evaluation.metrics import pose_errors
from pram_ros.io.images import load_image
from pram_ros.io.rosbag import BASE_FROM_CAMERA, deserialize, iter_bag_messages
from pram_ros.io.tum import load_tum
from pram_ros.localization import LocalizerConfig
from pram_ros.msg import LocalizationStatus
from pram_ros.srv import LoadMap
from pram_ros.ros.params import NodeParams, parameter_specs
from pram_ros.ros.tf import (
    StaticTfBroadcaster,
    TfBuffer,
    matrix_from_pose_msg,
    matrix_from_transform_msg,
    ns_from_time_msg,
    pose_msg_from_matrix,
    transform_stamped_msg,
)

LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)


def _start_node(processes, map_path, *params: str):
    args = [venv_executable("pram_node"), "--ros-args", "--params-file", str(REPO / "config" / "pram.yaml"),
            "-p", f"map_path:={map_path}", "-p", "image_topic:=/camera/image_raw",
            "-p", "camera_info_topic:=/camera/camera_info", "-p", "status_period_s:=0.5"]
    for param in params:
        args += ["-p", param]
    return processes.start(args)


def _wait_ready(node, executor, process, statuses, timeout_s=90.0):
    """The node says UNINITIALIZED on its timer once it has loaded the map and model."""
    ok = spin_until(node, executor, lambda: statuses or process.poll() is not None, timeout_s)
    assert ok and process.poll() is None, f"pram_node did not start: {stop_process(process)[2][-3000:]}"


def _replay(node, executor, processes, bag, rate, timeout_s=180.0):
    replay = processes.start([venv_executable("pram"), "replay", "--bag", str(bag), "--rate", str(rate),
                              "--clock", "--delay", "1.0"])
    assert spin_until(node, executor, lambda: replay.poll() is not None, timeout_s), "replay did not end"
    code, _, err = stop_process(replay)
    assert code == 0, err[-2000:]
    spin_until(node, executor, lambda: False, 3.0)  # the last frames' outputs


def _truth(world, sequence):
    stamps_ns, world_from_cam = load_tum(world / sequence / "poses.tum")
    return dict(zip(stamps_ns.tolist(), world_from_cam))


def _localized(poses):
    return [p for p in poses if p.pose.covariance[0] < 1.0]


def test_node_localizes_a_replayed_bag(ros_node, processes, localization_world, localization_map):
    node, executor = ros_node
    poses, statuses, tf_messages = [], [], []
    node.create_subscription(PoseWithCovarianceStamped, "/pram_node/pose", poses.append, 50)
    node.create_subscription(LocalizationStatus, "/pram_node/status", statuses.append, 50)
    node.create_subscription(TFMessage, "/tf", tf_messages.append, 100)
    process = _start_node(processes, localization_map, "use_sim_time:=true", "image_qos:=reliable")
    _wait_ready(node, executor, process, statuses)
    statuses.clear()

    # Slower than real time: on 2 cores every frame gets processed, so the test sees tracking.
    _replay(node, executor, processes, localization_world / "mapping" / "bag", rate=0.25)
    truth = _truth(localization_world, "mapping")
    localized = _localized(poses)
    # Every frame is either localized, LOST or counted as dropped; none waits in a queue.
    frames = [s for s in statuses if s.state != LocalizationStatus.UNINITIALIZED]
    dropped = sum(s.dropped_frames for s in frames)
    # (Reliable, keep-last delivery can still lose a frame on a starved machine: some slack.)
    assert 30 <= len(frames) + dropped <= 40, (len(frames), dropped)
    assert len(frames) >= 12, f"{len(frames)} frames processed of 40"
    assert frames[-1].frames_processed == len(frames) and frames[-1].frames_dropped == dropped, frames[-1]
    assert frames[-1].frames_received == len(frames) + dropped and frames[-1].frames_rejected == 0, frames[-1]
    # ~/pose only for localized frames: a consumer that ignores covariance never sees "the origin".
    lost = [s for s in frames if s.state == LocalizationStatus.LOST]
    assert len(poses) == len(localized) == len(frames) - len(lost), (len(poses), len(localized), len(lost))
    # Each LOST frame says why.
    assert all(s.reason and s.reason_code != LocalizationStatus.REASON_NONE for s in lost), \
        [(s.reason_code, s.reason) for s in lost]
    # About half of this short path turns on the spot, where the map holds too little to localize.
    assert len(localized) >= 0.4 * len(frames), f"{len(localized)} of {len(frames)} localized"
    errors = [pose_errors(matrix_from_pose_msg(p.pose.pose), truth[ns_from_time_msg(p.header.stamp)])
              for p in localized]
    assert all(p.header.frame_id == "map" for p in poses)
    assert max(dt for dt, _ in errors) < 0.5 and max(dr for _, dr in errors) < 5.0, errors
    assert np.mean([dt < 0.05 and dr < 5.0 for dt, dr in errors]) >= 0.9, errors
    states = [s.state for s in statuses if s.header.stamp.sec > 0]
    assert LocalizationStatus.RELOCALIZING in states and LocalizationStatus.TRACKING in states
    assert states.index(LocalizationStatus.RELOCALIZING) < states.index(LocalizationStatus.TRACKING)
    tracked = [s for s in statuses if s.state == LocalizationStatus.TRACKING]
    assert all(s.recognition_ms == 0.0 or s.recognition_ms > 0 for s in tracked)
    assert all(s.num_inliers >= 50 and len(s.landmark_ids) for s in tracked)
    latencies = [s.latency_ms for s in frames]
    # By the bag's /clock, which reaches the node on its own topic: a frame can be published
    # a tick before the clock message of its own stamp arrives.
    assert all(-500 < latency < 60_000 for latency in latencies) and np.median(latencies) > 0, latencies

    ours = [t for m in tf_messages for t in m.transforms if t.header.frame_id == "map"]
    assert ours and {t.child_frame_id for t in ours} == {"camera_optical_frame"}
    by_stamp = {ns_from_time_msg(t.header.stamp): matrix_from_transform_msg(t.transform) for t in ours}
    for pose in localized:
        stamp_ns = ns_from_time_msg(pose.header.stamp)
        assert np.allclose(by_stamp[stamp_ns], matrix_from_pose_msg(pose.pose.pose), atol=1e-6)

    # Latched: a subscriber that comes late still gets the map's landmarks, once.
    markers = []
    node.create_subscription(MarkerArray, "/pram_node/landmarks", markers.append, LATCHED)
    assert spin_until(node, executor, lambda: markers, 15.0), "no latched ~/landmarks"
    spin_until(node, executor, lambda: False, 1.0)
    assert len(markers) == 1
    ids = {m.id for m in markers[0].markers if m.ns == "landmarks"}
    assert len(ids) >= 2 and min(ids) >= 1

    code, _, err = stop_process(process)
    assert code == 0, err[-3000:]
    assert "Traceback" not in err


def _bag_tf(bag) -> TfBuffer:
    buffer = TfBuffer(cache_s=1e6)
    for topic, msgtype, _, raw in iter_bag_messages(bag, ["/tf", "/tf_static"]):
        for transform in deserialize(raw, msgtype).transforms:
            buffer.add_transform_msg(transform, static=topic == "/tf_static")
    return buffer


def test_node_map_to_odom_matches_ground_truth(ros_node, processes, localization_world, localization_map):
    node, executor = ros_node
    poses, statuses, tf_messages = [], [], []
    node.create_subscription(PoseWithCovarianceStamped, "/pram_node/pose", poses.append, 50)
    node.create_subscription(LocalizationStatus, "/pram_node/status", statuses.append, 50)
    node.create_subscription(TFMessage, "/tf", tf_messages.append, 200)
    process = _start_node(processes, localization_map, "use_sim_time:=true", "odom_frame:=odom",
                          "base_frame:=base_link", "image_qos:=reliable")
    _wait_ready(node, executor, process, statuses)
    bag = localization_world / "mapping" / "bag"
    # Slow enough that a busy 2-core machine still processes most frames (the node drops the rest).
    _replay(node, executor, processes, bag, rate=0.15)

    odometry = _bag_tf(bag)
    truth = _truth(localization_world, "mapping")
    map_to_odom = [t for m in tf_messages for t in m.transforms if t.header.frame_id == "map"]
    assert map_to_odom and {t.child_frame_id for t in map_to_odom} == {"odom"}, (
        f"{len(_localized(poses))} of {len(poses)} localized; /tf edges "
        f"{sorted({(t.header.frame_id, t.child_frame_id) for m in tf_messages for t in m.transforms})}; "
        f"node: {stop_process(process)[2][-3000:]}")
    good = 0
    for transform in map_to_odom:
        stamp_ns = ns_from_time_msg(transform.header.stamp)
        map_from_base = matrix_from_transform_msg(transform.transform) @ odometry.lookup("odom", "base_link", stamp_ns)
        true_map_from_base = truth[stamp_ns] @ np.linalg.inv(BASE_FROM_CAMERA)
        dt, dr = pose_errors(map_from_base, true_map_from_base)
        assert dt < 0.5 and dr < 5.0, f"map->base_link at {stamp_ns}: {dt:.3f} m, {dr:.2f} deg"
        good += dt < 0.05 and dr < 5.0
    # The odometry is interpolated at the image stamp, and a frame or two in a short run may
    # sit just past 5 cm: a share, over enough frames, and none wrong (above).
    assert len(map_to_odom) >= 4 and good >= min(len(map_to_odom) - 1, 0.8 * len(map_to_odom)), (
        f"{good} of {len(map_to_odom)} within 5 cm/5 deg; {len(_localized(poses))} of {len(poses)} localized; "
        f"states {[s.state for s in statuses]}; node: {stop_process(process)[2][-3000:]}")
    # ~/pose is then base_link's pose in map.
    for pose in _localized(poses):
        true_map_from_base = truth[ns_from_time_msg(pose.header.stamp)] @ np.linalg.inv(BASE_FROM_CAMERA)
        dt, _ = pose_errors(matrix_from_pose_msg(pose.pose.pose), true_map_from_base)
        assert dt < 0.5, f"~/pose at {ns_from_time_msg(pose.header.stamp)}: {dt:.3f} m"

    code, _, err = stop_process(process)
    assert code == 0 and "Traceback" not in err, err[-3000:]


def _image_msg(rgb: np.ndarray, stamp_ns: int, encoding="rgb8") -> Image:
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, step=rgb.shape[1] * 3)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = "camera_optical_frame"
    msg.data = rgb.tobytes()
    return msg


def _camera_info(width, height, K) -> CameraInfo:
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
    info.k = [float(v) for v in K.reshape(-1)]
    info.d = [0.0] * 5
    return info


def test_node_survives_bad_input(ros_node, processes, localization_world, localization_map):
    from pram_ros.mapping.mapfile import load_map

    node, executor = ros_node
    statuses, debug_images, diagnostics = [], [], []
    node.create_subscription(LocalizationStatus, "/pram_node/status", statuses.append, 500)
    node.create_subscription(Image, "/pram_node/debug_image", debug_images.append, qos_profile_sensor_data)
    node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    # Reliable: best-effort delivery of 1 MB images may lose one on a busy machine, and
    # each message here has a warning to check.
    images = node.create_publisher(Image, "/camera/image_raw", 10)
    infos = node.create_publisher(CameraInfo, "/camera/camera_info", 10)
    process = _start_node(processes, localization_map, "image_qos:=reliable")
    _wait_ready(node, executor, process, statuses)
    spin_until(node, executor, lambda: images.get_subscription_count() > 0, 10.0)
    rgb = load_image(sorted((localization_world / "mapping" / "images").iterdir())[10])
    truth_world_from_cam = load_tum(localization_world / "mapping" / "poses.tum")[1][10]
    K = load_map(localization_map).K(0)

    def send(msg, wait_s=1.5):
        images.publish(msg)
        spin_until(node, executor, lambda: False, wait_s)

    def answered(msg, nanosec):
        """Sent, and its ~/status arrived (so the next one is not dropped on a slow machine)."""
        images.publish(msg)
        assert spin_until(node, executor, lambda: any(s.header.stamp.nanosec == nanosec and s.state
                                                      != LocalizationStatus.UNINITIALIZED for s in statuses), 60.0)

    answered(_image_msg(rgb, 1), 1)  # no CameraInfo yet: the map's camera is assumed
    answered(_image_msg(rgb, 2, encoding="hsv8"), 2)
    answered(Image(encoding="rgb8"), 0)  # zero size
    infos.publish(_camera_info(320, 240, K))
    spin_until(node, executor, lambda: False, 0.5)
    answered(_image_msg(rgb, 3), 3)  # CameraInfo of another size
    infos.publish(_camera_info(rgb.shape[1], rgb.shape[0], K))
    spin_until(node, executor, lambda: False, 0.5)
    # Rejected frames are answered on ~/status with the reason, and counted.
    rejected = {s.header.stamp.nanosec: s for s in statuses if s.state == LocalizationStatus.LOST}
    assert rejected[2].reason_code == LocalizationStatus.REASON_UNDECODABLE_IMAGE and "hsv8" in rejected[2].reason
    assert rejected[0].reason_code == LocalizationStatus.REASON_UNDECODABLE_IMAGE  # the zero-size one
    assert rejected[3].reason_code == LocalizationStatus.REASON_CAMERA_MISMATCH and "320x240" in rejected[3].reason
    assert rejected[3].frames_rejected == 3 and rejected[3].frames_received == 4, rejected[3]
    statuses.clear()
    # A flood at 100 Hz: the node drops stale frames instead of queueing them.
    for index in range(150):
        images.publish(_image_msg(rgb, 1_000 + index))
        executor.spin_once(timeout_sec=0.0)
        time.sleep(0.01)
    spin_until(node, executor, lambda: False, 3.0)
    assert process.poll() is None, stop_process(process)[2][-3000:]
    frames = [s for s in statuses if s.state != LocalizationStatus.UNINITIALIZED]
    assert 0 < len(frames) < 150
    assert sum(s.dropped_frames for s in frames) > 0
    assert any(s.state in (LocalizationStatus.RELOCALIZING, LocalizationStatus.TRACKING) for s in frames)
    assert debug_images and (debug_images[-1].width, debug_images[-1].height) == (rgb.shape[1], rgb.shape[0])
    assert debug_images[-1].encoding == "rgb8" and len(debug_images[-1].data) == rgb.size
    assert diagnostics and diagnostics[-1].status[0].name == "pram_node: localization"
    assert {v.key for v in diagnostics[-1].status[0].values} >= {"state", "received", "dropped", "rejected",
                                                                  "rate_hz"}

    # ~/load_map: a map that cannot be read keeps the old one, and says why; a good one is used.
    load_map = node.create_client(LoadMap, "/pram_node/load_map")
    assert load_map.wait_for_service(timeout_sec=10.0)
    missing = localization_map.parent / "no_such_map.npz"
    future = load_map.call_async(LoadMap.Request(map_path=str(missing)))
    assert spin_until(node, executor, future.done, 30.0)
    assert not future.result().success and str(missing) in future.result().message, future.result()
    future = load_map.call_async(LoadMap.Request(map_path=str(localization_map)))
    assert spin_until(node, executor, future.done, 60.0)
    assert future.result().success and "used from the next frame" in future.result().message, future.result()

    # ~/relocalize answers, and the next frame is relocalized, not tracked.
    client = node.create_client(Trigger, "/pram_node/relocalize")
    assert client.wait_for_service(timeout_sec=10.0)
    future = client.call_async(Trigger.Request())
    assert spin_until(node, executor, future.done, 10.0) and future.result().success
    statuses.clear()
    send(_image_msg(rgb, 5_000), wait_s=3.0)
    assert [s.state for s in statuses if s.header.stamp.nanosec == 5_000] == [LocalizationStatus.RELOCALIZING]

    # /initialpose (base_link in map, as RViz sends it) is where tracking starts after a loss.
    StaticTfBroadcaster(node).send_transform(
        transform_stamped_msg(Time(), "base_link", "camera_optical_frame", BASE_FROM_CAMERA))
    send(_image_msg(np.zeros_like(rgb), 6_000))  # black: LOST, the track is forgotten
    hint = PoseWithCovarianceStamped()
    hint.header.frame_id = "map"
    hint.pose.pose = pose_msg_from_matrix(truth_world_from_cam @ np.linalg.inv(BASE_FROM_CAMERA))
    hints = node.create_publisher(PoseWithCovarianceStamped, "/initialpose", 10)
    spin_until(node, executor, lambda: hints.get_subscription_count() > 0, 10.0)
    # Sent until the node logs that it took it: a message published before the node's reader
    # has matched this new writer (or before the static transform reached it) is lost.
    took_hint = []
    node.create_subscription(Log, "/rosout", lambda log: took_hint.append(log) if "given on /initialpose" in log.msg else None, 100)
    for _ in range(20):
        hints.publish(hint)
        if spin_until(node, executor, lambda: bool(took_hint), 1.0):
            break
    assert took_hint, "pram_node never took the pose sent on /initialpose"
    spin_until(node, executor, lambda: False, 0.5)
    statuses.clear()
    send(_image_msg(rgb, 7_000), wait_s=3.0)
    assert [s.state for s in statuses if s.header.stamp.nanosec == 7_000] == [LocalizationStatus.TRACKING]

    # 10 s of undecodable frames after good ones: /diagnostics says so within 2 s, with the
    # reason, and every such frame's ~/status carries it.
    answered(_image_msg(rgb, 8_000), 8_000)
    diagnostics.clear()
    statuses.clear()
    first_bad_s = time.monotonic()
    warned_after_s = None
    for index in range(100):
        images.publish(_image_msg(rgb, 10_000 + index, encoding="hsv8"))
        spin_until(node, executor, lambda: False, 0.1)
        warns = [d for d in diagnostics if d.status[0].level == b"\x01" and "hsv8" in d.status[0].message]
        if warned_after_s is None and warns:
            warned_after_s = time.monotonic() - first_bad_s
    spin_until(node, executor, lambda: False, 1.0)
    print(f"/diagnostics WARN {warned_after_s} s after the first undecodable frame")
    assert warned_after_s is not None and warned_after_s <= 2.0, (warned_after_s, [
        (d.status[0].level, d.status[0].message) for d in diagnostics])
    bad = [s for s in statuses if s.header.stamp.nanosec >= 10_000]
    assert len(bad) >= 50, len(bad)  # a few may be dropped for newer ones (counted), never queued
    assert all(s.reason_code == LocalizationStatus.REASON_UNDECODABLE_IMAGE and "hsv8" in s.reason for s in bad)
    assert bad[-1].frames_rejected >= bad[0].frames_rejected + len(bad) - 1

    code, _, err = stop_process(process)
    assert code == 0, err[-3000:]
    assert "Traceback" not in err
    assert "no CameraInfo on /camera/camera_info" in err
    assert "unsupported image encoding 'hsv8'" in err
    assert "zero-size image" in err
    assert "CameraInfo says 320x240, the image is 640x480" in err


def test_node_refuses_a_missing_map(processes, tmp_path):
    missing = tmp_path / "no_such_map.npz"
    process = processes.start([venv_executable("pram_node"), "--ros-args", "-p", f"map_path:={missing}"])
    try:
        _, err = process.communicate(timeout=60)
    except Exception:  # noqa: BLE001
        pytest.fail("pram_node kept running without its map")
    assert process.returncode == 2
    assert str(missing) in err and "Traceback" not in err


def test_node_refuses_a_localizer_parameter_out_of_range(processes, tmp_path):
    """Localizer parameters are declared with their ranges: a bad one stops the node with
    one line naming it, before the map is read."""
    process = processes.start([venv_executable("pram_node"), "--ros-args", "-p", f"map_path:={tmp_path / 'm.npz'}",
                               "-p", "min_inliers:=2"])
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2, err[-2000:]
    assert "min_inliers" in err and "[6, 10000]" in err and "Traceback" not in err, err[-2000:]


def test_params_file_lists_every_declared_parameter_with_its_default():
    """The node declares its own parameters and the localizer's from one definition each
    (NodeParams, LocalizerConfig); config/pram.yaml must list exactly those, with their defaults."""
    params = yaml.safe_load((REPO / "config" / "pram.yaml").read_text())["pram_node"]["ros__parameters"]
    specs = parameter_specs()
    names = [spec.name for spec in specs]
    assert len(set(names)) == len(names), "a node parameter and a localizer parameter share a name"
    assert {f.name for f in fields(NodeParams)} | {f.name for f in fields(LocalizerConfig)} == set(names)
    assert set(params) == set(names), \
        f"only in pram.yaml: {set(params) - set(names)}; not in pram.yaml: {set(names) - set(params)}"
    differ = {spec.name: (params[spec.name], spec.default) for spec in specs if params[spec.name] != spec.default}
    assert not differ, f"pram.yaml and the declared defaults differ (yaml, declared): {differ}"
    for spec in specs:
        assert spec.doc, spec.name
        if spec.low is not None:
            assert spec.low <= spec.default <= spec.high, spec
        if spec.choices is not None:
            assert spec.default in spec.choices, spec


def test_cli_eval_live_reports_a_bag_replayed_through_the_node(processes, localization_world, localization_map,
                                                                 tmp_path):
    """`pram eval --live` (what `make demo` runs): the node and `pram replay --clock` as
    processes, a report over the frames the node processed, every bag frame accounted for.
    The bag holds JPEG CompressedImage, as most recorded bags do: the node reads them."""
    from pram_ros.io.rosbag import write_sequence_bag

    bag = tmp_path / "jpeg_bag"
    write_sequence_bag(localization_world / "mapping", bag, image_format="jpeg")
    report = tmp_path / "report"
    process = processes.start([venv_executable("pram"), "eval", "--live", "--map", str(localization_map),
                               "--bag", str(bag), "--out", str(report),
                               "--rate", "0.5", "--threads", "2"])
    out, err = process.communicate(timeout=240)  # on a timeout the fixture stops it
    assert process.returncode == 0, out[-2000:] + err[-3000:]
    assert "frames processed" in out and "node latency" in out, out
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["frames_in_bag"] == 40
    assert metrics["frames_processed"] + metrics["dropped_frames"] + metrics["not_received"] == 40, metrics
    assert metrics["frames_processed"] >= 12 and metrics["not_received"] <= 4, metrics
    # The mapping path turns on the spot for half its frames (nothing kept there to localize against).
    assert metrics["wrong_ratio"] == 0 and metrics["recall_5cm_5deg"] >= 0.3, metrics
    latency = metrics["latency_ms"]["node_latency_ms"]
    assert latency["frames"] == metrics["frames_processed"] and 0 < latency["p50"] < 5000, latency
    assert (report / "trajectory.tum").stat().st_size > 0 and (report / "trajectory.png").exists()
    # The frames the node processed, each with its state and, when LOST, the node's reason.
    import csv

    rows = list(csv.DictReader((report / "frames.csv").open()))
    assert len(rows) == metrics["frames_processed"]
    assert all(row["reason_code"] != "NONE" and row["reason"] for row in rows if row["state"] == "LOST"), rows


def test_lifecycle_node_takes_compressed_images_only_while_active(ros_node, processes, localization_world,
                                                                  localization_map):
    """Nav2-style bring-up: nothing loaded before configure, no frames taken before activate
    or after deactivate; image_transport compressed reads <image_topic>/compressed."""
    import cv2
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState
    from sensor_msgs.msg import CompressedImage

    node, executor = ros_node
    statuses, poses = [], []
    node.create_subscription(LocalizationStatus, "/pram_node/status", statuses.append, 50)
    node.create_subscription(PoseWithCovarianceStamped, "/pram_node/pose", poses.append, 50)
    images = node.create_publisher(CompressedImage, "/camera/image_raw/compressed", 10)
    process = processes.start([
        venv_executable("pram_lifecycle_node"), "--ros-args", "--params-file", str(REPO / "config" / "pram.yaml"),
        "-p", f"map_path:={localization_map}", "-p", "image_topic:=/camera/image_raw", "-p", "image_qos:=reliable",
        "-p", "camera_info_topic:=/camera/camera_info", "-p", "status_period_s:=0.5",
        "-p", "image_transport:=compressed"])
    change_state = node.create_client(ChangeState, "/pram_node/change_state")
    assert change_state.wait_for_service(timeout_sec=60.0), stop_process(process)[2][-3000:]

    def transition(transition_id: int) -> bool:
        future = change_state.call_async(ChangeState.Request(transition=Transition(id=transition_id)))
        assert spin_until(node, executor, future.done, 120.0), f"transition {transition_id} did not answer"
        return future.result().success

    rgb = load_image(sorted((localization_world / "mapping" / "images").iterdir())[10])
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()

    def compressed(nanosec: int) -> CompressedImage:
        msg = CompressedImage(format="rgb8; jpeg compressed bgr8", data=jpeg)
        msg.header.stamp.nanosec, msg.header.frame_id = nanosec, "camera_optical_frame"
        return msg

    def frame_status(nanosec: int):
        return [s for s in statuses if s.header.stamp.nanosec == nanosec and s.state != LocalizationStatus.UNINITIALIZED]

    spin_until(node, executor, lambda: False, 1.0)
    assert not statuses, "unconfigured, the node publishes nothing"
    assert transition(Transition.TRANSITION_CONFIGURE)
    assert spin_until(node, executor, lambda: statuses, 10.0)
    assert statuses[-1].reason_code == LocalizationStatus.REASON_INACTIVE, statuses[-1]
    assert images.get_subscription_count() == 0, "inactive, the node does not subscribe to the camera"

    assert transition(Transition.TRANSITION_ACTIVATE)
    assert spin_until(node, executor, lambda: images.get_subscription_count() > 0, 10.0)
    images.publish(compressed(2))
    assert spin_until(node, executor, lambda: frame_status(2), 60.0), stop_process(process)[2][-3000:]
    assert frame_status(2)[0].state == LocalizationStatus.RELOCALIZING, frame_status(2)[0]
    assert spin_until(node, executor, lambda: poses, 5.0)

    assert transition(Transition.TRANSITION_DEACTIVATE)
    assert spin_until(node, executor, lambda: images.get_subscription_count() == 0, 10.0)
    # Paused, then resumed: the map stayed loaded, and the next frame is localized.
    assert transition(Transition.TRANSITION_ACTIVATE)
    assert spin_until(node, executor, lambda: images.get_subscription_count() > 0, 10.0)
    images.publish(compressed(3))
    assert spin_until(node, executor, lambda: frame_status(3), 60.0), stop_process(process)[2][-3000:]
    assert frame_status(3)[0].state in (LocalizationStatus.RELOCALIZING, LocalizationStatus.TRACKING)
    assert transition(Transition.TRANSITION_DEACTIVATE)
    assert transition(Transition.TRANSITION_CLEANUP)
    statuses.clear()
    spin_until(node, executor, lambda: False, 1.5)
    assert not statuses, "cleaned up, the node publishes nothing"
    assert transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
    code, _, err = stop_process(process)
    assert code == 0 and "Traceback" not in err, err[-3000:]


def test_node_refuses_a_missing_params_file(processes, tmp_path):
    missing = tmp_path / "no_such_params.yaml"
    process = processes.start([venv_executable("pram_node"), "--ros-args", "--params-file", str(missing)])
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2 and f"--params-file {missing}: no such file" in err and "Traceback" not in err


def test_node_takes_every_image_encoding(ros_node, processes, localization_world, localization_map):
    """One frame in each encoding (and JPEG/PNG on a compressed node's topic is covered by
    the lifecycle test): each is decoded and localized, none rejected."""
    from test_image_msgs import encoded

    from pram_ros.io.image_msgs import IMAGE_ENCODINGS

    node, executor = ros_node
    statuses = []
    node.create_subscription(LocalizationStatus, "/pram_node/status", statuses.append, 100)
    images = node.create_publisher(Image, "/camera/image_raw", 10)
    process = _start_node(processes, localization_map, "image_qos:=reliable", "debug_image:=false")
    _wait_ready(node, executor, process, statuses)
    assert spin_until(node, executor, lambda: images.get_subscription_count() > 0, 10.0)
    rgb = load_image(sorted((localization_world / "mapping" / "images").iterdir())[10])
    answers = {}
    for index, encoding in enumerate(IMAGE_ENCODINGS, start=1):
        pixels = np.ascontiguousarray(encoded(encoding, rgb))
        msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, is_bigendian=0,
                    step=pixels.shape[1] * pixels.shape[2] * pixels.dtype.itemsize, data=pixels.tobytes())
        msg.header.stamp.nanosec, msg.header.frame_id = index, "camera_optical_frame"
        node.get_logger().debug(encoding)
        images.publish(msg)
        assert spin_until(node, executor, lambda: any(s.header.stamp.nanosec == index for s in statuses), 60.0), \
            f"no status for {encoding}: {stop_process(process)[2][-2000:]}"
        answers[encoding] = next(s for s in statuses if s.header.stamp.nanosec == index)
    rejected = {e: s.reason for e, s in answers.items() if s.frames_rejected and s.reason_code in (
        LocalizationStatus.REASON_UNDECODABLE_IMAGE, LocalizationStatus.REASON_CAMERA_MISMATCH)}
    assert not rejected, rejected
    lost = {e: s.reason for e, s in answers.items() if s.state == LocalizationStatus.LOST}
    assert not lost, lost
    code, _, err = stop_process(process)
    assert code == 0 and "Traceback" not in err, err[-3000:]


def _resequenced(sequence: Path, frames: list[int], out: Path) -> Path:
    """A sequence folder of `sequence`'s frames in the order given, 10 Hz stamps."""
    import shutil

    from pram_ros.io.tum import save_tum

    stamps_ns, world_from_cam = load_tum(sequence / "poses.tum")
    images = sorted((sequence / "images").glob("*.png"))
    (out / "images").mkdir(parents=True)
    for position, frame in enumerate(frames):
        (out / "images" / f"{position:06d}.png").symlink_to(images[frame])
    shutil.copy(sequence / "camera.yaml", out / "camera.yaml")
    save_tum(out / "poses.tum", stamps_ns[0] + 100_000_000 * np.arange(len(frames)), world_from_cam[frames])
    return out


def test_node_keeps_up_with_a_fast_camera(processes, smooth_query_world, localization_map, tmp_path):
    """A bag at 3x its rate (30 Hz) through the node's old loop (the newest frame only, all on
    one thread) and its default (frames wait in order while tracking, each followed by
    optical flow, the track's full frames on a second thread): the default processes more
    of the frames. Counts, not times, with wide margins; every frame is accounted for, none
    wrong, and the node does not fall ever further behind."""
    from conftest import SMOOTH_FRAMES
    from pram_ros.evaluation.live import LiveConfig, run_live
    from pram_ros.io.rosbag import write_sequence_bag

    # The part of the path the map covers and the flow follows: there, back and there again.
    first, last = SMOOTH_FRAMES[0], SMOOTH_FRAMES[-1]
    frames = list(range(first, last + 1)) + list(range(last - 1, first - 1, -1)) + list(range(first + 1, last + 1))
    sequence = _resequenced(smooth_query_world / "query_offpath", frames, tmp_path / "there_and_back")
    bag = tmp_path / "there_and_back_bag"
    write_sequence_bag(sequence, bag)
    ways = {"old": {"max_waiting_frames": "1", "full_frames_in_background": "false"}, "default": {}}
    runs = {name: run_live(LiveConfig(localization_map, bag, tmp_path / name, rate=3.0, node_params=params))
            for name, params in ways.items()}
    for name, metrics in runs.items():
        assert metrics["frames_processed"] + metrics["dropped_frames"] + metrics["not_received"] == len(frames), \
            (name, metrics)
    counts = {name: metrics["frames_processed"] for name, metrics in runs.items()}
    for name in ("default",):
        metrics = runs[name]
        assert metrics["wrong_ratio"] == 0, (name, metrics)
        assert counts[name] >= counts["old"] + 6, f"frames processed: {counts}"
        # A queue that kept growing would leave the node seconds behind; it holds 6 frames (0.2 s).
        assert metrics["latency_ms"]["node_latency_ms"]["p50"] < 500, (name, metrics["latency_ms"])
