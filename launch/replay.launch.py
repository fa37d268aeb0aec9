"""Replay a bag into pram_node on the bag's clock; everything stops when the bag ends:

    ros2 launch pram_ros replay.launch.py bag:=/path/bag map_path:=/path/map.npz [rate:=1.0] [rviz:=true]
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, EmitEvent, ExecuteProcess, IncludeLaunchDescription, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.events import Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory("pram_ros"))
    play = ExecuteProcess(
        cmd=["ros2", "bag", "play", LaunchConfiguration("bag"), "--clock", "--rate", LaunchConfiguration("rate"),
             "--delay", "2.0"],
        output="screen",
    )
    return LaunchDescription(
        [
            DeclareLaunchArgument("bag", description="rosbag2 folder with images and CameraInfo"),
            DeclareLaunchArgument("map_path", description="PRAM map file"),
            DeclareLaunchArgument("rate", default_value="1.0", description="playback rate"),
            DeclareLaunchArgument("odom_frame", default_value="", description="set: publish map->odom"),
            DeclareLaunchArgument("rviz", default_value="false", description="start RViz"),
            IncludeLaunchDescription(
                PythonLaunchDescriptionSource(str(share / "launch" / "localize.launch.py")),
                launch_arguments={
                    "map_path": LaunchConfiguration("map_path"),
                    "odom_frame": LaunchConfiguration("odom_frame"),
                    "rviz": LaunchConfiguration("rviz"),
                    "use_sim_time": "true",
                }.items(),
            ),
            play,
            # The bag's end is the run's end.
            RegisterEventHandler(OnProcessExit(target_action=play, on_exit=[EmitEvent(event=Shutdown(reason="bag ended"))])),
        ]
    )
