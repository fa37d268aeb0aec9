"""`pram view`: what it logs is read back from the .rrd with rerun's own reader.

A real map (conftest's `localization_map`), a synthetic `pram eval` report and `pram localize`
output with known LOST and wrong frames, and a fake node's topics over DDS for --live. The
web viewer is fetched over HTTP; where Chromium is installed, a screenshot of it must show
the landmark colours.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, pose_on_a_line, spin_until, stop_process, venv_executable
from pram_ros.evaluation.metrics import pose_errors
from pram_ros.io.tum import save_tum
from pram_ros.mapping.mapfile import load_map
from pram_ros.viewer.colors import landmark_rgb8

rerun_chunk = pytest.importorskip("rerun.chunk")

RUN_TIMEOUT_S = 120
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


# -- helpers ---------------------------------------------------------------------------------

def _pram_view(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([venv_executable("pram"), "view", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=RUN_TIMEOUT_S)


def _read_rrd(path: Path) -> dict[str, dict[str, list]]:
    """{entity path: {component: [value per logged row]}} of the file's recording."""
    entities: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for chunk in rerun_chunk.RrdReader(path).stream():
        batch = chunk.to_record_batch()
        for name in batch.schema.names:
            if ":" in name:  # components are Archetype:field; the rest are row ids and timelines
                entities[chunk.entity_path][name] += batch.column(name).to_pylist()
    return entities


def _mono(rows: list) -> list:
    """One value per row of a single-instance component (a scalar, a text)."""
    return [row[0] for row in rows]


def _rgb8(packed_rgba: list[int]) -> np.ndarray:
    """rerun's colours, 0xRRGGBBAA, -> [N x 3] uint8."""
    packed = np.asarray(packed_rgba, np.uint64)
    return np.stack([(packed >> 24) & 0xFF, (packed >> 16) & 0xFF, (packed >> 8) & 0xFF], axis=1).astype(np.uint8)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


FRAMES, LOST, WRONG = 10, (3, 7, 8), (5,)
STAMPS_NS = 1_700_000_000_000_000_000 + np.arange(FRAMES, dtype=np.int64) * 100_000_000


def _results():
    """Frame i at x = 0.1 i m; LOST frames 3, 7, 8; frame 5 a metre off; the rest 1-4 cm off."""
    from pram_ros.localization import Reason, Result, State

    truth = np.array([pose_on_a_line(0.1 * i) for i in range(FRAMES)])
    results = []
    for i in range(FRAMES):
        if i in LOST:
            results.append(Result(int(STAMPS_NS[i]), State.LOST, timings_ms={"total_ms": 30.0},
                                  reason=Reason.NOT_RECOGNIZED, message="no landmark recognized"))
            continue
        estimate = pose_on_a_line(0.1 * i + (1.0 if i in WRONG else 0.01 + 0.003 * i), yaw_deg=0.2 + 0.1 * i)
        results.append(Result(int(STAMPS_NS[i]), State.TRACKED, np.linalg.inv(estimate), num_inliers=100 + i,
                              timings_ms={"total_ms": 50.0}))
    return truth, results


@pytest.fixture()
def sequence(tmp_path) -> tuple[Path, np.ndarray]:
    """A demo-world-like sequence folder: images/ (empty) and poses.tum; -> (folder, truth)."""
    folder = tmp_path / "query_offpath"
    (folder / "images").mkdir(parents=True)
    truth, _ = _results()
    save_tum(folder / "poses.tum", STAMPS_NS, truth)
    return folder, truth


# -- colours ---------------------------------------------------------------------------------

def test_landmark_colors_are_the_rviz_colors():
    from pram_ros.ros import convert

    ids = np.arange(-1, 60)
    assert np.array_equal(landmark_rgb8(ids), convert.landmark_rgb8(ids))
    assert len({tuple(c) for c in landmark_rgb8(np.arange(1, 30))}) == 29  # distinct per landmark


# -- a map -------------------------------------------------------------------------------------

