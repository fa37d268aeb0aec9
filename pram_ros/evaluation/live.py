"""`pram eval --live`: a bag replayed through a running pram_node over DDS, in real time.

Starts `pram_node` (a process, with use_sim_time) and `pram replay --clock` on the bag,
listens to ~/pose and ~/status, and stops both when the bag ends. The report is the
offline one (metrics.json, trajectory.tum, plots) over the frames the node processed,
plus what only a live run shows: frames dropped, the achieved rate, and the node's latency
from the image stamp to publication. The node measures it on its clock, the bag's /clock,
which runs `rate` times as fast as the wall: it is divided by the rate into wall-clock ms.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pram_ros.evaluation.report import SequenceRun, write_report
from pram_ros.io.image_msgs import recorded_image_topic
from pram_ros.io.rosbag import bag_topics, deserialize, iter_bag_messages
from pram_ros.localization import Reason, Result, State

logger = logging.getLogger(__name__)

_STATES = {1: State.RELOCALIZED, 2: State.TRACKED, 3: State.LOST}


@dataclass
class LiveConfig:
    map_path: Path
    bag: Path
    out: Path
    rate: float = 1.0
    image_topic: str = "/camera/image_raw"
    camera_info_topic: str = "/camera/camera_info"
    ground_truth_topic: str = "/ground_truth/pose"
    params_file: Path | None = None  # default: the package's config/pram.yaml
    node_params: dict = field(default_factory=dict)  # more -p NAME:=VALUE
    start_timeout_s: float = 120.0


def _executable(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def stop_process(process: subprocess.Popen, timeout_s: float = 15.0) -> str:
    """SIGINT (a ROS node shuts down cleanly), then kill after `timeout_s`; -> its stderr."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        _, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return err or ""


def _ground_truth(bag: Path, topic: str) -> dict[int, np.ndarray]:
    from pram_ros.ros.tf import matrix_from_pose_msg, ns_from_time_msg

    truth = {}
    for _, msgtype, _, raw in iter_bag_messages(bag, [topic]):
        message = deserialize(raw, msgtype)
        truth[ns_from_time_msg(message.header.stamp)] = matrix_from_pose_msg(message.pose)
    if not truth:
        raise ValueError(f"{bag}: no {topic} messages: live evaluation needs ground truth in the bag")
    return truth


def _accounted(statuses: dict, truth: dict) -> int:
    """Frames of the bag the node has answered for: its statuses, plus the frames it dropped."""
    answered = [status for stamp, status in list(statuses.items()) if stamp in truth]
    return len(answered) + sum(int(status.dropped_frames) for status in answered)


