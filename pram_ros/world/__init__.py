"""The demo world: a CPU-rendered indoor scene with exact ground truth.

`generate_world(out_dir, WorldConfig())` renders the mapping, query and foreign
sequences (images, depth, poses, camera, rosbag); `pram_ros.io` reads them back.
"""

from pram_ros.world.generate import WorldConfig, WorldSummary, generate_world

__all__ = [
    "WorldConfig",
    "WorldSummary",
    "generate_world",
]