def test_map_recording_holds_points_landmarks_and_cameras(localization_map, tmp_path):
    out = tmp_path / "map.rrd"
    result = _pram_view("--map", localization_map, "--save", out)
    assert result.returncode == 0, result.stderr[-2000:]
    pram_map = load_map(localization_map)
    assert result.stdout.strip() == (f"wrote {out} (map {pram_map.num_points} points, {pram_map.num_landmarks} "
                                     f"landmarks, {pram_map.num_images} cameras)")
    entities = _read_rrd(out)

    points = entities["/world/map/points"]
    assert len(points["Points3D:positions"]) == 1  # one static row
    xyz = np.array(points["Points3D:positions"][0], np.float32)
    assert xyz.shape == (pram_map.num_points, 3) and np.array_equal(xyz, pram_map.point_xyz)
    colors = _rgb8(points["Points3D:colors"][0])
    assert np.array_equal(colors, landmark_rgb8(pram_map.point_landmark))
    # A few points by hand: the colour of their landmark's RViz marker.
    for i in np.linspace(0, pram_map.num_points - 1, 5).astype(int):
        k = int(pram_map.point_landmark[i])
        assert tuple(colors[i]) == tuple(landmark_rgb8(np.array([k]))[0]), (i, k)
    assert len(np.unique(colors, axis=0)) == len(np.unique(pram_map.point_landmark))

    boxes = entities["/world/map/landmarks"]
    assert boxes["Boxes3D:labels"][0] == [str(k) for k in range(1, pram_map.num_landmarks + 1)]
    assert np.allclose(boxes["Boxes3D:centers"][0], pram_map.landmark_centroid)
    assert np.allclose(boxes["Boxes3D:half_sizes"][0], pram_map.landmark_extent)

    cameras = sorted(path for path, components in entities.items() if "Pinhole:image_from_camera" in components)
    assert cameras == [f"/world/map/cameras/{i:05d}" for i in range(pram_map.num_images)]
    camera = entities[cameras[-1]]
    world_from_cam = np.linalg.inv(pram_map.cam_from_world(pram_map.num_images - 1))
    assert np.allclose(camera["Transform3D:translation"][0], world_from_cam[:3, 3], atol=1e-5)
    K = np.array(camera["Pinhole:image_from_camera"][0]).reshape(3, 3).T  # stored column-major
    assert np.allclose(K, pram_map.K(int(pram_map.image_camera[-1])))
    # The map was built from the world's images, still there: every camera shows its image.
    images = [path for path, components in entities.items() if "EncodedImage:blob" in components]
    assert len(images) == pram_map.num_images


def test_map_recording_without_images(localization_map, tmp_path):
    out = tmp_path / "map.rrd"
    assert _pram_view("--map", localization_map, "--no-images", "--save", out).returncode == 0
    entities = _read_rrd(out)
    assert not [path for path, components in entities.items() if "EncodedImage:blob" in components]
    assert "/world/map/points" in entities


# -- a report ----------------------------------------------------------------------------------

