"""`pram replay`: play a rosbag2 over DDS, standing in for `ros2 bag play` where rosbag2
is not installed (as with the PyPI wheels).

In: a rosbag2 folder (mcap or sqlite3, read through `rosbags`). Out: every message
published on its topic as the recorded CDR bytes, so header stamps are the bag's exactly;
paced by the bag's receive times scaled by `rate`; with the QoS the bag recorded
(reliability, durability, depth); and, with `clock`, rosgraph_msgs/Clock on /clock at
the bag's time (for nodes with use_sim_time).
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

NS_PER_S = 1_000_000_000
PROGRESS_PERIOD_S = 5.0
WAIT_FOR_SUBSCRIBERS_S = 30.0


@dataclass(frozen=True)
class ReplayConfig:
    bag: Path
    rate: float = 1.0
    clock: bool = False
    clock_hz: float = 100.0
    topics: tuple[str, ...] | None = None  # None: every topic in the bag
    delay_s: float = 0.0  # before the first message, so that subscribers can discover us
    # Topics that must have a subscriber before the first message (at most
    # WAIT_FOR_SUBSCRIBERS_S): discovery can take longer than a fixed delay on a busy machine,
    # and a volatile publisher's messages before the match are lost.
    wait_for: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise ValueError(f"rate must be > 0, got {self.rate}")
        if not self.clock_hz > 0:
            raise ValueError(f"clock_hz must be > 0, got {self.clock_hz}")
        if not self.delay_s >= 0:
            raise ValueError(f"delay must be >= 0 s, got {self.delay_s}")


@dataclass
class ReplaySummary:
    messages: dict[str, int]
    bag_duration_s: float
    wall_s: float
    interrupted: bool


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class sensor_msgs.msg.Image."""
    parts = msgtype.split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"message type {msgtype!r} is not of the form package/msg/Name")
    package, kind, name = parts
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"message type {msgtype} is not installed in this environment ({error})") from error


