#!/usr/bin/env python3
"""Cycle pram_lifecycle_node through its states and watch for leaks: N times configure ->
activate -> (one frame, localized) -> deactivate -> activate -> deactivate -> cleanup, then
shutdown. After each cleanup it samples the node's resident memory and thread count, and
checks that no frame is taken while inactive. Prints one line per cycle and the growth.

    .venv/bin/python tools/lifecycle_soak.py --map demo/map.npz --sequence demo/world/mapping --cycles 20
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import rclpy
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from sensor_msgs.msg import Image

from pram_ros.evaluation.live import stop_process
from pram_ros.io.images import load_image
from pram_ros.msg import LocalizationStatus

REPO = Path(__file__).resolve().parents[1]


def proc_status(pid: int) -> tuple[float, int]:
    """(resident MB, threads) of a process."""
    values = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(values["VmRSS"].split()[0]) / 1024.0, int(values["Threads"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--map", required=True)
    parser.add_argument("--sequence", required=True, help="a demo-world sequence folder (images/)")
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--frame", type=int, default=10, help="which image of the sequence to send")
    args = parser.parse_args()
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))
    rgb = load_image(sorted((Path(args.sequence) / "images").glob("*.png"))[args.frame])
    node_process = subprocess.Popen(
        [str(Path(sys.prefix) / "bin" / "pram_lifecycle_node"), "--ros-args", "--params-file",
         str(REPO / "config" / "pram.yaml"), "-p", f"map_path:={args.map}", "-p", "image_topic:=/camera/image_raw",
         "-p", "image_qos:=reliable"], stderr=subprocess.PIPE, text=True)
    rclpy.init()
    node = rclpy.create_node("lifecycle_soak")
    statuses: list = []
    node.create_subscription(LocalizationStatus, "/pram_node/status", statuses.append, 50)
    images = node.create_publisher(Image, "/camera/image_raw", 10)
    client = node.create_client(ChangeState, "/pram_node/change_state")

    def spin_until(condition, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return True
            rclpy.spin_once(node, timeout_sec=0.05)
        return condition()

    def transition(transition_id: int) -> None:
        future = client.call_async(ChangeState.Request(transition=Transition(id=transition_id)))
        if not spin_until(future.done, 120.0) or not future.result().success:
            raise RuntimeError(f"transition {transition_id} failed")

    def frame(stamp: int) -> str:
        msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", step=rgb.shape[1] * 3,
                    data=rgb.tobytes())
        msg.header.stamp.sec, msg.header.frame_id = stamp, "camera_optical_frame"
        images.publish(msg)
        answered = spin_until(lambda: any(s.header.stamp.sec == stamp for s in statuses), 30.0)
        states = [s.state for s in statuses if s.header.stamp.sec == stamp]
        return "none" if not answered else {1: "RELOCALIZED", 2: "TRACKED", 3: "LOST"}.get(states[0], "?")

    try:
        if not client.wait_for_service(timeout_sec=60.0):
            raise RuntimeError("no /pram_node/change_state")
        samples, stamp = [], 1
        print(f"unconfigured: {proc_status(node_process.pid)[0]:.0f} MB", flush=True)
        for cycle in range(1, args.cycles + 1):
            start = time.monotonic()
            transition(Transition.TRANSITION_CONFIGURE)
            transition(Transition.TRANSITION_ACTIVATE)
            spin_until(lambda: images.get_subscription_count() > 0, 10.0)
            first = frame(stamp)
            transition(Transition.TRANSITION_DEACTIVATE)
            spin_until(lambda: images.get_subscription_count() == 0, 10.0)
            images.publish(Image())  # inactive: nobody takes it
            inactive_taken = spin_until(lambda: any(s.header.stamp.sec == 0 and s.state != 0 for s in statuses), 1.0)
            transition(Transition.TRANSITION_ACTIVATE)
            spin_until(lambda: images.get_subscription_count() > 0, 10.0)
            second = frame(stamp + 1)
            transition(Transition.TRANSITION_DEACTIVATE)
            transition(Transition.TRANSITION_CLEANUP)
            stamp += 2
            rss_mb, threads = proc_status(node_process.pid)
            samples.append((rss_mb, threads))
            print(f"cycle {cycle}: frames {first}, {second}; inactive frame taken: {inactive_taken}; "
                  f"RSS {rss_mb:.0f} MB, {threads} threads; {time.monotonic() - start:.1f} s", flush=True)
        transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        print(f"after cycle 1: {samples[0][0]:.0f} MB, {samples[0][1]} threads; after cycle {len(samples)}: "
              f"{samples[-1][0]:.0f} MB, {samples[-1][1]} threads; growth {samples[-1][0] - samples[0][0]:+.0f} MB "
              f"(cycle 2 to last: {samples[-1][0] - samples[min(1, len(samples) - 1)][0]:+.0f} MB)")
    finally:
        stop_process(node_process, timeout_s=20)
        node.destroy_node()
        rclpy.try_shutdown()
    print(f"node exit code {node_process.returncode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
