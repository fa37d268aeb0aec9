"""The ROS 2 workspace path: `colcon build` of the package in a workspace, as a ROS user runs it.

colcon comes from PyPI (requirements-ros.txt) and builds against the PyPI ROS 2 wheels in
.venv. The install tree must import `pram_ros` with its msg/ and srv/ interfaces, from
`install/setup.bash`, and carry the executables `ros2 run` looks for.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


def test_colcon_builds_a_ros_workspace_with_the_package(tmp_path):
    colcon = Path(sys.prefix) / "bin" / "colcon"
    if not colcon.exists() or shutil.which("cmake") is None:
        pytest.skip("colcon or cmake is missing (make installs both)")
    # A copy of the tracked sources, as in a workspace's src/ (no in-place msgs, no .venv).
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    workspace = tmp_path / "ws"
    source = workspace / "src" / "pram_ros"
    for name in filter(None, tracked.decode().split("\0")):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    venv = Path(sys.prefix)
    env = {**os.environ, "AMENT_PREFIX_PATH": str(venv), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    result = subprocess.run([str(colcon), "build", "--packages-select", "pram_ros", "--event-handlers",
                             "console_cohesion+", "--cmake-args", "-DBUILD_TESTING=OFF",
                             f"-DPython3_EXECUTABLE={sys.executable}"],
                            cwd=workspace, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    prefix = workspace / "install" / "pram_ros"
    for executable in ("pram", "pram_node", "pram_lifecycle_node"):
        assert os.access(prefix / "lib" / "pram_ros" / executable, os.X_OK)
    for shared in ("package.xml", "config/pram.yaml", "launch/localize.launch.py"):
        assert (prefix / "share" / "pram_ros" / shared).is_file(), shared
    # What a user types after the build: source the workspace, then import and run.
    check = (
        "source install/setup.bash && cd / && "
        f"{sys.executable} -c 'import pram_ros; from pram_ros.msg import LocalizationStatus; "
        "from pram_ros.srv import LoadMap; print(pram_ros.__file__); print(LocalizationStatus.LOST)' && "
        "install/pram_ros/lib/pram_ros/pram_node --ros-args -p map_path:=/nonexistent/map.npz; echo exit $?"
    )
    result = subprocess.run(["bash", "-c", check.replace("install/pram_ros/lib", f"{prefix}/lib")], cwd=workspace,
                            env={**env, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}, capture_output=True,
                            text=True, timeout=180)
    lines = result.stdout.split()
    assert result.returncode == 0 and len(lines) >= 4, result.stdout[-2000:] + result.stderr[-3000:]
    module_file, lost = lines[0], lines[1]
    assert module_file.startswith(str(workspace / "install")), "the installed package, not the source tree"
    assert lost == "3"
    assert lines[-2:] == ["exit", "2"] and "/nonexistent/map.npz" in result.stderr, result.stderr[-2000:]
