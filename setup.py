"""pip/venv path of pram_ros (see README): `pip install -e .` after `make` built msg/.

In a ROS 2 workspace, colcon builds the package through CMakeLists.txt instead
(package.xml declares build_type ament_cmake), which installs the same files.
"""

from glob import glob

from setuptools import setup

PACKAGE = "pram_ros"

setup(
    data_files=[
        # ament index marker and manifest, so ROS tools that search AMENT_PREFIX_PATH find us.
        (f"share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*")),
        # `ros2 run pram_ros <exe>` looks for executables in lib/<package>.
        (f"lib/{PACKAGE}", ["scripts/pram", "scripts/pram_node", "scripts/pram_lifecycle_node"]),
    ],
)
