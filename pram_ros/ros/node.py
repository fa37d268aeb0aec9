"""`pram_node`: the pram_ros localization node.

This version is the node's shell: it starts, reads its parameters (from
config/pram.yaml via --ros-args --params-file), publishes ~/status and stops
cleanly. The localizer is not built yet, so the state it reports is always
UNINITIALIZED; it never publishes a pose.
"""

from __future__ import annotations

import sys

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from pram_ros.msg import LocalizationStatus


class PramNode(Node):
    def __init__(self) -> None:
        super().__init__("pram_node")
        self.map_frame = self.declare_parameter(
            "map_frame", "map", ParameterDescriptor(description="Fixed frame of the map (REP-105 'map').")
        ).value
        status_period_s = self.declare_parameter(
            "status_period_s", 1.0, ParameterDescriptor(description="Seconds between status messages.")
        ).value
        if not status_period_s > 0.0:
            raise ValueError(f"parameter status_period_s must be > 0, got {status_period_s}")
        self.status_publisher = self.create_publisher(LocalizationStatus, "~/status", 10)
        self.create_timer(status_period_s, self.publish_status)
        self.get_logger().warning("no localizer in this version: status stays UNINITIALIZED, no pose is published")

    def publish_status(self) -> None:
        status = LocalizationStatus()
        status.header.stamp = self.get_clock().now().to_msg()
        status.header.frame_id = self.map_frame
        status.state = LocalizationStatus.UNINITIALIZED
        self.status_publisher.publish(status)


def main(argv: list[str] | None = None) -> int:
    rclpy.init(args=argv if argv is not None else sys.argv)
    node = None
    try:
        node = PramNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as error:
        # A refused parameter: say why, without a traceback.
        sys.stderr.write(f"pram_node: {error}\n")
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0
