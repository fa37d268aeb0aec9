"""Shared fixtures. Tests use real pieces: DDS over localhost, rosbag2 files, rendering."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# DDS stays on this machine, and each run gets its own domain so that parallel runs
# (and a robot on the same network) never see each other's traffic. Set before any
# rclpy.init, in this process and in every process a test starts.
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_DOMAIN_ID"] = str(random.SystemRandom().randint(1, 100))


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """A small rendered world with mcap bags, shared by the tests that only read it."""
    from pram_ros.world.generate import WorldConfig, generate_world

    out = tmp_path_factory.mktemp("world") / "world"
    generate_world(out, WorldConfig(seed=3, frames=24, storage="mcap", write_bags=True))
    return out


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
