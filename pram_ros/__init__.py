"""pram_ros: visual relocalization in a known place with PRAM landmarks, as a ROS 2 node.

The core (mapping, recognition, localization, evaluation, the demo world) is plain
Python and imports no ROS. `pram_ros.ros` is the thin ROS 2 adapter, and
`pram_ros.msg` holds the generated interfaces (built by `make`, or by colcon).
"""

__version__ = "0.1.0"
