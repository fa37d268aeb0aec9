"""The ROS 2 package layout: manifest, install rules, launch files, console scripts."""

from __future__ import annotations

import ast
import subprocess
import xml.etree.ElementTree as ElementTree

import pytest

from conftest import REPO, venv_executable

REQUIRED_DEPENDENCIES = {
    "rclpy",
    "sensor_msgs",
    "geometry_msgs",
    "visualization_msgs",
    "diagnostic_msgs",
    "std_srvs",
    "tf2_ros",
    "rosidl_default_generators",
    "rosidl_default_runtime",
}


def test_package_xml_format3_with_dependencies():
    root = ElementTree.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "pram_ros"
    named = {element.text for element in root if element.tag.endswith("depend")}
    assert REQUIRED_DEPENDENCIES <= named, REQUIRED_DEPENDENCIES - named
    assert root.findtext("member_of_group") == "rosidl_interface_packages"
    assert root.find("export/build_type").text == "ament_cmake"


def test_top_level_layout():
    for name in ["pram_ros", "launch", "config", "msg", "maps", "test", "package.xml", "setup.py",
                 "setup.cfg", "README.md", "Makefile", ".ci/run", "CMakeLists.txt", "resource/pram_ros"]:
        assert (REPO / name).exists(), name


def test_install_rules_name_existing_files():
    cmake = (REPO / "CMakeLists.txt").read_text()
    assert 'rosidl_generate_interfaces(${PROJECT_NAME}' in cmake
    assert '"msg/LocalizationStatus.msg"' in cmake
    for script in ["scripts/pram", "scripts/pram_node"]:
        assert script in cmake
        assert (REPO / script).stat().st_mode & 0o111, f"{script} is not executable"


def test_launch_files_name_existing_files():
    for launch_file in (REPO / "launch").glob("*.launch.py"):
        tree = ast.parse(launch_file.read_text())
        strings = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)}
        assert "pram_ros" in strings
        for executable in {"pram_node"} & strings:
            assert (REPO / "scripts" / executable).exists()
        for config in {"pram.yaml", "pram.rviz"} & strings:
            assert (REPO / "config" / config).exists()
        for included in {s for s in strings if s.endswith(".launch.py")}:
            assert (REPO / "launch" / included).exists(), included


def test_rviz_config_shows_the_node_outputs():
    import yaml

    config = yaml.safe_load((REPO / "config" / "pram.rviz").read_text())
    topics = {d.get("Topic", {}).get("Value") for d in config["Visualization Manager"]["Displays"]}
    for topic in ("/pram_node/pose", "/pram_node/landmarks", "/pram_node/map_points", "/pram_node/debug_image"):
        assert topic in topics, topic
    classes = {d["Class"] for d in config["Visualization Manager"]["Displays"]}
    assert "rviz_default_plugins/TF" in classes
    assert config["Visualization Manager"]["Global Options"]["Fixed Frame"] == "map"


def test_launch_files_import_where_launch_ros_exists():
    pytest.importorskip("launch_ros")
    import importlib.util

    for launch_file in (REPO / "launch").glob("*.launch.py"):
        spec = importlib.util.spec_from_file_location(launch_file.stem.replace(".", "_"), launch_file)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.generate_launch_description() is not None


def test_console_scripts_run():
    result = subprocess.run([venv_executable("pram"), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "world" in result.stdout


def test_make_test_fails_when_no_tests_are_collected(tmp_path):
    """CI must not pass on pytest's exit 5 ("no tests collected")."""
    result = subprocess.run(
        ["make", "--no-print-directory", "test", f"PYTEST_ARGS={tmp_path} -p no:cacheprovider"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode != 0
    assert "collected no tests" in result.stderr
