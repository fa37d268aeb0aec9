"""pram_node's parameters: its own (`NodeParams`) and the localizer's (`LocalizerConfig`).

Each is declared once, with its doc and range (pram_ros/settings.py); the node declares
them as ROS parameters from here, `params_yaml()` writes config/pram.yaml's contents and
`pram params` prints them. No rclpy here, so the CLI can read them without ROS.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import yaml

from pram_ros.localization.config import LocalizerConfig
from pram_ros.settings import Spec, setting, specs

NODE_NAME = "pram_node"
GROUP_TITLES = {
    "input": "The map (pram map build) and its recognizer (pram train).",
    "topics": "Input: rectified images of the map's camera, and its CameraInfo.",
    "frames": "Frames (REP-105). Empty odom_frame: publish map -> camera optical frame.",
    "output": "Outputs.",
    "recognition": "Localizer: recognition.",
    "registration": "Localizer: 2D-3D registration.",
    "gate": "Localizer: the acceptance gate.",
    "tracking": "Localizer: tracking from frame to frame.",
    "continuity": "Localizer: jumps and look-alikes held until believed.",
}


@dataclass
class NodeParams:
    """The node's own parameters (ROS side); the localizer's come from LocalizerConfig.
    Each is declared once here, with its description and range (pram_ros/settings.py)."""

    map_path: str = setting("", "PRAM map file (pram map build).", "input")
    model_path: str = setting("", "Recognizer file; empty: the map's MAP.recognizer.safetensors.", "input")
    device: str = setting("auto", "auto (cuda when present), cpu or cuda.", "input", choices=("auto", "cpu", "cuda"))
    feature_preset: str = setting("", "Feature extractor; empty: the one the map was built with (xfeat or sift).",
                                  "input", choices=("", "xfeat", "sift"))
    num_threads: int = setting(2, "CPU threads for features and recognition.", "input", low=1, high=64)
    full_frames_in_background: bool = setting(
        True, "Track every frame by optical flow while the track's full frames (features, registration, "
        "recognition checks) run on a second thread, so that a 30 Hz camera is not kept waiting; false: one "
        "thread, as pram eval runs offline.", "input")
    image_topic: str = setting("image", "Camera image topic (rectified images of the map's camera).", "topics")
    camera_info_topic: str = setting("camera_info", "CameraInfo topic of that camera.", "topics")
    image_qos: str = setting("sensor_data", "QoS of the image subscription: sensor_data (best effort) or reliable.",
                             "topics", choices=("sensor_data", "reliable"))
    image_transport: str = setting("raw", "raw: sensor_msgs/Image on image_topic; compressed: "
                                   "sensor_msgs/CompressedImage (JPEG, PNG) on image_topic/compressed, as "
                                   "image_transport names it.", "topics", choices=("raw", "compressed"))
    max_waiting_frames: int = setting(
        6, "While tracking, frames that arrive during a slow one (a relocalization) wait, up to this many, and "
        "are then tracked in order (optical flow, a few ms each), so the track follows every camera frame; "
        "beyond it the oldest is dropped. While lost only the newest waits. 1: only the newest, always.",
        "topics", low=1, high=100)
    map_frame: str = setting("map", "Fixed frame of the map (REP-105 'map').", "frames")
    camera_frame: str = setting("", "Camera optical frame; empty: the image header's frame_id.", "frames")
    odom_frame: str = setting("", "Empty: publish map->camera. Set: publish map->odom composed with odom->camera "
                              "(REP-105), and ~/pose is base_frame's pose.", "frames")
    base_frame: str = setting("base_link", "Robot base frame; ~/pose is its pose when odom_frame is set.", "frames")
    publish_tf: bool = setting(True, "Publish the transform on /tf.", "frames")
    tf_tolerance_s: float = setting(0.1, "How far outside the buffered odometry an image stamp may fall.", "frames",
                                    low=0.0, high=5.0)
    debug_image: bool = setting(True, "Publish ~/debug_image (only built while someone subscribes).", "output")
    status_period_s: float = setting(1.0, "Seconds between /diagnostics and idle status messages.", "output",
                                     low=0.05, high=60.0)
    publish_lost_pose: bool = setting(False, "While LOST, publish ~/pose anyway, as the identity with a 1e6 "
                                      "variance (pram_ros before 2026-12); off: no ~/pose while LOST.", "output")
    stall_warn_s: float = setting(3.0, "/diagnostics WARN when images arrive but none was used for this long.",
                                  "output", low=0.5, high=600.0)
    lost_error_s: float = setting(10.0, "/diagnostics ERROR when frames are processed but none localized for this "
                                  "long.", "output", low=1.0, high=3600.0)


def parameter_specs() -> list[Spec]:
    """Every parameter pram_node declares: its own, then the localizer's."""
    return specs(NodeParams) + specs(LocalizerConfig)


def params_yaml() -> str:
    """config/pram.yaml: every parameter with its default, grouped, each with its doc."""
    lines = ["# Parameters of pram_node, written by `pram params --yaml` from their one definition",
             "# (pram_ros/ros/params.py, pram_ros/localization/config.py):",
             "#   ros2 run pram_ros pram_node --ros-args --params-file config/pram.yaml -p map_path:=MAP",
             "# `ros2 param describe /pram_node NAME` gives each one's description and range.",
             f"{NODE_NAME}:", "  ros__parameters:"]
    group = None
    for spec in parameter_specs():
        if spec.group != group:
            group = spec.group
            lines += ["", f"    # {GROUP_TITLES[group]}"]
        value = yaml.safe_dump(spec.default, default_flow_style=True).strip().removesuffix("...").strip()
        allowed = f" Allowed: {spec.allowed}." if spec.low is not None or spec.choices is not None else ""
        lines += textwrap.wrap(spec.doc + allowed, 100, initial_indent="    # ", subsequent_indent="    # ")
        lines.append(f"    {spec.name}: {value}")
    return "\n".join(lines) + "\n"


def params_table() -> str:
    """Every parameter as a text table: name, default, allowed values, doc."""
    rows = [(s.name, repr(s.default), s.allowed, s.doc) for s in parameter_specs()]
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{a:{width[0]}}  {b:{width[1]}}  {c:{width[2]}}  {d}" for a, b, c, d in rows)
