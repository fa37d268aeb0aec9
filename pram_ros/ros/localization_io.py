"""What pram_node does on ROS: images in, the Localizer's `Result` out.

`LocalizationIO` takes any rclpy node (the plain one or the lifecycle one) and gives it
~/pose (PoseWithCovarianceStamped, only while localized unless `publish_lost_pose`),
~/pose_stamped, ~/status (one per arriving image that is not dropped, rejected ones
included, with the reason and counters), TF, markers, a debug image, /diagnostics, and the
~/relocalize and ~/load_map services. Image callbacks only queue the frame (frame_queue.py);
the owner's thread calls `process_next` to localize it, so callbacks never wait on the
model. While tracking, frames are taken in order (up to `max_waiting_frames` wait behind a
slow one, and each is then tracked by optical flow in a few ms): the track follows every
camera frame instead of jumping over the ones a relocalization took the time of. While
lost, only the newest frame is worth relocalizing. Frames not taken are dropped and counted.

TF: map -> camera optical frame by default; with `odom_frame` set, map -> odom composed with
odom -> camera at the image stamp (REP-105), and ~/pose is then the pose of `base_frame`.
"""

from __future__ import annotations

import re
import threading
import time

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped, PoseWithCovarianceStamped
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header
from std_srvs.srv import Trigger
from visualization_msgs.msg import MarkerArray

from pram_ros.geometry import attached_frame_covariance, invert, world_from_cam_covariance
from pram_ros.io.camera import check_distortion
from pram_ros.io.image_msgs import compressed_topic, decode_image
from pram_ros.localization import LOST_VARIANCE, Localizer, LocalizerConfig, Reason, Result, State
from pram_ros.localization.loading import create_localizer, load_parts
from pram_ros.msg import LocalizationStatus
from pram_ros.ros import convert
from pram_ros.ros.frame_queue import FrameQueue
from pram_ros.ros.health import Health
from pram_ros.ros.params import NodeParams
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
from pram_ros.srv import LoadMap

STATE_TO_STATUS = {
    State.UNINITIALIZED: LocalizationStatus.UNINITIALIZED,
    State.RELOCALIZED: LocalizationStatus.RELOCALIZING,
    State.TRACKED: LocalizationStatus.TRACKING,
    State.LOST: LocalizationStatus.LOST,
}
WARN_EVERY_S = 5.0


def build_localizer(params: NodeParams, config: LocalizerConfig, map_path: str, model_path: str) -> Localizer:
    """The PRAM localizer of a map; ValueError (one line) when the map or model cannot be used."""
    parts = load_parts(map_path, model_path or None, num_threads=params.num_threads, device=params.device)
    built_with = parts.map.extractor_config().get("name")
    if params.feature_preset and params.feature_preset != built_with:
        raise ValueError(f"parameter feature_preset {params.feature_preset!r}: {parts.map_path} was built with "
                         f"{built_with!r} features; rebuild the map to change them")
    localizer = create_localizer("pram", parts, config, background=params.full_frames_in_background)
    localizer.warm_up()
    return localizer


