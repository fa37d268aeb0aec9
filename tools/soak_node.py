#!/usr/bin/env python3
"""Soak pram_node: publish a sequence's images (with CameraInfo) in a loop at a fixed rate
for N frames, and sample the node's resident memory. It prints the RSS after warm-up and
at the end, and the growth between them.

    .venv/bin/python tools/soak_node.py --map demo/map.npz --sequence demo/world/query_offpath \
        --frames 10000 --rate-hz 30
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image

from pram_ros.evaluation.live import stop_process
from pram_ros.io.camera import load_camera_yaml
from pram_ros.io.images import load_image
from pram_ros.msg import LocalizationStatus


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--map", required=True)
    parser.add_argument("--sequence", required=True, help="a demo-world sequence folder (images/, camera.yaml)")
    parser.add_argument("--frames", type=int, default=10000)
    parser.add_argument("--rate-hz", type=float, default=30.0)
    parser.add_argument("--warmup-frames", type=int, default=500)
    args = parser.parse_args()

    sequence = Path(args.sequence)
    images = [load_image(path) for path in sorted((sequence / "images").glob("*.png"))]
    K, _, _ = load_camera_yaml(sequence / "camera.yaml")
    node_exe = str(Path(sys.executable).parent / "pram_node")
    node_process = subprocess.Popen([node_exe, "--ros-args", "-p", f"map_path:={args.map}",
                                     "-p", "image_topic:=/soak/image", "-p", "camera_info_topic:=/soak/camera_info"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rclpy.init()
    node = rclpy.create_node("pram_soak")
    statuses = []
    node.create_subscription(LocalizationStatus, "/pram_node/status", lambda m: statuses.append(m.state), 100)
    image_publisher = node.create_publisher(Image, "/soak/image", qos_profile_sensor_data)
    info_publisher = node.create_publisher(CameraInfo, "/soak/camera_info", qos_profile_sensor_data)
    try:
        while not statuses:  # loaded
            if node_process.poll() is not None:
                print(node_process.stderr.read(), file=sys.stderr)
                return 1
            rclpy.spin_once(node, timeout_sec=0.1)
        period = 1.0 / args.rate_hz
        samples: list[tuple[int, float]] = []
        start = time.monotonic()
        for index in range(args.frames):
            rgb = images[index % len(images)]
            stamp_ns = time.time_ns()
            msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", step=rgb.shape[1] * 3)
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            msg.header.frame_id = "camera_optical_frame"
            msg.data = rgb.tobytes()
            info = CameraInfo(header=msg.header, width=rgb.shape[1], height=rgb.shape[0], distortion_model="plumb_bob")
            info.k = [float(v) for v in K.reshape(-1)]
            info.d = [0.0] * 5
            info_publisher.publish(info)
            image_publisher.publish(msg)
            rclpy.spin_once(node, timeout_sec=0.0)
            if index % 250 == 0:
                samples.append((index, rss_mb(node_process.pid)))
                print(f"frame {index}: node RSS {samples[-1][1]:.1f} MB, {len(statuses)} statuses", flush=True)
            if node_process.poll() is not None:
                print(f"pram_node died at frame {index}", file=sys.stderr)
                return 1
            time.sleep(max(0.0, start + (index + 1) * period - time.monotonic()))
        samples.append((args.frames, rss_mb(node_process.pid)))
        warm = next(rss for frame, rss in samples if frame >= args.warmup_frames)
        final = samples[-1][1]
        processed = sum(s != LocalizationStatus.UNINITIALIZED for s in statuses)
        print(f"{args.frames} frames at {args.rate_hz} Hz: {processed} processed; node RSS after warm-up "
              f"{warm:.1f} MB, at the end {final:.1f} MB, growth {100 * (final - warm) / warm:+.2f}%")
        return 0
    finally:
        stop_process(node_process)
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
