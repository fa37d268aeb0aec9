"""`pram record`: write topics from DDS to a rosbag2, standing in for `ros2 bag record`.

In: topic names. Their types and QoS are discovered from the ROS graph (a topic may
appear at any time while recording); messages are received serialized (raw) and never
decoded. Out: a rosbag2 (mcap by default) written through `rosbags`, each message
stamped with its receive time (default) or its header stamp, and each topic's offered
QoS recorded so that `pram replay` latches what was latched. The bag is closed (and its
metadata written) on SIGINT, SIGTERM or after the duration.
"""

from __future__ import annotations

import logging
import os
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pram_ros.ros.replay import message_class, qos_from_offered, ros_session

logger = logging.getLogger(__name__)

GRAPH_POLL_S = 0.5


@dataclass(frozen=True)
class RecordConfig:
    topics: tuple[str, ...]
    out: Path
    duration_s: float | None = None
    storage: str = "mcap"
    stamp: str = "receive"  # or "header": the header stamp of types that start with a Header

    def __post_init__(self) -> None:
        if not self.topics:
            raise ValueError("give at least one topic to record")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError(f"duration must be > 0 s, got {self.duration_s}")
        if self.stamp not in ("receive", "header"):
            raise ValueError(f"stamp must be 'receive' or 'header', got {self.stamp!r}")


def _msg_search_roots() -> list[Path]:
    roots = [Path(sys.prefix)]
    roots += [Path(path) for path in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if path]
    return roots


def ensure_type(typestore, msgtype: str) -> None:
    """Register `msgtype` (and the types it uses) in a rosbags typestore from the .msg
    files installed under share/<package>/msg/, for types the Jazzy store lacks (our own
    LocalizationStatus, for one)."""
    from rosbags.typesys import get_types_from_msg

    pending, seen = [msgtype], set()
    while pending:
        name = pending.pop()
        if name in typestore.fielddefs or name in seen:
            continue
        seen.add(name)
        package, _, short = name.split("/")
        candidates = [root / "share" / package / "msg" / f"{short}.msg" for root in _msg_search_roots()]
        path = next((candidate for candidate in candidates if candidate.is_file()), None)
        if path is None:
            raise ValueError(f"no definition of {name}: looked for {', '.join(map(str, candidates))}")
        types = get_types_from_msg(path.read_text(), name)
        typestore.register(types)
        # Field types from other packages need registering as well.
        for _, (kind, *rest) in types[name][1]:
            for ref in _referenced_types(kind, rest):
                pending.append(ref)


def _referenced_types(kind, rest) -> list[str]:
    from rosbags.interfaces import Nodetype

    if kind == Nodetype.NAME:
        return [rest[0]]
    if kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
        inner_kind, inner = rest[0][0]
        return [inner] if inner_kind == Nodetype.NAME else []
    return []


def _header_stamp_ns(raw: bytes) -> int | None:
    """The stamp of a CDR message whose first field is a std_msgs/Header: after the
    4-byte encapsulation header, int32 sec and uint32 nanosec."""
    if len(raw) < 12 or raw[1] not in (0, 1):
        return None
    sec, nanosec = struct.unpack("<iI" if raw[1] == 1 else ">iI", raw[4:12])
    stamp_ns = sec * 1_000_000_000 + nanosec
    return stamp_ns if stamp_ns > 0 else None