def qos_from_offered(profiles, topic: str):
    """One rclpy QoSProfile compatible with every profile a topic's publishers offered
    (rosbags Qos or rclpy QoSProfile objects), as ros2 bag does: reliable unless one was
    best effort, transient-local only if all were, the largest depth."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    if not profiles:
        # Old bags record no QoS; /tf_static is latched by convention.
        durability = DurabilityPolicy.TRANSIENT_LOCAL if topic == "/tf_static" else DurabilityPolicy.VOLATILE
        return QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=durability)
    # rosbags' enums have the same values as rclpy's (both mirror rmw's).
    reliabilities = {_value(profile.reliability) for profile in profiles}
    durabilities = {_value(profile.durability) for profile in profiles}
    best_effort = ReliabilityPolicy.BEST_EFFORT.value in reliabilities
    latched = durabilities == {DurabilityPolicy.TRANSIENT_LOCAL.value}
    keep_all = any(_value(profile.history) == HistoryPolicy.KEEP_ALL.value for profile in profiles)
    depth = max(max(int(profile.depth) for profile in profiles), 1)
    return QoSProfile(
        history=HistoryPolicy.KEEP_ALL if keep_all else HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
    )


def _value(policy) -> int:
    return int(getattr(policy, "value", policy))


@contextmanager
def ros_session(node_name: str):
    """rclpy context and node for a command-line tool, with SIGINT/SIGTERM turned into a
    stop event (instead of KeyboardInterrupt somewhere inside rclpy), restored on exit.
    Yields (node, stop_event)."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    context = rclpy.Context()
    rclpy.init(args=[sys.argv[0]], context=context, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    try:
        node = rclpy.create_node(node_name, context=context)
        yield node, stop
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown(context=context)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _bag_plan(reader, wanted: tuple[str, ...] | None, clock: bool):
    """Connections to play, grouped by topic: {topic: (msgtype, [connections])}."""
    available = {connection.topic for connection in reader.connections}
    if wanted is not None:
        missing = sorted(set(wanted) - available)
        if missing:
            raise ValueError(f"{reader.path}: no topic {', '.join(missing)} in the bag "
                             f"(it has {', '.join(sorted(available))})")
    plan: dict[str, tuple[str, list]] = {}
    for connection in reader.connections:
        topic = connection.topic
        if wanted is not None and topic not in wanted:
            continue
        if clock and topic == "/clock":
            logger.warning("the bag's own /clock is skipped: --clock publishes /clock")
            continue
        if getattr(connection.ext, "serialization_format", "cdr") != "cdr":
            logger.warning("%s: serialization %s is not CDR; skipped", topic, connection.ext.serialization_format)
            continue
        msgtype, connections = plan.setdefault(topic, (connection.msgtype, []))
        if connection.msgtype != msgtype:
            logger.warning("%s: recorded as both %s and %s; playing %s only", topic, msgtype, connection.msgtype,
                           msgtype)
            continue
        connections.append(connection)
    return plan


def _create_publishers(node, plan):
    from rclpy.qos import DurabilityPolicy

    publishers = {}
    for topic, (msgtype, connections) in sorted(plan.items()):
        try:
            cls = message_class(msgtype)
        except ValueError as error:
            logger.warning("%s: skipped: %s", topic, error)
            continue
        profiles = [profile for connection in connections
                    for profile in getattr(connection.ext, "offered_qos_profiles", None) or []]
        qos = qos_from_offered(profiles, topic)
        if qos.durability == DurabilityPolicy.TRANSIENT_LOCAL:
            # A late joiner should get every latched message of the bag (several static
            # broadcasters each latch their own), not only the last `depth` of them.
            qos.depth = max(qos.depth, sum(connection.msgcount for connection in connections))
        publishers[topic] = node.create_publisher(cls, topic, qos)
        logger.info("%s: %s, %s, %s, depth %d", topic, msgtype, qos.reliability.name.lower(),
                    qos.durability.name.lower(), qos.depth)
    return publishers


def replay_bag(node, config: ReplayConfig, stop: threading.Event | None = None) -> ReplaySummary:
    """Publish `config.bag` through `node`'s publishers until it ends or `stop` is set."""
    from rosbags.rosbag2 import Reader
    from rosgraph_msgs.msg import Clock

    from pram_ros.ros.tf import time_msg_from_ns

    stop = stop or threading.Event()
    bag = Path(config.bag)
    if not (bag / "metadata.yaml").is_file():
        raise FileNotFoundError(f"{bag} is not a rosbag2 folder (no metadata.yaml)")
    counts: dict[str, int] = {}
    with Reader(bag) as reader:
        plan = _bag_plan(reader, config.topics, config.clock)
        publishers = _create_publishers(node, plan)
        if not publishers:
            raise ValueError(f"{bag}: nothing to play (topics: {', '.join(sorted(plan)) or 'none'})")
        connections = [connection for topic in publishers for connection in plan[topic][1]]
        total = sum(connection.msgcount for connection in connections)
        clock_publisher = None
        if config.clock:
            from rclpy.qos import QoSProfile, ReliabilityPolicy

            # Reliable (rosbag2 offers best effort): it matches best-effort subscribers such as
            # rclpy's TimeSource as well as reliable ones, and a tick at a message's time is not
            # lost among the fragments of large images. A second of ticks is kept: a reliable
            # writer overwrites samples not yet acknowledged, and with 10 a loaded machine
            # lost the ticks at messages' own times.
            clock_qos = QoSProfile(depth=max(10, int(config.clock_hz)), reliability=ReliabilityPolicy.RELIABLE)
            clock_publisher = node.create_publisher(Clock, "/clock", clock_qos)
        logger.info("playing %s: %d messages on %d topics, %.2f s of bag time, at rate %g%s",
                    bag, total, len(publishers), (reader.end_time - reader.start_time) / NS_PER_S, config.rate,
                    ", with /clock" if config.clock else "")
        last_clock_ns = -1

        def publish_clock(bag_ns: int, repeat: bool = False) -> None:
            nonlocal last_clock_ns
            if clock_publisher is not None and (bag_ns > last_clock_ns or repeat and bag_ns == last_clock_ns):
                last_clock_ns = bag_ns
                clock_publisher.publish(Clock(clock=time_msg_from_ns(bag_ns)))

        clock_period_s = 1.0 / config.clock_hz
        if config.delay_s > 0:
            # Hold /clock at the bag's start meanwhile, as ros2 bag play does, so that sim-time
            # nodes start at the bag's time (and the first ticks are not the ones discovery loses).
            delay_end = time.monotonic() + config.delay_s
            while (left := delay_end - time.monotonic()) > 0:
                publish_clock(reader.start_time, repeat=True)
                if stop.wait(min(left, clock_period_s) if clock_publisher is not None else left):
                    return ReplaySummary(counts, 0.0, 0.0, True)
        missing = [topic for topic in config.wait_for if topic not in publishers]
        if missing:
            raise ValueError(f"{bag}: no topic {', '.join(missing)} to wait for")
        waiting_until = time.monotonic() + WAIT_FOR_SUBSCRIBERS_S
        while [t for t in config.wait_for if publishers[t].get_subscription_count() == 0]:
            if time.monotonic() > waiting_until:
                logger.warning("no subscriber on %s after %.0f s: playing anyway", ", ".join(config.wait_for),
                               WAIT_FOR_SUBSCRIBERS_S)
                break
            publish_clock(reader.start_time, repeat=True)
            if stop.wait(clock_period_s):
                return ReplaySummary(counts, 0.0, 0.0, True)
        first_ns = None
        wall_start = time.monotonic()
        next_progress = wall_start + PROGRESS_PERIOD_S
        sent = 0
        for connection, stamp_ns, raw in reader.messages(connections=connections):
            if first_ns is None:
                first_ns, wall_start = stamp_ns, time.monotonic()
            due = wall_start + (stamp_ns - first_ns) / NS_PER_S / config.rate
            while (now := time.monotonic()) < due:
                if clock_publisher is not None:
                    publish_clock(min(first_ns + int((now - wall_start) * config.rate * NS_PER_S), stamp_ns))
                if stop.wait(min(due - now, clock_period_s) if clock_publisher is not None else due - now):
                    break
            if stop.is_set():
                break
            # /clock first, so a use_sim_time node's clock has reached the message's time.
            publish_clock(stamp_ns)
            publishers[connection.topic].publish(raw)
            counts[connection.topic] = counts.get(connection.topic, 0) + 1
            sent += 1
            if now >= next_progress:
                next_progress = now + PROGRESS_PERIOD_S
                logger.info("%d/%d messages, bag time %.1f s", sent, total, (stamp_ns - first_ns) / NS_PER_S)
        wall_s = time.monotonic() - wall_start
        bag_s = 0.0 if first_ns is None else (stamp_ns - first_ns) / NS_PER_S
        if not stop.is_set():
            # The process may exit right after: let reliable subscribers get the last messages.
            from rclpy.duration import Duration

            for publisher in [*publishers.values(), clock_publisher]:
                if publisher is not None:
                    publisher.wait_for_all_acked(Duration(seconds=1.0))
    summary = ReplaySummary(counts, bag_s, wall_s, stop.is_set())
    logger.info("%s after %d/%d messages (%.1f s of bag time in %.1f s): %s",
                "interrupted" if summary.interrupted else "done", sent, total, bag_s, wall_s, counts)
    return summary


def run_replay(config: ReplayConfig) -> int:
    """`pram replay`: play the bag in its own rclpy context; 0 when it ends or on SIGINT."""
    with ros_session("pram_replay") as (node, stop):
        replay_bag(node, config, stop)
    return 0
