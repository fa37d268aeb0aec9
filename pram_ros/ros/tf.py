"""A small TF implementation for where tf2_ros is missing (as it is on the PyPI wheels).

In: transforms `parent_from_child` (4x4) with a stamp, from /tf (dynamic) and
/tf_static (static), or added directly. Out: `target_from_source` between any two
connected frames at a stamp, through their common ancestor, interpolating each dynamic
edge between the two samples that bracket the stamp (translation linearly, rotation by
scipy's slerp). Stamps are integer nanoseconds.

The buffer itself (`TfBuffer`) is free of rclpy; `TfListener`, `TfBroadcaster` and
`StaticTfBroadcaster` are the thin DDS side with tf2_ros's topic names and QoS.
"""

from __future__ import annotations

import bisect
import logging
import threading
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from pram_ros.geometry import invert, quat_from_transform, transform_from_quat

logger = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
# Bound on the samples kept per dynamic edge, whatever their stamps (a publisher at 1 kHz
# with a 10 s cache is 10k samples; beyond this the oldest go first).
MAX_SAMPLES_PER_EDGE = 20_000


class TfLookupError(LookupError):
    """A transform cannot be looked up: unknown frame, no path, or a stamp out of range."""


@dataclass
class _Edge:
    """The samples of one parent -> child edge: times sorted, with the transform at each."""

    parent: str
    static: bool
    stamps_ns: list[int] = field(default_factory=list)
    translations: list[np.ndarray] = field(default_factory=list)
    quats_xyzw: list[np.ndarray] = field(default_factory=list)

    def insert(self, stamp_ns: int, parent_from_child: np.ndarray, cache_ns: int) -> None:
        translation, quat = quat_from_transform(parent_from_child)
        if self.static:
            # A static edge has one value for all time: the newest one sent.
            self.stamps_ns, self.translations, self.quats_xyzw = [stamp_ns], [translation], [quat]
            return
        if self.stamps_ns and stamp_ns < self.stamps_ns[-1] - cache_ns:
            # Time went back by more than the cache: a bag replayed again or a restarted
            # source (tf2 clears on a clock jump back). Start the edge afresh.
            logger.warning("%s: stamps jumped back %.3f s; cleared the edge's history", self.parent,
                           (self.stamps_ns[-1] - stamp_ns) / NS_PER_S)
            self.stamps_ns, self.translations, self.quats_xyzw = [], [], []
        index = bisect.bisect_left(self.stamps_ns, stamp_ns)
        if index < len(self.stamps_ns) and self.stamps_ns[index] == stamp_ns:
            self.translations[index], self.quats_xyzw[index] = translation, quat
            return
        self.stamps_ns.insert(index, stamp_ns)
        self.translations.insert(index, translation)
        self.quats_xyzw.insert(index, quat)
        self._prune(cache_ns)

    def _prune(self, cache_ns: int) -> None:
        keep_from = bisect.bisect_left(self.stamps_ns, self.stamps_ns[-1] - cache_ns)
        keep_from = max(keep_from, len(self.stamps_ns) - MAX_SAMPLES_PER_EDGE)
        if keep_from > 0:
            del self.stamps_ns[:keep_from], self.translations[:keep_from], self.quats_xyzw[:keep_from]

    def at(self, stamp_ns: int, tolerance_ns: int, child: str) -> np.ndarray:
        """parent_from_child at `stamp_ns`; a stamp within the tolerance outside the
        buffered interval takes the nearest sample."""
        if self.static:
            return transform_from_quat(self.translations[0], self.quats_xyzw[0])
        first, last = self.stamps_ns[0], self.stamps_ns[-1]
        edge = f"{self.parent} -> {child}"
        interval = f"buffered {_fmt_ns(first)} .. {_fmt_ns(last)}"
        if stamp_ns < first - tolerance_ns:
            raise TfLookupError(f"{edge}: stamp {_fmt_ns(stamp_ns)} is {(first - stamp_ns) / NS_PER_S:.3f} s "
                                f"before the oldest sample (past the cache; {interval})")
        if stamp_ns > last + tolerance_ns:
            raise TfLookupError(f"{edge}: stamp {_fmt_ns(stamp_ns)} is {(stamp_ns - last) / NS_PER_S:.3f} s "
                                f"after the newest sample (not received yet; {interval})")
        if stamp_ns <= first or stamp_ns >= last:
            index = 0 if stamp_ns <= first else len(self.stamps_ns) - 1
            return transform_from_quat(self.translations[index], self.quats_xyzw[index])
        after = bisect.bisect_right(self.stamps_ns, stamp_ns)
        before = after - 1
        t0, t1 = self.stamps_ns[before], self.stamps_ns[after]
        alpha = (stamp_ns - t0) / (t1 - t0)
        translation = (1.0 - alpha) * self.translations[before] + alpha * self.translations[after]
        rotation = Slerp([0.0, 1.0], Rotation.from_quat([self.quats_xyzw[before], self.quats_xyzw[after]]))(alpha)
        return transform_from_quat(translation, rotation.as_quat())


