"""`pram_node`: live relocalization from camera images against a PRAM map.

A thin adapter around `Localizer`: image messages in, the Localizer's `Result` out as
~/pose (PoseWithCovarianceStamped), ~/pose_stamped, ~/status, TF, markers and a debug
image. The image callback only stores the newest frame; the process's main thread
localizes it (`localize_until_shutdown`) while the executor spins in a second thread, so
callbacks never wait on the model and stale frames are dropped (and counted), never queued.
Localization runs on the main thread because torch's intra-op threads served it a third
slower from another thread (XFeat p50 83-90 ms against 61-66 ms, measured).

TF: map -> camera optical frame by default; with `odom_frame` set, map -> odom composed with
odom -> camera at the image stamp (REP-105), and ~/pose is then the pose of `base_frame`.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from dataclasses import fields

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from pram_ros.geometry import attached_frame_covariance, invert, world_from_cam_covariance
from pram_ros.io.camera import check_distortion
from pram_ros.io.rosbag import decode_image
from pram_ros.localization import LOST_VARIANCE, Localizer, LocalizerConfig, Result, State
from pram_ros.localization.loading import create_localizer, load_parts
from pram_ros.msg import LocalizationStatus
from pram_ros.ros import convert
from pram_ros.ros.params import NodeParams, parameter_specs
from pram_ros.ros.tf import (
    TfBroadcaster,
    TfBuffer,
    TfListener,
    TfLookupError,
    matrix_from_pose_msg,
    ns_from_time_msg,
    pose_msg_from_matrix,
    transform_stamped_msg,
)
from pram_ros.settings import Spec, check_value

STATE_TO_STATUS = {
    State.UNINITIALIZED: LocalizationStatus.UNINITIALIZED,
    State.RELOCALIZED: LocalizationStatus.RELOCALIZING,
    State.TRACKED: LocalizationStatus.TRACKING,
    State.LOST: LocalizationStatus.LOST,
}
WARN_EVERY_S = 5.0


def _descriptor(spec: Spec) -> ParameterDescriptor:
    """The ROS descriptor of a setting: its doc, and its range or choices."""
    descriptor = ParameterDescriptor(description=spec.doc)
    if spec.low is None:
        pass  # a bool or a string
    elif isinstance(spec.default, int):
        descriptor.integer_range = [IntegerRange(from_value=int(spec.low), to_value=int(spec.high), step=1)]
    else:
        descriptor.floating_point_range = [FloatingPointRange(from_value=float(spec.low), to_value=float(spec.high),
                                                              step=0.0)]
    if spec.choices is not None:
        descriptor.additional_constraints = spec.allowed
    return descriptor


def declare_params(node: Node) -> tuple[NodeParams, LocalizerConfig]:
    """Declare every parameter with its description and range; raise ValueError on a bad value."""
    values = {}
    for spec in parameter_specs():
        try:
            value = node.declare_parameter(spec.name, spec.default, _descriptor(spec)).value
        except ParameterException as error:  # out of range or of the wrong type
            raise ValueError(f"parameter {spec.name} refused: {error} (allowed: {spec.allowed})") from None
        check_value(spec, value, f"parameter {spec.name}")
        values[spec.name] = value
    node_names = {f.name for f in fields(NodeParams)}
    params = NodeParams(**{k: v for k, v in values.items() if k in node_names})
    config = LocalizerConfig(**{k: v for k, v in values.items() if k not in node_names})
    if not params.map_path:
        raise ValueError("parameter map_path is empty: give the map file (pram map build --out MAP)")
    return params, config


class PramNode(Node):
    def __init__(self) -> None:
        super().__init__("pram_node")
        self.params, config = declare_params(self)
        self.localizer = self._build_localizer(config)
        self._camera_info: CameraInfo | None = None
        self._lock = threading.Lock()
        self._newest: Image | None = None
        self._pending_hint: np.ndarray | None = None  # cam_from_world from /initialpose
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._counts = {"received": 0, "processed": 0, "dropped": 0, "dropped_since_status": 0, "localized": 0}
        self._last_result: Result | None = None
        self._last_latency_ms = float("nan")
        self._rate_window: list[float] = []
        self._warned_at: dict[str, float] = {}

        p = self.params
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        self.pose_publisher = self.create_publisher(PoseWithCovarianceStamped, "~/pose", 10)
        self.pose_stamped_publisher = self.create_publisher(PoseStamped, "~/pose_stamped", 10)
        self.status_publisher = self.create_publisher(LocalizationStatus, "~/status", 10)
        self.landmarks_publisher = self.create_publisher(MarkerArray, "~/landmarks", latched)
        self.recognized_publisher = self.create_publisher(MarkerArray, "~/recognized_landmarks", 10)
        self.points_publisher = self.create_publisher(PointCloud2, "~/map_points", latched)
        self.debug_publisher = self.create_publisher(Image, "~/debug_image", qos_profile_sensor_data)
        self.diagnostics_publisher = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.tf_buffer = TfBuffer()
        self.tf_listener = TfListener(self, self.tf_buffer, ignore_parents=(p.map_frame,))
        self.tf_broadcaster = TfBroadcaster(self)

        image_qos = qos_profile_sensor_data if p.image_qos == "sensor_data" else QoSProfile(depth=5)
        self.create_subscription(Image, p.image_topic, self._on_image, image_qos)
        self.create_subscription(CameraInfo, p.camera_info_topic, self._on_camera_info, qos_profile_sensor_data)
        self.create_subscription(PoseWithCovarianceStamped, "/initialpose", self._on_initial_pose, 10)
        self.create_service(Trigger, "~/relocalize", self._on_relocalize)
        # Wall time: with use_sim_time the status must still come before a /clock does.
        self.create_timer(p.status_period_s, self._on_timer, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._publish_map()
        self.get_logger().info(
            f"localizing {p.image_topic} against {p.map_path} ({self.localizer.map.num_landmarks} landmarks, "
            f"{self.localizer.map.num_points} points); TF {'map->' + (p.odom_frame or 'camera') if p.publish_tf else 'off'}")

    # -- set-up ---------------------------------------------------------------------------
    def _build_localizer(self, config: LocalizerConfig) -> Localizer:
        p = self.params
        parts = load_parts(p.map_path, p.model_path or None, num_threads=p.num_threads, device=p.device)
        built_with = parts.map.extractor_config().get("name")
        if p.feature_preset and p.feature_preset != built_with:
            raise ValueError(f"parameter feature_preset {p.feature_preset!r}: {parts.map_path} was built with "
                             f"{built_with!r} features; rebuild the map to change them")
        return create_localizer("pram", parts, config)

    def _publish_map(self) -> None:
        pram_map = self.localizer.map
        header = Header(frame_id=self.params.map_frame, stamp=self.get_clock().now().to_msg())
        self.landmarks_publisher.publish(
            convert.landmark_markers(header, pram_map.landmark_centroid, pram_map.landmark_extent))
        colors = convert.landmark_rgb8(pram_map.point_landmark.astype(np.int64))
        self.points_publisher.publish(convert.point_cloud_msg(header, pram_map.point_xyz, colors))

    # -- callbacks (never wait on the model) ------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        with self._lock:
            if self._newest is not None:
                self._counts["dropped"] += 1
                self._counts["dropped_since_status"] += 1
            self._newest = msg
            self._counts["received"] += 1
        self._wake.set()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _on_relocalize(self, request, response):
        self.localizer.request_relocalization()
        response.success = True
        response.message = "relocalizing on the next frame"
        return response

    def _on_initial_pose(self, msg: PoseWithCovarianceStamped) -> None:
        p = self.params
        if msg.header.frame_id.lstrip("/") != p.map_frame:
            self.get_logger().warning(f"/initialpose in {msg.header.frame_id!r}, not {p.map_frame!r}: ignored")
            return
        map_from_base = matrix_from_pose_msg(msg.pose.pose)
        camera_frame = self._camera_frame(self._newest)
        try:
            base_from_cam = self.tf_buffer.lookup(p.base_frame, camera_frame, None)
        except TfLookupError as error:
            self.get_logger().warning(f"/initialpose ignored: no {p.base_frame} -> {camera_frame} transform ({error})")
            return
        with self._lock:  # applied by the localization loop between frames, never during one
            self._pending_hint = invert(map_from_base @ base_from_cam)
        self.get_logger().info("tracking from the pose given on /initialpose")

    # -- the localization loop --------------------------------------------------------------
    def localize_until_shutdown(self) -> None:
        """Localize the newest frame, again and again, until `stop()` or the context ends."""
        while not self._stop.is_set() and self.context.ok():
            if not self._wake.wait(timeout=0.2):
                continue
            with self._lock:
                msg, self._newest = self._newest, None
                hint, self._pending_hint = self._pending_hint, None
                self._wake.clear()
            if hint is not None:
                self.localizer.set_pose_hint(hint)
            if msg is None:
                continue
            try:
                self._process(msg)
            except Exception as error:  # noqa: BLE001 - one bad frame must not stop the node
                self._warn(f"frame skipped: {type(error).__name__}: {error}", key=type(error).__name__)

    def _process(self, msg: Image) -> None:
        stamp_ns = ns_from_time_msg(msg.header.stamp)
        try:
            image = decode_image(msg)
        except ValueError as error:
            self._warn(f"{self.params.image_topic}: {error}; frame skipped")
            return
        problem = self._camera_problem(image)
        if problem:
            self._warn(problem + "; frame skipped")
            result = Result(stamp_ns, State.LOST, message=problem)
        else:
            result = self.localizer.process(image, stamp_ns)
            if result.state == State.LOST and result.message:
                self.get_logger().debug(f"not localized: {result.message}")
        self._publish(msg, image, result)

    def _warn(self, text: str, key: str | None = None) -> None:
        """A warning at most every WARN_EVERY_S per kind (`key`, default the text up to its
        first digit), so that one bad stream neither floods the log nor hides another problem."""
        key = key or re.split(r"\d", text, maxsplit=1)[0]
        now = time.monotonic()
        if now - self._warned_at.get(key, -np.inf) >= WARN_EVERY_S:
            self._warned_at[key] = now
            self.get_logger().warning(text)

    def _camera_problem(self, image: np.ndarray) -> str:
        """The localizer takes the camera CameraInfo describes (any pinhole camera, with
        plumb_bob or rational distortion); "" when it can, else why not."""
        info = self._camera_info
        height, width = image.shape[:2]
        if info is None:
            self.get_logger().warning(f"no CameraInfo on {self.params.camera_info_topic} yet: assuming the map's "
                                      "camera", once=True)
            return ""
        if (info.width, info.height) != (width, height):
            return f"CameraInfo says {info.width}x{info.height}, the image is {width}x{height}"
        distortion = np.asarray(info.d, np.float64)
        try:
            if np.any(np.abs(distortion) > 1e-9):
                check_distortion(info.distortion_model or "plumb_bob", distortion, self.params.camera_info_topic)
            if self.localizer.set_camera(np.asarray(info.k, np.float64).reshape(3, 3), width, height, distortion):
                self.get_logger().info(f"camera from {self.params.camera_info_topic}: {width}x{height}, fx "
                                       f"{info.k[0]:.1f}" + (", undistorted" if distortion.any() else "")
                                       + f"; registered as {self.localizer.camera.width}x"
                                       f"{self.localizer.camera.height} (the map's scale)")
        except ValueError as error:
            return f"CameraInfo: {error}"
        return ""

    def _camera_frame(self, msg: Image | None) -> str:
        if self.params.camera_frame:
            return self.params.camera_frame
        frame = msg.header.frame_id if msg is not None else ""
        return frame.lstrip("/") or "camera_optical_frame"

    # -- outputs ----------------------------------------------------------------------------
    def _publish(self, msg: Image, image: np.ndarray, result: Result) -> None:
        p = self.params
        header = Header(stamp=msg.header.stamp, frame_id=p.map_frame)
        camera_frame = self._camera_frame(msg)
        world_from_body, covariance, transforms = None, np.eye(6) * LOST_VARIANCE, []
        if result.localized:
            world_from_cam = invert(result.cam_from_world)
            covariance = world_from_cam_covariance(result.cam_from_world, result.covariance)
            world_from_body = world_from_cam
            if p.odom_frame:
                world_from_body, covariance, transforms = self._odom_outputs(msg, world_from_cam, covariance,
                                                                             camera_frame)
            else:
                transforms = [transform_stamped_msg(msg.header.stamp, p.map_frame, camera_frame, world_from_cam)]
        self.pose_publisher.publish(convert.pose_with_covariance_msg(header, world_from_body, covariance))
        if world_from_body is not None:
            self.pose_stamped_publisher.publish(PoseStamped(header=header, pose=pose_msg_from_matrix(world_from_body)))
            if p.publish_tf and transforms:
                self.tf_broadcaster.send_transform(transforms)
        self.recognized_publisher.publish(convert.recognized_markers(
            header, result.landmark_ids, self.localizer.map.landmark_centroid, self.localizer.map.landmark_extent))
        if p.debug_image and self.debug_publisher.get_subscription_count() > 0:
            caption = f"{result.state.name} {result.num_inliers} inliers {result.message}"
            rgb = convert.debug_rgb(image, result.keypoints_uv, result.keypoint_landmarks, result.inliers_uv, caption)
            self.debug_publisher.publish(convert.rgb8_msg(Header(stamp=msg.header.stamp, frame_id=camera_frame), rgb))
        self._publish_status(msg, result)

    def _odom_outputs(self, msg: Image, world_from_cam: np.ndarray, covariance: np.ndarray, camera_frame: str):
        """The base's pose (its covariance through the lever arm) and map->odom, from
        map->camera and odom->camera at the image stamp. -> (world_from_base or None, its
        covariance, transforms); None when the base's mount is unknown: ~/pose says LOST
        rather than give the camera's pose as the base's."""
        p = self.params
        try:
            cam_from_base = self.tf_buffer.lookup(camera_frame, p.base_frame, None)
        except TfLookupError as error:
            self._warn(f"no {p.base_frame} -> {camera_frame} transform, so no base pose: {error}", key="base")
            return None, np.eye(6) * LOST_VARIANCE, []
        world_from_base = world_from_cam @ cam_from_base
        base_covariance = attached_frame_covariance(world_from_cam, cam_from_base, covariance)
        try:
            cam_from_odom = self.tf_buffer.lookup(camera_frame, p.odom_frame, ns_from_time_msg(msg.header.stamp),
                                                  int(p.tf_tolerance_s * 1e9))
        except TfLookupError as error:
            self._warn(f"no map->{p.odom_frame} this frame: {error}", key="odom")
            return world_from_base, base_covariance, []
        return world_from_base, base_covariance, [
            transform_stamped_msg(msg.header.stamp, p.map_frame, p.odom_frame, world_from_cam @ cam_from_odom)]

    def _publish_status(self, msg: Image, result: Result) -> None:
        status = LocalizationStatus(header=Header(stamp=msg.header.stamp, frame_id=self.params.map_frame))
        status.state = STATE_TO_STATUS[result.state]
        status.landmark_ids = [int(k) for k in result.landmark_ids if k > 0]
        status.num_inliers = int(result.num_inliers)
        status.inlier_ratio = float(result.inlier_ratio)
        timings = result.timings_ms
        status.features_ms = float(timings.get("features_ms", 0.0))
        status.recognition_ms = float(timings.get("recognition_ms", 0.0))
        status.registration_ms = float(timings.get("registration_ms", 0.0) + timings.get("tracking_ms", 0.0))
        status.total_ms = float(timings.get("total_ms", 0.0))
        now_ns = self.get_clock().now().nanoseconds
        status.latency_ms = float((now_ns - ns_from_time_msg(msg.header.stamp)) * 1e-6)
        with self._lock:
            status.dropped_frames = self._counts["dropped_since_status"]
            self._counts["dropped_since_status"] = 0
            self._counts["processed"] += 1
            self._counts["localized"] += int(result.localized)
            self._last_result = result
            self._last_latency_ms = status.latency_ms
            self._rate_window = [t for t in self._rate_window if t > time.monotonic() - 5.0] + [time.monotonic()]
        self.status_publisher.publish(status)

    def _on_timer(self) -> None:
        with self._lock:
            counts, result, latency = dict(self._counts), self._last_result, self._last_latency_ms
            rate_hz = len(self._rate_window) / 5.0
        if result is None:  # nothing processed yet: say so
            idle = LocalizationStatus(header=Header(stamp=self.get_clock().now().to_msg(),
                                                    frame_id=self.params.map_frame))
            idle.state = LocalizationStatus.UNINITIALIZED
            self.status_publisher.publish(idle)
        state = result.state.name if result is not None else "UNINITIALIZED"
        diagnostic = DiagnosticStatus(name="pram_node: localization", hardware_id=self.params.image_topic)
        if result is not None and result.localized:
            diagnostic.level, diagnostic.message = DiagnosticStatus.OK, state
        elif counts["received"] == 0:
            diagnostic.level, diagnostic.message = DiagnosticStatus.WARN, f"no images on {self.params.image_topic}"
        else:
            diagnostic.level = DiagnosticStatus.WARN
            diagnostic.message = f"{state}: {result.message}" if result is not None else state
        values = {**counts, "state": state, "latency_ms": f"{latency:.1f}", "rate_hz": f"{rate_hz:.1f}",
                  "map": self.params.map_path}
        diagnostic.values = [KeyValue(key=k, value=str(v)) for k, v in values.items() if k != "dropped_since_status"]
        self.diagnostics_publisher.publish(
            DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()), status=[diagnostic]))

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()


def _spin(executor: SingleThreadedExecutor, node: PramNode) -> None:
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.stop()  # the localization loop ends with the executor


def main(argv: list[str] | None = None) -> int:
    rclpy.init(args=argv if argv is not None else sys.argv)
    node = executor = spinner = None
    try:
        node = PramNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        spinner = threading.Thread(target=_spin, args=(executor, node), name="pram_executor", daemon=True)
        spinner.start()
        node.localize_until_shutdown()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as error:
        # A refused parameter, or a map/model that cannot be used: say why, without a traceback.
        sys.stderr.write(f"pram_node: {error}\n")
        return 2
    finally:
        # The executor stops before the node goes: its thread must not touch a destroyed node.
        if node is not None:
            node.stop()
        if executor is not None:
            executor.shutdown(timeout_sec=1.0)
        if spinner is not None:
            spinner.join(timeout=5.0)
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