class _Recorder:
    def __init__(self, node, writer, typestore, config: RecordConfig) -> None:
        self.node, self.writer, self.typestore, self.config = node, writer, typestore, config
        self.pending = set(config.topics)
        self.counts: dict[str, int] = {topic: 0 for topic in config.topics}
        self.subscriptions = []

    def subscribe_discovered(self) -> None:
        """Subscribe to each pending topic that a publisher has announced."""
        if not self.pending:
            return
        from rosbags.interfaces import (
            Nodetype,
            Qos,
            QosDurability,
            QosHistory,
            QosLiveliness,
            QosReliability,
            QosTime,
        )

        types = dict(self.node.get_topic_names_and_types())
        for topic in sorted(self.pending):
            if topic not in types:
                continue
            msgtype = types[topic][0]
            if len(types[topic]) > 1:
                logger.warning("%s has several types %s; recording %s", topic, types[topic], msgtype)
            self.pending.discard(topic)
            try:
                cls = message_class(msgtype)
                ensure_type(self.typestore, msgtype)
            except ValueError as error:
                logger.error("%s: not recorded: %s", topic, error)
                continue
            offered = [info.qos_profile for info in self.node.get_publishers_info_by_topic(topic)]
            qos = qos_from_offered(offered, topic)
            qos.depth = max(qos.depth, 100)  # a burst must not overflow the reader's queue
            zero = QosTime(sec=0, nsec=0)
            recorded_qos = Qos(
                history=QosHistory(qos.history.value), depth=qos.depth,
                reliability=QosReliability(qos.reliability.value), durability=QosDurability(qos.durability.value),
                deadline=zero, lifespan=zero, liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=zero,
                avoid_ros_namespace_conventions=False,
            )
            connection = self.writer.add_connection(topic, msgtype, typestore=self.typestore,
                                                    offered_qos_profiles=[recorded_qos])
            fields = self.typestore.fielddefs[msgtype][1]
            has_header = bool(fields) and fields[0][1] == (Nodetype.NAME, "std_msgs/msg/Header")
            use_header = self.config.stamp == "header" and has_header
            self.subscriptions.append(self.node.create_subscription(
                cls, topic, lambda raw, c=connection, h=use_header: self._write(c, raw, h), qos, raw=True))
            logger.info("recording %s (%s, %s)", topic, msgtype, qos.durability.name.lower())

    def _write(self, connection, raw: bytes, use_header: bool) -> None:
        stamp_ns = _header_stamp_ns(raw) if use_header else None
        self.writer.write(connection, stamp_ns if stamp_ns is not None else time.time_ns(), raw)
        self.counts[connection.topic] += 1


def record_bag(node, config: RecordConfig, stop: threading.Event | None = None) -> dict[str, int]:
    """Record until `stop` is set or the duration passes; returns messages per topic."""
    from rclpy.executors import SingleThreadedExecutor
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    from pram_ros.io.rosbag import STORAGES

    stop = stop or threading.Event()
    out = Path(config.out)
    if out.exists():
        raise FileExistsError(f"{out} exists: choose a new bag folder")
    if config.storage not in STORAGES:
        raise ValueError(f"storage must be one of {sorted(STORAGES)}, got {config.storage!r}")
    typestore = get_typestore(Stores.ROS2_JAZZY)  # our own: custom types get registered in it
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    writer = Writer(out, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[config.storage])
    recorder = None
    try:
        with writer:  # closing writes the metadata, whatever stopped us
            recorder = _Recorder(node, writer, typestore, config)
            deadline = None if config.duration_s is None else time.monotonic() + config.duration_s
            next_poll = 0.0
            logger.info("recording %s to %s%s", ", ".join(config.topics), out,
                        f" for {config.duration_s:g} s" if deadline else " until SIGINT")
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                if time.monotonic() >= next_poll:
                    recorder.subscribe_discovered()
                    next_poll = time.monotonic() + GRAPH_POLL_S
                executor.spin_once(timeout_sec=0.05)
            # Take what already arrived before closing.
            drain_until = time.monotonic() + 0.2
            while time.monotonic() < drain_until:
                executor.spin_once(timeout_sec=0.01)
    finally:
        executor.remove_node(node)
        executor.shutdown()
    if recorder.pending:
        logger.warning("never published while recording: %s", ", ".join(sorted(recorder.pending)))
    logger.info("wrote %s: %s", out, recorder.counts)
    return recorder.counts


def run_record(config: RecordConfig) -> int:
    """`pram record`: record in its own rclpy context; 0 on SIGINT or after the duration."""
    with ros_session("pram_record") as (node, stop):
        record_bag(node, config, stop)
    return 0