def _fmt_ns(stamp_ns: int) -> str:
    return f"{stamp_ns / NS_PER_S:.6f} s"


class TfBuffer:
    """A tree of frames (each child has one parent) with time-stamped edges.

    Thread-safe: a listener may add from an executor thread while a worker looks up.
    """

    def __init__(self, cache_s: float = 10.0) -> None:
        if not cache_s > 0:
            raise ValueError(f"cache_s must be > 0, got {cache_s}")
        self.cache_ns = int(cache_s * NS_PER_S)
        self._edges: dict[str, _Edge] = {}  # keyed by child frame
        self._lock = threading.Lock()

    def add(self, parent: str, child: str, stamp_ns: int, parent_from_child: np.ndarray,
            static: bool = False) -> None:
        """Add one sample of the edge parent -> child. Re-parenting a child replaces its
        old edge (as tf2 does); an edge that would close a loop is refused."""
        parent, child = _strip(parent), _strip(child)
        if not parent or not child or parent == child:
            raise ValueError(f"a transform needs two distinct, non-empty frames, got {parent!r} -> {child!r}")
        parent_from_child = np.asarray(parent_from_child, dtype=np.float64)
        if parent_from_child.shape != (4, 4) or not np.all(np.isfinite(parent_from_child)):
            raise ValueError(f"{parent} -> {child}: expected a finite 4x4 transform")
        with self._lock:
            edge = self._edges.get(child)
            if edge is None or edge.parent != parent or edge.static != static:
                if child in self._chain(parent):
                    raise ValueError(f"{parent} -> {child} would make a loop in the TF tree")
                if edge is not None:
                    logger.warning("frame %s: parent %s (%s) replaced by %s (%s)", child, edge.parent,
                                   "static" if edge.static else "dynamic", parent, "static" if static else "dynamic")
                edge = self._edges[child] = _Edge(parent, static)
            edge.insert(int(stamp_ns), parent_from_child, self.cache_ns)

    def add_transform_msg(self, message, static: bool = False) -> None:
        """Add a geometry_msgs/TransformStamped (rclpy or rosbags object)."""
        self.add(message.header.frame_id, message.child_frame_id, ns_from_time_msg(message.header.stamp),
                 matrix_from_transform_msg(message.transform), static=static)

    def clear(self) -> None:
        """Forget everything (for example when a replayed clock jumps back)."""
        with self._lock:
            self._edges.clear()

    def frames(self) -> set[str]:
        with self._lock:
            return set(self._edges) | {edge.parent for edge in self._edges.values()}

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int | None,
               tolerance_ns: int = 0) -> np.ndarray:
        """target_from_source (4x4) at `stamp_ns`, or at the newest time all the dynamic
        edges on the path share when `stamp_ns` is None (tf2's Time(0)).

        `tolerance_ns`: how far outside an edge's buffered interval a stamp may fall and
        still take the nearest sample. Raises TfLookupError saying what is missing.
        """
        target_frame, source_frame = _strip(target_frame), _strip(source_frame)
        with self._lock:
            known = set(self._edges) | {edge.parent for edge in self._edges.values()}
            for name in (target_frame, source_frame):
                if name not in known:
                    raise TfLookupError(f"frame {name!r} is unknown (known: {', '.join(sorted(known)) or 'none'})")
            if target_frame == source_frame:
                return np.eye(4)
            up_from_source = self._chain(source_frame)
            up_from_target = self._chain(target_frame)
            ancestors_of_target = set(up_from_target)
            common = next((frame for frame in up_from_source if frame in ancestors_of_target), None)
            if common is None:
                raise TfLookupError(f"{target_frame!r} and {source_frame!r} are not connected: their roots are "
                                    f"{up_from_target[-1]!r} and {up_from_source[-1]!r}")
            source_path = up_from_source[: up_from_source.index(common)]  # children below `common`
            target_path = up_from_target[: up_from_target.index(common)]
            if stamp_ns is None:
                dynamic = [self._edges[child] for child in source_path + target_path if not self._edges[child].static]
                stamp_ns = min((edge.stamps_ns[-1] for edge in dynamic), default=0)
            common_from_source = self._compose(source_path, int(stamp_ns), int(tolerance_ns))
            common_from_target = self._compose(target_path, int(stamp_ns), int(tolerance_ns))
        return invert(common_from_target) @ common_from_source

    def can_transform(self, target_frame: str, source_frame: str, stamp_ns: int | None,
                      tolerance_ns: int = 0) -> bool:
        try:
            self.lookup(target_frame, source_frame, stamp_ns, tolerance_ns)
        except TfLookupError:
            return False
        return True

    def _chain(self, frame: str) -> list[str]:
        """frame, its parent, its grandparent, ... up to the root."""
        chain = [frame]
        while chain[-1] in self._edges:
            chain.append(self._edges[chain[-1]].parent)
        return chain

    def _compose(self, children: list[str], stamp_ns: int, tolerance_ns: int) -> np.ndarray:
        """top_from_bottom over `children` (bottom first, each the child of the next)."""
        top_from_bottom = np.eye(4)
        for child in children:
            top_from_bottom = self._edges[child].at(stamp_ns, tolerance_ns, child) @ top_from_bottom
        return top_from_bottom