class LocalizationIO:
    """Publishers, services and the status timer from construction; image subscriptions
    while `active` (the lifecycle node's activate/deactivate)."""

    def __init__(self, node: Node, params: NodeParams, config: LocalizerConfig) -> None:
        self.node = node
        self.params = params
        self.config = config
        self.localizer = build_localizer(params, config, params.map_path, params.model_path)
        self.map_path = params.map_path
        self.health = Health(params.image_topic, params.stall_warn_s, params.lost_error_s, time.monotonic())
        self.active = False
        self._camera_info: CameraInfo | None = None
        self._lock = threading.Lock()
        self._waiting = FrameQueue(params.max_waiting_frames, self.health.dropped)
        self._unseen_frames = 0  # frames rejected (or dropped before them) since the localizer's last
        self._pending_hint: np.ndarray | None = None  # cam_from_world from /initialpose
        self._pending_localizer: tuple[Localizer, str] | None = None  # from ~/load_map
        self.wake = threading.Event()
        self._last_result: Result | None = None
        self._last_latency_ms = float("nan")
        self._rate_window: list[float] = []
        self._warned_at: dict[str, float] = {}
        self._inputs: list = []

        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        self.pose_publisher = node.create_publisher(PoseWithCovarianceStamped, "~/pose", 10)
        self.pose_stamped_publisher = node.create_publisher(PoseStamped, "~/pose_stamped", 10)
        self.status_publisher = node.create_publisher(LocalizationStatus, "~/status", 10)
        self.landmarks_publisher = node.create_publisher(MarkerArray, "~/landmarks", latched)
        self.recognized_publisher = node.create_publisher(MarkerArray, "~/recognized_landmarks", 10)
        self.points_publisher = node.create_publisher(PointCloud2, "~/map_points", latched)
        self.debug_publisher = node.create_publisher(Image, "~/debug_image", qos_profile_sensor_data)
        self.diagnostics_publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.tf_buffer = TfBuffer()
        self.tf_listener = TfListener(node, self.tf_buffer, ignore_parents=(params.map_frame,))
        self.tf_broadcaster = TfBroadcaster(node)
        self._services = [node.create_service(Trigger, "~/relocalize", self._on_relocalize),
                          node.create_service(LoadMap, "~/load_map", self._on_load_map)]
        # Wall time: with use_sim_time the status must still come before a /clock does.
        self._timer = node.create_timer(params.status_period_s, self._on_timer,
                                        clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._publish_map()

    @property
    def image_topic(self) -> str:
        p = self.params
        return compressed_topic(p.image_topic) if p.image_transport == "compressed" else p.image_topic

    def describe(self) -> str:
        p = self.params
        return (f"localizing {self.image_topic} against {self.map_path} ({self.localizer.map.num_landmarks} "
                f"landmarks, {self.localizer.map.num_points} points); "
                f"TF {'map->' + (p.odom_frame or 'camera') if p.publish_tf else 'off'}")

    # -- lifecycle --------------------------------------------------------------------------
    def activate(self) -> None:
        """Subscribe to the camera: frames are localized from now on."""
        if self.active:
            return
        node, p = self.node, self.params
        image_qos = qos_profile_sensor_data if p.image_qos == "sensor_data" else QoSProfile(depth=5)
        image_type = CompressedImage if p.image_transport == "compressed" else Image
        self._inputs = [
            node.create_subscription(image_type, self.image_topic, self._on_image, image_qos),
            node.create_subscription(CameraInfo, p.camera_info_topic, self._on_camera_info, qos_profile_sensor_data),
            node.create_subscription(PoseWithCovarianceStamped, "/initialpose", self._on_initial_pose, 10),
        ]
        self.active = True

    def deactivate(self) -> None:
        """Stop taking frames (the map stays loaded); a frame being localized still finishes."""
        for subscription in self._inputs:
            self.node.destroy_subscription(subscription)
        self._inputs = []
        self.active = False
        self._waiting.clear()

    def destroy(self) -> None:
        """Give back everything made in __init__ and the map's memory."""
        self.deactivate()
        node = self.node
        node.destroy_timer(self._timer)
        for service in self._services:
            node.destroy_service(service)
        self.tf_listener.destroy()
        for publisher in (self.pose_publisher, self.pose_stamped_publisher, self.status_publisher,
                          self.landmarks_publisher, self.recognized_publisher, self.points_publisher,
                          self.debug_publisher, self.diagnostics_publisher, self.tf_broadcaster.publisher):
            node.destroy_publisher(publisher)
        self.localizer.close()
        self.localizer = None

    def _publish_map(self) -> None:
        pram_map = self.localizer.map
        header = Header(frame_id=self.params.map_frame, stamp=self.node.get_clock().now().to_msg())
        self.landmarks_publisher.publish(
            convert.landmark_markers(header, pram_map.landmark_centroid, pram_map.landmark_extent))
        colors = convert.landmark_rgb8(pram_map.point_landmark.astype(np.int64))
        self.points_publisher.publish(convert.point_cloud_msg(header, pram_map.point_xyz, colors))

    # -- callbacks (never wait on the model) ------------------------------------------------
    def _on_image(self, msg) -> None:
        self.health.received(time.monotonic())
        self._waiting.put(msg)
        self.wake.set()

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _on_relocalize(self, request, response):
        self.localizer.request_relocalization()
        response.success = True
        response.message = "relocalizing on the next frame"
        return response

    def _on_load_map(self, request, response):
        """Load in the service's thread while the old map keeps localizing; the loop swaps
        them between frames."""
        try:
            localizer = build_localizer(self.params, self.config, request.map_path, request.model_path)
        except (ValueError, OSError) as error:
            response.success, response.message = False, f"kept {self.map_path}: {error}"
            self.node.get_logger().error(f"~/load_map: {response.message}")
            return response
        with self._lock:
            replaced, self._pending_localizer = self._pending_localizer, (localizer, request.map_path)
        if replaced is not None:  # loaded, never used
            replaced[0].close()
        self.wake.set()
        response.success = True
        response.message = (f"loaded {request.map_path} ({localizer.map.num_landmarks} landmarks, "
                            f"{localizer.map.num_points} points): used from the next frame")
        self.node.get_logger().info(f"~/load_map: {response.message}")
        return response

    def _on_initial_pose(self, msg: PoseWithCovarianceStamped) -> None:
        p = self.params
        if msg.header.frame_id.lstrip("/") != p.map_frame:
            self.node.get_logger().warning(f"/initialpose in {msg.header.frame_id!r}, not {p.map_frame!r}: ignored")
            return
        map_from_base = matrix_from_pose_msg(msg.pose.pose)
        camera_frame = self._camera_frame(self._waiting.newest())
        try:
            base_from_cam = self.tf_buffer.lookup(p.base_frame, camera_frame, None)
        except TfLookupError as error:
            self.node.get_logger().warning(
                f"/initialpose ignored: no {p.base_frame} -> {camera_frame} transform ({error})")
            return
        with self._lock:  # applied by the localization loop between frames, never during one
            self._pending_hint = invert(map_from_base @ base_from_cam)
        self.node.get_logger().info("tracking from the pose given on /initialpose")

    # -- localization (the owner's thread) ----------------------------------------------------
    def process_next(self) -> None:
        """Localize the next frame, if any, after applying what callbacks left pending: the
        oldest waiting while tracking, else the newest (the older ones are dropped)."""
        with self._lock:
            hint, self._pending_hint = self._pending_hint, None
            swap, self._pending_localizer = self._pending_localizer, None
        if swap is not None:
            self.localizer.close()
            self.localizer, self.map_path = swap
            self._publish_map()
        if hint is not None:
            self.localizer.set_pose_hint(hint)
        self.wake.clear()  # before taking: a frame put after it sets it again
        taken = self._waiting.take(newest_only=not self.localizer.tracking)
        if taken is None:
            return
        if len(self._waiting):
            self.wake.set()
        msg, dropped = taken
        try:
            self._process(msg, dropped)
        except Exception as error:  # noqa: BLE001 - one bad frame must not stop the node
            text = f"{type(error).__name__}: {error}"
            self._warn(f"frame skipped: {text}", key=type(error).__name__)
            self._reject(msg, None, Reason.PROCESSING_ERROR, text, dropped)

    def _process(self, msg, dropped: int) -> None:
        """`dropped`: the camera frames dropped just before this one."""
        stamp_ns = ns_from_time_msg(msg.header.stamp)
        try:
            image = decode_image(msg)
        except ValueError as error:
            self._warn(f"{self.image_topic}: {error}; frame skipped")
            self._reject(msg, None, Reason.UNDECODABLE_IMAGE, str(error), dropped)
            return
        reason, problem = self._camera_problem(image)
        if problem:
            self._warn(problem + "; frame skipped")
            self._reject(msg, image, reason, problem, dropped)
            return
        unseen, self._unseen_frames = self._unseen_frames, 0
        result = self.localizer.process(image, stamp_ns, dropped + unseen)
        if result.state == State.LOST and result.message:
            self.node.get_logger().debug(f"not localized: {result.message}")
        self._publish(msg, image, result, dropped)

    def _reject(self, msg, image: np.ndarray | None, reason: Reason, message: str, dropped: int) -> None:
        """A frame that could not be used: answered on ~/status and counted, never localized
        (for the localizer it is one more frame dropped before the next)."""
        self.health.rejected(reason, message, time.monotonic())
        self._unseen_frames += dropped + 1
        result = Result(ns_from_time_msg(msg.header.stamp), State.LOST, message=message, reason=reason)
        self._publish_status(msg, result, dropped)

    def _warn(self, text: str, key: str | None = None) -> None:
        """A warning at most every WARN_EVERY_S per kind (`key`, default the text up to its
        first digit), so that one bad stream neither floods the log nor hides another problem."""
        key = key or re.split(r"\d", text, maxsplit=1)[0]
        now = time.monotonic()
        if now - self._warned_at.get(key, -np.inf) >= WARN_EVERY_S:
            self._warned_at[key] = now
            self.node.get_logger().warning(text)

    def _camera_problem(self, image: np.ndarray) -> tuple[Reason, str]:
        """The localizer takes the camera CameraInfo describes (any pinhole camera, with
        plumb_bob or rational distortion); (NONE, "") when it can, else why not."""
        info = self._camera_info
        height, width = image.shape[:2]
        topic = self.params.camera_info_topic
        if info is None:
            camera = self.localizer.input
            if (width, height) != (camera.width, camera.height):
                return Reason.NO_CAMERA_INFO, (f"no CameraInfo on {topic}, and the image is {width}x{height}, not "
                                               f"the map camera's {camera.width}x{camera.height}")
            self.node.get_logger().warning(f"no CameraInfo on {topic} yet: assuming the map's camera", once=True)
            return Reason.NONE, ""
        if (info.width, info.height) != (width, height):
            return Reason.CAMERA_MISMATCH, f"CameraInfo says {info.width}x{info.height}, the image is {width}x{height}"
        distortion = np.asarray(info.d, np.float64)
        try:
            if np.any(np.abs(distortion) > 1e-9):
                check_distortion(info.distortion_model or "plumb_bob", distortion, topic)
            if self.localizer.set_camera(np.asarray(info.k, np.float64).reshape(3, 3), width, height, distortion):
                self.node.get_logger().info(
                    f"camera from {topic}: {width}x{height}, fx {info.k[0]:.1f}"
                    + (", undistorted" if distortion.any() else "")
                    + f"; registered as {self.localizer.camera.width}x{self.localizer.camera.height} (the map's scale)")
        except ValueError as error:
            return Reason.CAMERA_MISMATCH, f"CameraInfo: {error}"
        return Reason.NONE, ""

    def _camera_frame(self, msg) -> str:
        if self.params.camera_frame:
            return self.params.camera_frame
        frame = msg.header.frame_id if msg is not None else ""
        return frame.lstrip("/") or "camera_optical_frame"

    # -- outputs ----------------------------------------------------------------------------
    def _publish(self, msg, image: np.ndarray, result: Result, dropped: int) -> None:
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
        if world_from_body is not None:
            self.pose_publisher.publish(convert.pose_with_covariance_msg(header, world_from_body, covariance))
            self.pose_stamped_publisher.publish(PoseStamped(header=header, pose=pose_msg_from_matrix(world_from_body)))
            if p.publish_tf and transforms:
                self.tf_broadcaster.send_transform(transforms)
        elif p.publish_lost_pose:  # the old behaviour: "anywhere", which only the covariance says
            self.pose_publisher.publish(convert.pose_with_covariance_msg(header, None, covariance))
        self.recognized_publisher.publish(convert.recognized_markers(
            header, result.landmark_ids, self.localizer.map.landmark_centroid, self.localizer.map.landmark_extent))
        if p.debug_image and self.debug_publisher.get_subscription_count() > 0:
            caption = f"{result.state.name} {result.num_inliers} inliers {result.message}"
            rgb = convert.debug_rgb(image, result.keypoints_uv, result.keypoint_landmarks, result.inliers_uv, caption)
            self.debug_publisher.publish(convert.rgb8_msg(Header(stamp=msg.header.stamp, frame_id=camera_frame), rgb))
        self.health.processed(result.state.name, result.localized, result.reason, result.message, time.monotonic())
        with self._lock:
            self._last_result = result
            self._rate_window = [t for t in self._rate_window if t > time.monotonic() - 5.0] + [time.monotonic()]
        self._publish_status(msg, result, dropped)

    def _odom_outputs(self, msg, world_from_cam: np.ndarray, covariance: np.ndarray, camera_frame: str):
        """The base's pose (its covariance through the lever arm) and map->odom, from
        map->camera and odom->camera at the image stamp. -> (world_from_base or None, its
        covariance, transforms); None when the base's mount is unknown: no ~/pose rather
        than the camera's pose given as the base's."""
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

    def _publish_status(self, msg, result: Result, dropped: int) -> None:
        status = LocalizationStatus(header=Header(stamp=msg.header.stamp, frame_id=self.params.map_frame))
        status.state = STATE_TO_STATUS[result.state]
        status.reason_code = int(result.reason)
        status.reason = result.message if not result.localized else ""
        status.landmark_ids = [int(k) for k in result.landmark_ids if k > 0]
        status.num_inliers = int(result.num_inliers)
        status.inlier_ratio = float(result.inlier_ratio)
        timings = result.timings_ms
        status.features_ms = float(timings.get("features_ms", 0.0))
        status.recognition_ms = float(timings.get("recognition_ms", 0.0))
        status.registration_ms = float(timings.get("registration_ms", 0.0) + timings.get("tracking_ms", 0.0))
        status.total_ms = float(timings.get("total_ms", 0.0))
        now_ns = self.node.get_clock().now().nanoseconds
        status.latency_ms = float((now_ns - ns_from_time_msg(msg.header.stamp)) * 1e-6)
        status.dropped_frames = dropped
        self._fill_counts(status)
        self._last_latency_ms = status.latency_ms
        self.status_publisher.publish(status)

    def _fill_counts(self, status: LocalizationStatus) -> None:
        counts = self.health.snapshot()
        status.frames_received, status.frames_processed = counts.received, counts.processed
        status.frames_dropped, status.frames_rejected = counts.dropped, counts.rejected

    def _on_timer(self) -> None:
        with self._lock:
            result, latency = self._last_result, self._last_latency_ms
            rate_hz = len(self._rate_window) / 5.0
        if result is None or not self.active:  # nothing processed yet, or paused: say so
            idle = LocalizationStatus(header=Header(stamp=self.node.get_clock().now().to_msg(),
                                                    frame_id=self.params.map_frame))
            idle.state = LocalizationStatus.UNINITIALIZED
            if not self.active:
                idle.reason_code, idle.reason = int(Reason.INACTIVE), "inactive (lifecycle): not taking frames"
            self._fill_counts(idle)
            self.status_publisher.publish(idle)
        diagnostic = DiagnosticStatus(name="pram_node: localization", hardware_id=self.image_topic)
        if self.active:
            verdict = self.health.verdict(time.monotonic())
            diagnostic.level, diagnostic.message = bytes([verdict.level]), verdict.message
        else:
            diagnostic.level, diagnostic.message = DiagnosticStatus.OK, "inactive (lifecycle)"
        counts = self.health.snapshot()
        values = {"received": counts.received, "processed": counts.processed, "dropped": counts.dropped,
                  "rejected": counts.rejected, "localized": counts.localized,
                  "state": result.state.name if result is not None else "UNINITIALIZED",
                  "latency_ms": f"{latency:.1f}", "rate_hz": f"{rate_hz:.1f}", "map": self.map_path}
        diagnostic.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        self.diagnostics_publisher.publish(
            DiagnosticArray(header=Header(stamp=self.node.get_clock().now().to_msg()), status=[diagnostic]))
