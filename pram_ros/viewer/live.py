"""`pram view --live`: a running pram_node's topics in a rerun recording (the one rclpy module here).

In: the node's topics, /NODE/pose (PoseWithCovarianceStamped, only while localized),
/NODE/status (pram_ros/LocalizationStatus), /NODE/map_points (PointCloud2, latched) and
/NODE/debug_image (rgb8). Out, on the `stamp` timeline (the image stamps):
  world/live/map_points   Points3D in the cloud's colours (the landmark colours), static
  world/live/camera       Transform3D and axes: the latest pose
  world/live/trajectory   LineStrips3D: every pose so far
  live/debug_image        the debug image (JPEG)
  live/state, live/inliers, live/total_ms, live/latency_ms   Scalars per status
  log                     a TextLog line whenever the state changes, with the reason
Runs until Ctrl-C or `duration_s`; returns a one-line count of what arrived.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import cv2
import numpy as np
import rerun as rr

from pram_ros.viewer.map_view import POINT_RADIUS_UI, WORLD, log_world_frame

logger = logging.getLogger(__name__)

LIVE = f"{WORLD}/live"
AXIS_LENGTH_M = 0.3
JPEG_QUALITY = 80
SPIN_TIMEOUT_S = 0.1
TRAJECTORY_RGB8 = (31, 119, 180)  # the report's estimate colour


@dataclass
class LiveConfig:
    node: str = "pram_node"
    duration_s: float | None = None  # None: until Ctrl-C


def cloud_xyz_rgb(msg) -> tuple[np.ndarray, np.ndarray | None]:
    """PointCloud2 with float32 x, y, z and an optional packed rgb -> ([N x 3] float32, [N x 3] uint8 or None)."""
    offsets = {f.name: f.offset for f in msg.fields}
    if not {"x", "y", "z"} <= set(offsets):
        raise ValueError(f"PointCloud2 without x, y, z fields ({sorted(offsets)})")
    names = [n for n in ("x", "y", "z", "rgb") if n in offsets]
    endian = ">" if msg.is_bigendian else "<"
    dtype = np.dtype({"names": names, "offsets": [offsets[n] for n in names],
                      "formats": [endian + ("u4" if n == "rgb" else "f4") for n in names], "itemsize": msg.point_step})
    points = np.frombuffer(bytes(msg.data), dtype=dtype, count=msg.width * msg.height)
    xyz = np.stack([points["x"], points["y"], points["z"]], axis=1)
    if "rgb" not in names:
        return xyz, None
    packed = points["rgb"]
    rgb = np.stack([(packed >> 16) & 0xFF, (packed >> 8) & 0xFF, packed & 0xFF], axis=1).astype(np.uint8)
    return xyz, rgb


class LiveLogger:
    """Subscriptions of one node's topics; each callback logs what it got."""

    def __init__(self, node, recording: rr.RecordingStream, target: str) -> None:
        from geometry_msgs.msg import PoseWithCovarianceStamped
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import Image, PointCloud2

        from pram_ros.msg import LocalizationStatus

        self.recording = recording
        self.counts = {"poses": 0, "statuses": 0, "images": 0, "map points": 0}
        self.trajectory: list[np.ndarray] = []
        self.last_state: int | None = None
        self.state_names = {value: name for name, value in vars(LocalizationStatus).items()
                            if name in ("UNINITIALIZED", "RELOCALIZING", "TRACKING", "LOST")}
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        base = "/" + target.strip("/")
        self.subscriptions = [
            node.create_subscription(PoseWithCovarianceStamped, f"{base}/pose", self._on_pose, 10),
            node.create_subscription(LocalizationStatus, f"{base}/status", self._on_status, 10),
            node.create_subscription(PointCloud2, f"{base}/map_points", self._on_points, latched),
            node.create_subscription(Image, f"{base}/debug_image", self._on_image, qos_profile_sensor_data),
        ]

    def _set_time(self, header) -> None:
        stamp_ns = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
        self.recording.set_time("stamp", timestamp=np.datetime64(stamp_ns, "ns"))

    def _on_points(self, msg) -> None:
        xyz, rgb = cloud_xyz_rgb(msg)
        self.recording.log(f"{LIVE}/map_points",
                           rr.Points3D(xyz, colors=rgb, radii=rr.Radius.ui_points(POINT_RADIUS_UI)), static=True)
        self.counts["map points"] = len(xyz)

    def _on_pose(self, msg) -> None:
        from pram_ros.ros.tf import matrix_from_pose_msg

        world_from_cam = matrix_from_pose_msg(msg.pose.pose)
        self._set_time(msg.header)
        self.recording.log(f"{LIVE}/camera", rr.Transform3D(translation=world_from_cam[:3, 3],
                                                             mat3x3=world_from_cam[:3, :3]),
                           rr.TransformAxes3D(AXIS_LENGTH_M))
        self.trajectory.append(world_from_cam[:3, 3])
        self.recording.log(f"{LIVE}/trajectory", rr.LineStrips3D([np.array(self.trajectory)], colors=TRAJECTORY_RGB8))
        self.counts["poses"] += 1

    def _on_status(self, msg) -> None:
        self._set_time(msg.header)
        for name, value in (("state", msg.state), ("inliers", msg.num_inliers), ("total_ms", msg.total_ms),
                            ("latency_ms", msg.latency_ms)):
            self.recording.log(f"live/{name}", rr.Scalars(float(value)))
        if msg.state != self.last_state:
            name = self.state_names.get(msg.state, str(msg.state))
            level = rr.TextLogLevel.WARN if name == "LOST" else rr.TextLogLevel.INFO
            self.recording.log("log", rr.TextLog(f"{name}" + (f": {msg.reason}" if msg.reason else ""), level=level))
            self.last_state = msg.state
        self.counts["statuses"] += 1

    def _on_image(self, msg) -> None:
        from pram_ros.io.image_msgs import decode_image

        rgb = decode_image(msg)
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
        ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if ok:
            self._set_time(msg.header)
            self.recording.log("live/debug_image", rr.EncodedImage(contents=jpeg.tobytes(), media_type="image/jpeg"))
            self.counts["images"] += 1

    def describe(self) -> str:
        return "live: " + ", ".join(f"{count} {what}" for what, count in self.counts.items())


def run_live(recording: rr.RecordingStream, config: LiveConfig) -> str:
    """Log the node's topics until Ctrl-C or the duration; -> what arrived, in one line."""
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    log_world_frame(recording)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("pram_view", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    live = LiveLogger(node, recording, config.node)
    deadline = None if config.duration_s is None else time.monotonic() + config.duration_s
    try:
        while deadline is None or time.monotonic() < deadline:
            executor.spin_once(timeout_sec=SPIN_TIMEOUT_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        logger.info("stopping: %s", live.describe())
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    return live.describe()
