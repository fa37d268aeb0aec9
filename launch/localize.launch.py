"""pram_node with the package's parameters, and RViz on request:

    ros2 launch pram_ros localize.launch.py map_path:=/path/map.npz [rviz:=true]
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory("pram_ros"))
    return LaunchDescription(
        [
            DeclareLaunchArgument("params_file", default_value=str(share / "config" / "pram.yaml"),
                                  description="node parameters"),
            DeclareLaunchArgument("map_path", description="PRAM map file (pram map build)"),
            DeclareLaunchArgument("image", default_value="/camera/image_raw", description="image topic"),
            DeclareLaunchArgument("camera_info", default_value="/camera/camera_info", description="CameraInfo topic"),
            DeclareLaunchArgument("odom_frame", default_value="", description="set: publish map->odom (REP-105)"),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock"),
            DeclareLaunchArgument("rviz", default_value="false", description="start RViz with config/pram.rviz"),
            Node(
                package="pram_ros",
                executable="pram_node",
                name="pram_node",
                output="screen",
                parameters=[
                    LaunchConfiguration("params_file"),
                    {
                        "map_path": LaunchConfiguration("map_path"),
                        "image_topic": LaunchConfiguration("image"),
                        "camera_info_topic": LaunchConfiguration("camera_info"),
                        "odom_frame": LaunchConfiguration("odom_frame"),
                        "use_sim_time": LaunchConfiguration("use_sim_time"),
                    },
                ],
            ),
            Node(
                package="rviz2",
                executable="rviz2",
                arguments=["-d", str(share / "config" / "pram.rviz")],
                parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
                condition=IfCondition(LaunchConfiguration("rviz")),
            ),
        ]
    )