def test_report_recording_marks_lost_frames_and_errors(sequence, tmp_path):
    from pram_ros.evaluation.report import SequenceRun, write_report

    folder, truth = sequence
    _, results = _results()
    report = tmp_path / "report"
    write_report(report, SequenceRun(STAMPS_NS, truth, results), {"method": "pram", "images": str(folder / "images")})
    out = tmp_path / "report.rrd"
    result = _pram_view("--report", report, "--save", out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "10 frames: 7 localized, 3 LOST, 1 wrong" in result.stdout, result.stdout
    entities = _read_rrd(out)

    lost = entities["/world/report/lost"]
    assert lost["Points3D:labels"][0] == [f"LOST {i}" for i in LOST]
    assert np.allclose(lost["Points3D:positions"][0], truth[list(LOST), :3, 3])  # where the camera really was
    assert len(entities["/world/report/estimate"]["Points3D:positions"][0]) == FRAMES - len(LOST)
    assert entities["/world/report/wrong"]["Points3D:labels"][0] == ["wrong 5"]
    assert np.allclose(entities["/world/report/ground_truth"]["LineStrips3D:strips"][0][0], truth[:, :3, 3])

    # Errors per localized frame, derived from trajectory.tum and the ground truth.
    localized = [i for i in range(FRAMES) if i not in LOST]
    expected = np.array([pose_errors(np.linalg.inv(results[i].cam_from_world), truth[i]) for i in localized])
    assert np.allclose(entities["/errors/translation_m"]["Scalars:scalars"], expected[:, :1], atol=1e-6)
    assert np.allclose(entities["/errors/rotation_deg"]["Scalars:scalars"], expected[:, 1:], atol=1e-4)
    assert max(_mono(entities["/errors/translation_m"]["Scalars:scalars"])) > 0.9  # the wrong frame
    localized_flags = _mono(entities["/state/localized"]["Scalars:scalars"])
    assert localized_flags == [float(i not in LOST) for i in range(FRAMES)]
    # frames.csv keeps why each frame was LOST.
    logs = _mono(entities["/log"]["TextLog:text"])
    assert logs == [f"frame {i}: LOST (NOT_RECOGNIZED: no landmark recognized)" for i in LOST], logs


def test_report_without_ground_truth_shows_the_estimates_only(sequence, tmp_path):
    from pram_ros.evaluation.report import SequenceRun, write_report

    folder, truth = sequence
    _, results = _results()
    report = tmp_path / "report"
    write_report(report, SequenceRun(STAMPS_NS, truth, results), {"method": "pram", "images": str(folder / "images")})
    (folder / "poses.tum").unlink()
    out = tmp_path / "report.rrd"
    result = _pram_view("--report", report, "--save", out)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "7 localized, LOST frames unknown, 0 wrong, no ground truth" in result.stdout, result.stdout
    assert "--gt" in result.stderr  # the warning says how to get them
    entities = _read_rrd(out)
    assert "/world/report/lost" not in entities and "/errors/translation_m" not in entities
    assert len(entities["/world/report/estimate"]["Points3D:positions"][0]) == 7

    # --gt gives them back.
    save_tum(tmp_path / "gt.tum", STAMPS_NS, truth)
    assert _pram_view("--report", report, "--gt", tmp_path / "gt.tum", "--save", out).returncode == 0
    assert _read_rrd(out)["/world/report/lost"]["Points3D:labels"][0] == [f"LOST {i}" for i in LOST]


def test_localize_output_recording_lists_lost_reasons(sequence, tmp_path):
    from pram_ros.evaluation.localize import write_localization

    folder, truth = sequence
    _, results = _results()
    out_dir = tmp_path / "localized"
    write_localization(out_dir, [f"{i:06d}.png" for i in range(FRAMES)], STAMPS_NS, results,
                       {"images": str(folder / "images")})
    out = tmp_path / "localize.rrd"
    result = _pram_view("--report", out_dir, "--save", out)
    assert result.returncode == 0, result.stderr[-2000:]
    entities = _read_rrd(out)
    assert _mono(entities["/log"]["TextLog:text"]) == [f"frame {i}: LOST (NOT_RECOGNIZED: no landmark recognized)"
                                                for i in LOST]
    assert _mono(entities["/state/inliers"]["Scalars:scalars"]) == [float(r.num_inliers) for r in results]
    assert "/world/report/lost" not in entities  # no ground truth: nowhere to put them

    assert _pram_view("--report", out_dir, "--gt", folder / "poses.tum", "--save", out).returncode == 0
    lost = _read_rrd(out)["/world/report/lost"]
    assert np.allclose(lost["Points3D:positions"][0], truth[list(LOST), :3, 3])

    # `pram localize --images` stamps by --rate-hz: a ground truth of the same frames with
    # other stamps is matched in order.
    shifted = tmp_path / "shifted.tum"
    save_tum(shifted, STAMPS_NS + 12_345_678_900, truth)
    assert _pram_view("--report", out_dir, "--gt", shifted, "--save", out).returncode == 0
    lost = _read_rrd(out)["/world/report/lost"]
    assert np.allclose(lost["Points3D:positions"][0], truth[list(LOST), :3, 3])


# -- bad input -------------------------------------------------------------------------------

def test_bad_input_is_one_line(tmp_path):
    missing = tmp_path / "missing.npz"
    result = _pram_view("--map", missing, "--save", tmp_path / "x.rrd")
    assert result.returncode == 2 and str(missing) in result.stderr and len(result.stderr.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    result = _pram_view("--report", tmp_path / "empty", "--save", tmp_path / "x.rrd")
    assert result.returncode == 2 and "metrics.json" in result.stderr and str(tmp_path / "empty") in result.stderr
    assert not (tmp_path / "x.rrd").exists()  # inputs are checked before the file opens
    result = _pram_view("--map", missing)
    assert result.returncode == 2 and result.stdout.strip().splitlines() == [
        "pram view: give --save FILE.rrd (open it with `rerun FILE.rrd`) or --web (a viewer in the browser)"]
    result = _pram_view("--save", tmp_path / "x.rrd")
    assert result.returncode == 2 and "--map MAP, --report DIR or --live" in result.stderr


# -- the web viewer --------------------------------------------------------------------------

def _start_web(processes, *args) -> tuple[object, str]:
    """`pram view ... --web` on free ports; -> (process, the URL it printed)."""
    process = processes.start([venv_executable("pram"), "view", *map(str, args), "--web", "--port",
                               str(_free_port()), "--grpc-port", str(_free_port())])
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any("http://" in line for line in lines) and process.poll() is None:
        time.sleep(0.2)
    found = [re.search(r"http://\S+", line) for line in lines]
    urls = [match.group(0) for match in found if match]
    assert urls, f"no URL printed: {lines} {process.stderr.read() if process.poll() is not None else ''}"
    return process, urls[0]


def test_web_viewer_serves_the_page_until_interrupted(localization_map, processes):
    process, url = _start_web(processes, "--map", localization_map)
    page = urllib.request.urlopen(url, timeout=10).read().decode()
    assert "rerun" in page.lower() and "<html" in page.lower()
    code, _, err = stop_process(process)
    assert code == 0, err[-2000:]


def _browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


class _DevTools:
    """Just enough of the Chrome DevTools protocol over a WebSocket (the standard library has
    no client) to take screenshots while the viewer keeps its data stream open: a headless
    `--screenshot` fires at the page's load event, before the wasm viewer has drawn, and
    `--virtual-time-budget` stalls on the open stream."""

    def __init__(self, ws_url: str) -> None:
        import base64

        host_port, _, path = ws_url.removeprefix("ws://").partition("/")
        host, port = host_port.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        response = b""
        while b"\r\n\r\n" not in response:
            response += self.sock.recv(1)
        assert b" 101 " in response.split(b"\r\n")[0], response
        self.next_id = 0

    def _read(self, count: int) -> bytes:
        data = b""
        while len(data) < count:
            part = self.sock.recv(count - len(data))
            assert part, "DevTools closed the connection"
            data += part
        return data

    def _send(self, text: str) -> None:
        payload, mask = text.encode(), os.urandom(4)
        size = len(payload)
        header = bytes([0x81]) + (bytes([0x80 | size]) if size < 126 else
                                  bytes([0x80 | 126]) + size.to_bytes(2, "big") if size < 65536 else
                                  bytes([0x80 | 127]) + size.to_bytes(8, "big"))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _receive(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            size = second & 0x7F
            if size >= 126:
                size = int.from_bytes(self._read(2 if size == 126 else 8), "big")
            payload = self._read(size)  # a server never masks
            if first & 0x0F in (0x1, 0x0):
                message += payload
                if first & 0x80:
                    return message.decode()

    def call(self, method: str, **params) -> dict:
        import json

        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._receive())
            if reply.get("id") == self.next_id:
                assert "error" not in reply, reply
                return reply["result"]


def _landmark_pixels(png: bytes, palette: np.ndarray) -> int:
    import cv2

    bgr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).reshape(-1, 3).astype(np.int16)
    return int((np.abs(rgb[:, None, :] - palette[None, :, :]).max(axis=2) <= 40).any(axis=1).sum())


@pytest.mark.skipif(_browser() is None, reason="no Chromium (chromium, chromium-browser or google-chrome) installed")
def test_web_viewer_screenshot_shows_the_map(localization_map, processes, tmp_path):
    import base64
    import json

    _, url = _start_web(processes, "--map", localization_map, "--no-images")
    port = _free_port()
    processes.start([_browser(), "--headless=new", "--no-sandbox", "--use-angle=swiftshader",
                     "--enable-unsafe-swiftshader", "--window-size=1280,800", f"--remote-debugging-port={port}",
                     "--remote-allow-origins=*", f"--user-data-dir={tmp_path / 'profile'}", "--no-first-run", url])
    pages: list = []
    deadline = time.monotonic() + 60
    while not pages and time.monotonic() < deadline:
        time.sleep(0.5)
        try:
            targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5).read())
        except OSError:
            continue
        pages = [t for t in targets if t.get("type") == "page" and t.get("webSocketDebuggerUrl")]
    assert pages, "the browser opened no page"
    devtools = _DevTools(pages[0]["webSocketDebuggerUrl"])
    pram_map = load_map(localization_map)
    palette = landmark_rgb8(np.arange(1, pram_map.num_landmarks + 1)).astype(np.int16)
    # Software WebGL is slow: look again until the points are drawn, or give up.
    found, deadline = 0, time.monotonic() + 120
    while found < 100 and time.monotonic() < deadline:
        time.sleep(3)
        png = base64.b64decode(devtools.call("Page.captureScreenshot", format="png")["data"])
        found = _landmark_pixels(png, palette)
    (tmp_path / "viewer.png").write_bytes(png)
    assert found >= 100, f"only {found} pixels in landmark colours in {tmp_path / 'viewer.png'}: the map is not drawn"


