"""Start pram_node with the package's parameters: ros2 launch pram_ros localize.launch.py"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    default_params = str(Path(get_package_share_directory("pram_ros")) / "config" / "pram.yaml")
    return LaunchDescription(
        [
            DeclareLaunchArgument("params_file", default_value=default_params, description="node parameters"),
            DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock"),
            Node(
                package="pram_ros",
                executable="pram_node",
                name="pram_node",
                output="screen",
                parameters=[LaunchConfiguration("params_file"), {"use_sim_time": LaunchConfiguration("use_sim_time")}],
            ),
        ]
    )
