"""The thin ROS 2 adapter: messages in, `pram_ros` core calls, messages out."""