def run_live(config: LiveConfig) -> dict:
    import rclpy
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.executors import SingleThreadedExecutor

    from pram_ros.msg import LocalizationStatus
    from pram_ros.ros.tf import matrix_from_pose_msg, ns_from_time_msg

    truth = _ground_truth(config.bag, config.ground_truth_topic)
    # The node subscribes to IMAGE/compressed for a bag of compressed images; the replay
    # starts once it has: frames sent before that are lost.
    played_image_topic = recorded_image_topic(config.image_topic, bag_topics(config.bag), str(config.bag))
    transport = "raw" if played_image_topic == config.image_topic else "compressed"
    params_file = config.params_file or Path(__file__).resolve().parents[2] / "config" / "pram.yaml"
    # Reliable images: on a loaded machine best-effort delivery of 1 MB messages loses many
    # in transport, which would hide what the node itself keeps up with (its drops are counted).
    params = {"map_path": str(config.map_path), "image_topic": config.image_topic,
              "camera_info_topic": config.camera_info_topic, "use_sim_time": "true", "image_qos": "reliable",
              "image_transport": transport,
              **config.node_params}
    node_cmd = [_executable("pram_node"), "--ros-args"]
    if params_file.exists():
        node_cmd += ["--params-file", str(params_file)]
    for name, value in params.items():
        node_cmd += ["-p", f"{name}:={value}"]

    context = rclpy.Context()
    rclpy.init(context=context)
    listener = rclpy.create_node("pram_eval_live", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(listener)
    poses, statuses = {}, {}
    listener.create_subscription(PoseWithCovarianceStamped, "/pram_node/pose",
                                 lambda m: poses.__setitem__(ns_from_time_msg(m.header.stamp), m), 100)
    idle_seen = []

    def on_status(message) -> None:
        # An idle status is stamped with the node's clock, which under use_sim_time can equal
        # a frame's stamp: it must never replace that frame's status.
        if message.state == LocalizationStatus.UNINITIALIZED:
            idle_seen.append(message)
        else:
            statuses[ns_from_time_msg(message.header.stamp)] = message

    listener.create_subscription(LocalizationStatus, "/pram_node/status", on_status, 100)
    processes: list[subprocess.Popen] = []
    env = dict(os.environ)
    try:
        node = subprocess.Popen(node_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        processes.append(node)
        deadline = time.monotonic() + config.start_timeout_s
        while not idle_seen and node.poll() is None and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)  # the node's first (idle) status: map and model loaded
        if not idle_seen:
            raise RuntimeError(f"pram_node did not start: {stop_process(node)[-2000:]}")
        statuses.clear()
        logger.info("pram_node is up; replaying %s at rate %.2f", config.bag, config.rate)
        replay = subprocess.Popen([_executable("pram"), "replay", "--bag", str(config.bag), "--rate", str(config.rate),
                                   "--clock", "--delay", "1.0", "--wait-for", played_image_topic],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True, env=env)
        processes.append(replay)
        started = time.monotonic()
        while replay.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        wall_s = time.monotonic() - started
        if replay.returncode != 0:
            raise RuntimeError(f"pram replay failed: {stop_process(replay)[-2000:]}")
        # The last frames' statuses may still be on their way: wait for every frame of the
        # bag to be accounted for (processed, or counted as dropped), 3 s at most.
        settle = time.monotonic() + 3.0
        while time.monotonic() < settle and _accounted(statuses, truth) < len(truth):
            executor.spin_once(timeout_sec=0.1)
        node_log = stop_process(node)
        if node.returncode not in (0, None):
            logger.warning("pram_node exited with %s: %s", node.returncode, node_log[-2000:])
    finally:
        for process in processes:
            if process.poll() is None:
                stop_process(process)
        executor.shutdown()
        listener.destroy_node()
        rclpy.shutdown(context=context)

    # One row per frame the node processed (its status), its pose when it had one.
    stamps = sorted(s for s in statuses if statuses[s].state != LocalizationStatus.UNINITIALIZED and s in truth)
    results = []
    for stamp_ns in stamps:
        status = statuses[stamp_ns]
        state = _STATES.get(status.state, State.LOST)
        pose = poses.get(stamp_ns)
        localized = state != State.LOST and pose is not None and pose.pose.covariance[0] < 1.0
        cam_from_world = np.linalg.inv(matrix_from_pose_msg(pose.pose.pose)) if localized else None
        timings = {"features_ms": status.features_ms, "recognition_ms": status.recognition_ms,
                   "registration_ms": status.registration_ms, "total_ms": status.total_ms,
                   "node_latency_ms": status.latency_ms / config.rate}
        timings = {k: float(v) for k, v in timings.items() if v > 0 or k in ("total_ms", "node_latency_ms")}
        reason = Reason(status.reason_code) if status.reason_code in iter(Reason) else Reason.NONE
        results.append(Result(stamp_ns, state if localized else State.LOST, cam_from_world, timings_ms=timings,
                              num_inliers=int(status.num_inliers), message="" if localized else status.reason,
                              reason=Reason.NONE if localized else reason))
    frames_in_bag = len(truth)
    bag_s = (max(truth) - min(truth)) * 1e-9 * frames_in_bag / max(frames_in_bag - 1, 1)
    replay_s = bag_s / config.rate
    dropped = sum(int(statuses[s].dropped_frames) for s in stamps)
    run = SequenceRun(np.array(stamps, np.int64), np.array([truth[s] for s in stamps]).reshape(-1, 4, 4), results)
    info = {"method": "pram_node (live)", "map": str(config.map_path), "bag": str(config.bag), "rate": config.rate,
            "frames_in_bag": frames_in_bag, "frames_processed": len(stamps), "dropped_frames": dropped,
            "not_received": frames_in_bag - len(stamps) - dropped,
            "achieved_rate_hz": round(len(stamps) / replay_s, 3) if replay_s > 0 else None,
            "input_rate_hz": round(frames_in_bag / replay_s, 3) if replay_s > 0 else None,
            "replay_wall_s": round(wall_s, 3)}
    return write_report(config.out, run, info)