def _strip(frame: str) -> str:
    # tf2 ignores a leading slash (a ROS 1 habit that still appears in bags).
    return frame[1:] if frame.startswith("/") else frame


# ---------------------------------------------------------------------------
# Message conversions (rclpy messages; reading also accepts rosbags objects).


def ns_from_time_msg(stamp) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def time_msg_from_ns(stamp_ns: int):
    """Integer nanoseconds -> builtin_interfaces/Time."""
    from builtin_interfaces.msg import Time

    return Time(sec=int(stamp_ns // NS_PER_S), nanosec=int(stamp_ns % NS_PER_S))


def matrix_from_transform_msg(transform) -> np.ndarray:
    """geometry_msgs/Transform -> 4x4 parent_from_child."""
    t, q = transform.translation, transform.rotation
    return transform_from_quat(np.array([t.x, t.y, t.z]), np.array([q.x, q.y, q.z, q.w]))


def matrix_from_pose_msg(pose) -> np.ndarray:
    """geometry_msgs/Pose -> 4x4 frame_from_body."""
    p, q = pose.position, pose.orientation
    return transform_from_quat(np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w]))


def transform_stamped_msg(stamp, parent: str, child: str, parent_from_child: np.ndarray):
    """-> geometry_msgs/TransformStamped with header (stamp, parent) and child_frame_id."""
    from geometry_msgs.msg import Quaternion, Transform, TransformStamped, Vector3

    translation, quat = quat_from_transform(np.asarray(parent_from_child, dtype=np.float64))
    message = TransformStamped()
    message.header.stamp = stamp
    message.header.frame_id = parent
    message.child_frame_id = child
    message.transform = Transform(
        translation=Vector3(x=float(translation[0]), y=float(translation[1]), z=float(translation[2])),
        rotation=Quaternion(x=float(quat[0]), y=float(quat[1]), z=float(quat[2]), w=float(quat[3])),
    )
    return message


