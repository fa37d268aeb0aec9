"""The demo world: a CPU-rendered indoor scene with exact ground truth.

`generate_world(out_dir, WorldConfig())` renders the mapping, query and foreign
sequences (images, depth, poses, camera, rosbag); `pram_ros.world.io` reads them back.
"""

from pram_ros.world.generate import WorldConfig, WorldSummary, generate_world
from pram_ros.world.io import load_camera_yaml, load_depth, load_image, load_tum

__all__ = [
    "WorldConfig",
    "WorldSummary",
    "generate_world",
    "load_camera_yaml",
    "load_depth",
    "load_image",
    "load_tum",
]
