"""Test helper process: publishes a known LocalizationStatus and a /tf message at 10 Hz."""

import rclpy
from geometry_msgs.msg import TransformStamped
from rclpy.executors import ExternalShutdownException
from tf2_msgs.msg import TFMessage

from pram_ros.msg import LocalizationStatus


def main() -> None:
    rclpy.init()
    node = rclpy.create_node("status_tf_publisher")
    status_publisher = node.create_publisher(LocalizationStatus, "/test/status", 10)
    tf_publisher = node.create_publisher(TFMessage, "/tf", 10)

    def publish() -> None:
        status = LocalizationStatus()
        status.header.stamp.sec = 1_700_000_123
        status.header.frame_id = "map"
        status.state = LocalizationStatus.TRACKING
        status.landmark_ids = [7, 3, 12]
        status.num_inliers = 321
        status.inlier_ratio = 0.625
        status.features_ms, status.recognition_ms = 45.5, 23.25
        status.registration_ms, status.total_ms = 12.0, 80.75
        status_publisher.publish(status)
        transform = TransformStamped()
        transform.header.stamp.sec = 1_700_000_123
        transform.header.frame_id = "map"
        transform.child_frame_id = "odom"
        transform.transform.translation.x = 1.5
        transform.transform.rotation.z = 0.6
        transform.transform.rotation.w = 0.8
        tf_publisher.publish(TFMessage(transforms=[transform]))

    node.create_timer(0.1, publish)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