def pose_msg_from_matrix(world_from_x: np.ndarray):
    """4x4 world_from_x -> geometry_msgs/Pose of x in world."""
    from geometry_msgs.msg import Point, Pose, Quaternion

    translation, quat = quat_from_transform(np.asarray(world_from_x, dtype=np.float64))
    return Pose(
        position=Point(x=float(translation[0]), y=float(translation[1]), z=float(translation[2])),
        orientation=Quaternion(x=float(quat[0]), y=float(quat[1]), z=float(quat[2]), w=float(quat[3])),
    )


# ---------------------------------------------------------------------------
# DDS side: the topics and QoS of tf2_ros, so these interoperate with real TF tools.


def _tf_qos():
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


def _static_qos(depth: int):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


class TfListener:
    """Feeds a TfBuffer from /tf and /tf_static. The callbacks run in `node`'s executor,
    in their own callback group so that a multi-threaded executor never queues them
    behind slow work."""

    def __init__(self, node, buffer: TfBuffer, tf_topic: str = "/tf", tf_static_topic: str = "/tf_static",
                 callback_group=None, ignore_parents: tuple[str, ...] = ()) -> None:
        from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
        from tf2_msgs.msg import TFMessage

        self.buffer = buffer
        self._node = node
        # Edges a node publishes itself (pram_node's map -> camera): fed back, they would
        # re-parent frames the robot's own tree already holds.
        self._ignore_parents = {_strip(frame) for frame in ignore_parents}
        self._warned: set[str] = set()
        group = callback_group or MutuallyExclusiveCallbackGroup()
        self._subscriptions = [
            node.create_subscription(TFMessage, tf_topic, lambda m: self._on_message(m, False), _tf_qos(),
                                     callback_group=group),
            # Late joiners get every static transform ever latched (tf2_ros uses depth 100 too).
            node.create_subscription(TFMessage, tf_static_topic, lambda m: self._on_message(m, True),
                                     _static_qos(100), callback_group=group),
        ]

    def _on_message(self, message, static: bool) -> None:
        for transform in message.transforms:
            if _strip(transform.header.frame_id) in self._ignore_parents:
                continue
            try:
                self.buffer.add_transform_msg(transform, static=static)
            except ValueError as error:
                key = f"{transform.header.frame_id}->{transform.child_frame_id}"
                if key not in self._warned:  # once per edge: a bad publisher would flood the log
                    self._warned.add(key)
                    self._node.get_logger().warning(f"ignored transform {key}: {error}")

    def destroy(self) -> None:
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        self._subscriptions = []


class TfBroadcaster:
    """Publishes TransformStamped messages on /tf."""

    def __init__(self, node, topic: str = "/tf") -> None:
        from tf2_msgs.msg import TFMessage

        self._message_type = TFMessage
        self.publisher = node.create_publisher(TFMessage, topic, _tf_qos())

    def send_transform(self, transforms) -> None:
        """One TransformStamped or a list of them, as one TFMessage."""
        transforms = list(transforms) if isinstance(transforms, (list, tuple)) else [transforms]
        self.publisher.publish(self._message_type(transforms=transforms))


class StaticTfBroadcaster:
    """Publishes static transforms on /tf_static, latched (transient-local).

    Like tf2_ros, it keeps every transform sent so far (the newest per child frame) and
    republishes them all as one message, so a late subscriber gets the whole set from
    one-deep history.
    """

    def __init__(self, node, topic: str = "/tf_static") -> None:
        from tf2_msgs.msg import TFMessage

        self._message_type = TFMessage
        self._by_child: dict[str, object] = {}
        self.publisher = node.create_publisher(TFMessage, topic, _static_qos(1))

    def send_transform(self, transforms) -> None:
        transforms = list(transforms) if isinstance(transforms, (list, tuple)) else [transforms]
        for transform in transforms:
            self._by_child[transform.child_frame_id] = transform
        self.publisher.publish(self._message_type(transforms=list(self._by_child.values())))