# -- a live node (fake topics over DDS) ------------------------------------------------------

def test_live_view_logs_a_nodes_topics(ros_node, processes, tmp_path):
    from geometry_msgs.msg import PoseWithCovarianceStamped
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image, PointCloud2
    from std_msgs.msg import Header

    from pram_ros.msg import LocalizationStatus
    from pram_ros.ros import convert
    from pram_ros.ros.tf import pose_msg_from_matrix

    node, executor = ros_node
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL, reliability=ReliabilityPolicy.RELIABLE)
    points_pub = node.create_publisher(PointCloud2, "/fake_pram/map_points", latched)
    pose_pub = node.create_publisher(PoseWithCovarianceStamped, "/fake_pram/pose", 10)
    status_pub = node.create_publisher(LocalizationStatus, "/fake_pram/status", 10)
    image_pub = node.create_publisher(Image, "/fake_pram/debug_image", qos_profile_sensor_data)
    rng = np.random.default_rng(0)
    xyz = rng.uniform(-2, 2, (300, 3)).astype(np.float32)
    landmarks = rng.integers(1, 9, 300)
    points_pub.publish(convert.point_cloud_msg(Header(frame_id="map"), xyz, convert.landmark_rgb8(landmarks)))

    out = tmp_path / "live.rrd"
    process = processes.start([venv_executable("pram"), "view", "--live", "--node", "fake_pram", "--duration", "8",
                               "--save", str(out)], env={**os.environ})
    published = {"count": 0}

    def publish() -> None:
        i = published["count"]
        header = Header(frame_id="map")
        header.stamp.sec, header.stamp.nanosec = 1_700_000_000 + i // 10, (i % 10) * 100_000_000
        status = LocalizationStatus(header=header, state=LocalizationStatus.LOST if i % 20 < 5 else
                                    LocalizationStatus.TRACKING, num_inliers=50 + i, total_ms=40.0)
        status.reason = "no landmark recognized" if status.state == LocalizationStatus.LOST else ""
        status_pub.publish(status)
        if status.state == LocalizationStatus.TRACKING:
            pose = PoseWithCovarianceStamped(header=header)
            pose.pose.pose = pose_msg_from_matrix(pose_on_a_line(0.05 * i))
            pose_pub.publish(pose)
        image_pub.publish(convert.rgb8_msg(header, np.full((48, 64, 3), (i * 7) % 255, np.uint8)))
        published["count"] += 1

    timer = node.create_timer(0.1, publish)
    spin_until(node, executor, lambda: process.poll() is not None, timeout_s=60)
    node.destroy_timer(timer)
    code, stdout, stderr = stop_process(process)
    assert code == 0, stderr[-2000:]
    entities = _read_rrd(out)

    points = entities["/world/live/map_points"]
    assert np.array_equal(np.array(points["Points3D:positions"][0], np.float32), xyz)
    assert np.array_equal(_rgb8(points["Points3D:colors"][0]), landmark_rgb8(landmarks))
    statuses = len(entities["/live/state"]["Scalars:scalars"])
    poses = len(entities["/world/live/camera"]["Transform3D:translation"])
    assert statuses >= 10 and 0 < poses < statuses, (statuses, poses)  # no pose while LOST
    logs = _mono(entities["/log"]["TextLog:text"])
    assert "LOST: no landmark recognized" in logs and "TRACKING" in logs, logs
    assert len(entities["/live/debug_image"]["EncodedImage:blob"]) >= 5
    assert f"{poses} poses, {statuses} statuses" in stdout, stdout
