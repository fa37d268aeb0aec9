"""Shared fixtures. Tests use real pieces: DDS over localhost, rosbag2 files, rendering."""

from __future__ import annotations

import atexit
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# DDS stays on this machine, and each run gets its own domain so that parallel runs
# (and a robot on the same network) never see each other's traffic. Set before any
# rclpy.init, in this process and in every process a test starts.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 100))
# Exported networks are cached (pram_ros/inference.py): in a folder of this run's own, so
# that nothing left on the machine changes what the suite tests.
os.environ["PRAM_CACHE_DIR"] = tempfile.mkdtemp(prefix="pram_test_cache_")
atexit.register(shutil.rmtree, os.environ["PRAM_CACHE_DIR"], True)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """A small rendered world with mcap bags, shared by the tests that only read it."""
    from pram_ros.world.generate import WorldConfig, generate_world

    out = tmp_path_factory.mktemp("world") / "world"
    generate_world(out, WorldConfig(seed=3, frames=24, storage="mcap", write_bags=True))
    return out


@pytest.fixture(scope="session")
def localization_world(tmp_path_factory) -> Path:
    """One room, rendered with bags: mapping, an off-path query and a foreign place."""
    from pram_ros.world.generate import WorldConfig, generate_world

    out = tmp_path_factory.mktemp("localization_world") / "world"
    generate_world(out, WorldConfig(seed=5, rooms=1, frames=40, query_frames=12, foreign_frames=8,
                                    sequences=("mapping", "query_offpath", "foreign"), write_bags=True))
    return out


@pytest.fixture(scope="session")
def smooth_query_world(tmp_path_factory) -> Path:
    """`localization_world`'s off-path query (same seed: the same room, the same map) sampled
    five times as densely, with its bag: 60 frames. The 12 frames of the other move about
    300 px apart, too far for optical flow; these about 60."""
    from pram_ros.world.generate import WorldConfig, generate_world

    out = tmp_path_factory.mktemp("smooth_world") / "world"
    generate_world(out, WorldConfig(seed=5, rooms=1, frames=40, query_frames=60, sequences=("query_offpath",),
                                    write_bags=True))
    return out


# Frames of `smooth_query_world`'s query that the map covers and optical flow follows (a 1-2 cm track).
SMOOTH_FRAMES = range(17, 33)


@pytest.fixture(scope="session")
def localization_map(localization_world) -> Path:
    """The map of `localization_world` and, beside it, a quickly trained recognizer; -> map path."""
    from pram_ros.io.imageset import images_from_folder
    from pram_ros.mapping.build import MapBuildConfig, build_map
    from pram_ros.mapping.mapfile import save_map
    from pram_ros.recognition.dataset import label_space
    from pram_ros.recognition.modelfile import default_model_path, save_model
    from pram_ros.recognition.train import TrainConfig, train_on_maps

    mapping = localization_world / "mapping"
    images = images_from_folder(mapping / "images", poses_tum=mapping / "poses.tum")
    pram_map, _ = build_map(images, MapBuildConfig())
    net, _, _, _ = train_on_maps([("map", pram_map)], [mapping / "images"],
                                 TrainConfig(epochs=8, batch_size=4, min_tokens=256, max_tokens=512, val_fraction=0.0))
    map_path = localization_world.parent / "map.npz"
    save_map(pram_map, map_path)
    save_model(default_model_path(map_path), net, label_space([pram_map], ["map"]), pram_map.meta["extractor"])
    return map_path


@pytest.fixture()
def ros_node():
    """A listener node in its own context, and its executor: (node, executor)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("pram_test_listener", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)


@pytest.fixture()
def processes():
    """Start processes with `processes.start([...])`; every one is stopped after the test."""

    class Processes:
        def __init__(self) -> None:
            self.started: list[subprocess.Popen] = []

        def start(self, args: list[str], **kwargs) -> subprocess.Popen:
            process = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, **kwargs
            )
            self.started.append(process)
            return process

    handle = Processes()
    yield handle
    for process in handle.started:
        if process.poll() is None:
            stop_process(process)


def stop_process(process: subprocess.Popen, timeout_s: float = 10.0) -> tuple[int, str, str]:
    """SIGINT, then SIGKILL if it does not stop; returns (exit code, stdout, stderr)."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
    return process.returncode, out, err


def venv_executable(name: str) -> str:
    """Path of a console script in the interpreter's environment (the venv under make)."""
    candidate = Path(sys.executable).parent / name
    if not candidate.exists():
        pytest.fail(f"{candidate} is missing: run `make setup` (pip install -e .)")
    return str(candidate)


def spin_until(node, executor, predicate, timeout_s: float) -> bool:
    """Spin `executor` until predicate() is true or the timeout passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.1)
        if predicate():
            return True
    return predicate()


def pose_on_a_line(x_m: float, yaw_deg: float = 0.0):
    """world_from_cam 4x4 of a synthetic walk: at (x, 0.1 x, 1.2) m, turned yaw_deg about z."""
    import numpy as np

    yaw = np.radians(yaw_deg)
    world_from_cam = np.eye(4)
    world_from_cam[:3, :3] = [[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]]
    world_from_cam[:3, 3] = [x_m, 0.1 * x_m, 1.2]
    return world_from_cam
