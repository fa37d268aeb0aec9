"""The ROS 2 workspace path: CMakeLists.txt builds and installs the package as colcon would.

colcon itself is not installable here; it runs exactly these CMake steps for an
ament_cmake package. The install tree must import `pram_ros` with its msgs and carry
the executables `ros2 run` looks for.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


def test_cmake_install_tree_is_a_ros_package(tmp_path):
    if shutil.which("cmake") is None:
        pytest.skip("cmake is missing")
    # A copy of the tracked sources, as in a workspace's src/ (no in-place msgs, no .venv).
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    source = tmp_path / "src" / "pram_ros"
    for name in filter(None, tracked.decode().split("\0")):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    prefix, build = tmp_path / "install", tmp_path / "build"
    venv = Path(sys.prefix)
    env = {**os.environ, "AMENT_PREFIX_PATH": str(venv), "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    for command in (
        ["cmake", "-S", str(source), "-B", str(build), f"-DCMAKE_INSTALL_PREFIX={prefix}",
         "-DBUILD_TESTING=OFF", f"-DPython3_EXECUTABLE={sys.executable}"],
        ["cmake", "--build", str(build), "-j", "2"],
        ["cmake", "--install", str(build)],
    ):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    for executable in ("pram", "pram_node", "pram_lifecycle_node"):
        assert os.access(prefix / "lib" / "pram_ros" / executable, os.X_OK)
    for shared in ("package.xml", "config/pram.yaml", "launch/localize.launch.py"):
        assert (prefix / "share" / "pram_ros" / shared).is_file(), shared
    site = next(prefix.glob("lib/python3*/site-packages"))
    check = (
        "import pram_ros, pram_ros.cli; from pram_ros.msg import LocalizationStatus; from pram_ros.srv import LoadMap; "
        "print(pram_ros.__file__); print(LocalizationStatus.LOST)"
    )
    env = {**env, "PYTHONPATH": str(site), "LD_LIBRARY_PATH": str(prefix / "lib")}
    result = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    module_file, lost = result.stdout.split()
    assert module_file.startswith(str(site)), "the installed package, not the source tree, must import"
    assert lost == "3"
