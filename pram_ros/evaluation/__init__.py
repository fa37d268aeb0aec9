"""Evaluation: rosbag2 input/output, metrics, reports and benchmarks."""
