"""The localizer on a small rendered world: real map, real recognizer, real pycolmap PnP."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from pram_ros.evaluation.metrics import pose_errors
from pram_ros.geometry import project_points
from pram_ros.io.imageset import images_from_folder
from pram_ros.localization import LOST_VARIANCE, Localizer, LocalizerConfig, State
from pram_ros.localization.baselines import ExhaustiveLocalizer
from pram_ros.localization.continuity import Anchor, View, views_overlap
from pram_ros.localization.loading import LocalizerParts, create_localizer
from pram_ros.mapping.mapfile import load_map, save_map
from pram_ros.recognition.dataset import label_space
from pram_ros.recognition.model import Recognizer
from pram_ros.recognition.modelfile import default_model_path, load_model, save_model

from conftest import REPO, SMOOTH_FRAMES


@pytest.fixture(scope="module")
def world(localization_world):
    return localization_world


@pytest.fixture(scope="module")
def localizer_parts(localization_map):
    pram_map = load_map(localization_map)
    model = load_model(default_model_path(localization_map), [(str(localization_map), pram_map)])
    return pram_map, model.recognizer


def _frames(world, sequence):
    images = images_from_folder(world / sequence / "images", None, world / sequence / "poses.tum")
    return [(rgb, images.world_from_cam[index]) for index, rgb in images.frames()]


def _errors(result, world_from_cam_true):
    return pose_errors(result.world_from_cam, world_from_cam_true)


def _assert_close(result, world_from_cam_true, context=""):
    assert result.localized, f"{context}: {result.state.name} ({result.message})"
    dt, dr = _errors(result, world_from_cam_true)
    assert dt < 0.05 and dr < 5.0, f"{context}: error {dt * 100:.1f} cm, {dr:.2f} deg"


def _assert_never_wrong(result, world_from_cam_true, context=""):
    if result.localized:
        dt, dr = _errors(result, world_from_cam_true)
        assert dt < 0.5 and dr < 5.0, f"{context}: a wrong pose was reported ({dt:.2f} m, {dr:.1f} deg)"


@pytest.mark.parametrize("matching", [dict(), dict(landmark_matching="per_landmark", refine_pose=False)],
                         ids=["pooled-refined", "per-landmark-unrefined"])
def test_relocalizes_every_frame_the_map_covers(world, localizer_parts, matching):
    pram_map, recognizer = localizer_parts
    localizer = Localizer(pram_map, recognizer, LocalizerConfig(tracking=False, **matching))
    # The path turns on the spot in places, where nothing is triangulated well enough to
    # keep: those frames have no map to register against (and must come out LOST).
    observed = np.bincount(pram_map.point_obs_images, minlength=pram_map.num_images)
    covered = [index for index in range(0, pram_map.num_images, 2) if observed[index] >= 150]
    assert len(covered) >= 8
    frames = _frames(world, "mapping")
    for index in covered:
        rgb, truth = frames[index]
        result = localizer.process(rgb, index)
        _assert_close(result, truth, f"mapping frame {index}")
        assert result.state == State.RELOCALIZED
        assert result.num_inliers >= 30 and result.covariance.shape == (6, 6)
        assert np.all(np.diag(result.covariance) < 1e-2)
        assert {"features_ms", "recognition_ms", "registration_ms", "total_ms"} <= set(result.timings_ms)


def test_exhaustive_baseline_skips_recognition(world, localizer_parts):
    pram_map, recognizer = localizer_parts
    localizer = ExhaustiveLocalizer(pram_map, LocalizerConfig(tracking=False))
    observed = np.bincount(pram_map.point_obs_images, minlength=pram_map.num_images)
    frames = _frames(world, "mapping")
    for index in [i for i in range(pram_map.num_images) if observed[i] >= 300][:4]:
        result = localizer.process(frames[index][0], index)
        _assert_close(result, frames[index][1], f"mapping frame {index}")
        assert "recognition_ms" not in result.timings_ms
    with pytest.raises(ValueError, match="method"):
        create_localizer("retrieval-ish", LocalizerParts(None, pram_map, None, localizer.extractor))
    with pytest.raises(ValueError, match="landmark_matching"):
        LocalizerConfig(landmark_matching="landmark-wise")


@pytest.mark.xfail(strict=True, reason="known defect (issue 5): the demo world tiles the same textures on "
                   "several walls, and a view of a wall the map barely covers registers, with many consistent "
                   "inliers, to a look-alike wall elsewhere; the gate cannot tell these poses apart yet")
def test_off_path_queries_are_right_or_lost(world, localizer_parts):
    pram_map, recognizer = localizer_parts
    localizer = Localizer(pram_map, recognizer, LocalizerConfig(tracking=False))
    good = 0
    for index, (rgb, truth) in enumerate(_frames(world, "query_offpath")):
        result = localizer.process(rgb, index)
        _assert_never_wrong(result, truth, f"query frame {index}")
        good += result.localized and max(_errors(result, truth)[0] / 0.05, _errors(result, truth)[1] / 5.0) < 1.0
    print(f"{good} of 12 off-path frames within 5 cm / 5 deg")


def test_tracking_skips_recognition_and_recovers_from_a_kidnap(world, localizer_parts):
    pram_map, recognizer = localizer_parts
    localizer = Localizer(pram_map, recognizer, LocalizerConfig(reverify_every=0))
    frames = _frames(world, "mapping")
    # Frames the map covers, then a jump of 17 frames: the camera is carried off.
    sequence = list(range(3, 12)) + list(range(28, 36))
    states = []
    for step, frame in enumerate(sequence):
        rgb, truth = frames[frame]
        result = localizer.process(rgb, step)
        _assert_never_wrong(result, truth, f"frame {frame}")
        states.append(result.state)
        if result.state == State.TRACKED:
            assert "recognition_ms" not in result.timings_ms and "tracking_ms" in result.timings_ms
            _assert_close(result, truth, f"tracked frame {frame}")
    assert states[0] == State.RELOCALIZED
    assert states[1:9].count(State.TRACKED) >= 6, [s.name for s in states]
    # The whole view changed from the frame just before: a kidnap, relocalized on its first frame.
    assert states[9] == State.RELOCALIZED, f"the kidnap's first frame: {[s.name for s in states[9:]]}"


def test_a_jump_is_reported_only_once_the_next_frames_agree(world, localizer_parts):
    """Look-alike places make a relocalization jump as a kidnap does. Where frames were
    dropped before it (the stamps skip two camera periods), a change of view proves nothing,
    and the jump waits for jump_confirm_frames more frames; with the check off it is
    reported at once. Without drops, the changed view makes it a kidnap, accepted at once."""
    pram_map, recognizer = localizer_parts
    frames = _frames(world, "mapping")
    sequence = list(range(3, 12)) + list(range(28, 36))
    period_ns = 100_000_000
    adjacent = Localizer(pram_map, recognizer, LocalizerConfig(reverify_every=0, jump_confirm_frames=2))
    results = [adjacent.process(frames[frame][0], step * period_ns) for step, frame in enumerate(sequence)]
    _assert_close(results[9], frames[sequence[9]][1], "the kidnap's first frame, none dropped")
    # A node that dropped frames says so (its stamps may not show it): held as well.
    counted = Localizer(pram_map, recognizer, LocalizerConfig(reverify_every=0, jump_confirm_frames=2))
    results = [counted.process(frames[frame][0], step * period_ns, 2 if step == 9 else 0)
               for step, frame in enumerate(sequence)]
    assert results[9].state == State.LOST and "held until" in results[9].message, results[9].message
    dropped = [step * period_ns + (2 * period_ns if step >= 9 else 0) for step in range(len(sequence))]
    for confirm in (0, 2):
        localizer = Localizer(pram_map, recognizer, LocalizerConfig(reverify_every=0, jump_confirm_frames=confirm))
        results = [localizer.process(frames[frame][0], stamp) for stamp, frame in zip(dropped, sequence)]
        assert results[8].localized, f"the frame before the kidnap: {results[8].message}"
        after = results[9:9 + confirm + 1]
        for held in after[:-1]:
            assert held.state == State.LOST and "held until" in held.message, (held.state.name, held.message)
            assert held.cam_from_world is None and held.covariance[0, 0] == LOST_VARIANCE
        _assert_close(after[-1], frames[sequence[9 + confirm]][1], f"frame {confirm + 1} after the kidnap")
    # reset() starts a new sequence: no continuity check against the old one's last pose.
    far = pose_errors(frames[sequence[-1]][1], frames[sequence[0]][1])
    assert far[0] >= 0.5 or far[1] >= 30.0, far
    localizer.reset()
    _assert_close(localizer.process(frames[sequence[0]][0], 99), frames[sequence[0]][1], "first frame after reset()")


def test_a_jump_while_the_view_stays_continuous_is_held_as_a_look_alike(world, localizer_parts):
    """A kidnap changes the whole image between two frames; a look-alike place does not. While
    the frames stay continuous, a pose far from the last accepted one is held however many
    frames agree; a real kidnap is relocalized on its first frame (within 3 without the image
    continuity check)."""
    pram_map, recognizer = localizer_parts
    frames = _frames(world, "mapping")
    extractor = Localizer(pram_map, recognizer).extractor
    features = {index: extractor.extract(frames[index][0]) for index in (8, 9, 11, 28)}
    assert views_overlap(features[8], features[9], 100, 1024)
    assert not views_overlap(features[11], features[28], 100, 1024)
    foreign = extractor.extract(_frames(world, "foreign")[0][0])
    assert not views_overlap(features[11], foreign, 100, 1024)

    sequence = list(range(3, 12)) + list(range(28, 36))
    # Image continuity alone, geometry alone, neither.
    for min_inliers, min_shared in ((100, 0), (0, 12), (0, 0)):
        # Full frames only: an optical-flow frame follows the track, never the moved anchor.
        config = LocalizerConfig(reverify_every=0, continuity_min_inliers=min_inliers,
                                 jump_min_shared_points=min_shared, klt_frames=0)
        localizer = Localizer(pram_map, recognizer, config)
        results = [localizer.process(frames[frame][0], step) for step, frame in enumerate(sequence[:6])]
        assert results[-1].localized, results[-1].message
        # Stand-in for a look-alike: the last accepted pose (and its view's) is 3 m from where
        # the camera was.
        elsewhere = np.eye(4)
        elsewhere[:3, 3] = [3.0, 0.0, 0.0]
        anchor = localizer.continuity.anchor
        moved = results[-1].cam_from_world @ elsewhere
        localizer.continuity.anchor = Anchor(moved, localizer.frame, results[-1].stamp_ns,
                                             View(anchor.view.features, moved))
        results += [localizer.process(frames[frame][0], step) for step, frame in enumerate(sequence[6:], 6)]
        states = [r.state.name for r in results]
        if min_inliers:
            assert all("look-alike" in r.message for r in results[6:9]), [r.message for r in results[6:9]]
        elif min_shared:
            assert "do not project onto the last accepted view" in results[6].message, results[6].message
        else:  # without the checks the pose is a plain jump, confirmed on its third frame
            assert "held until" in results[6].message, results[6].message
            _assert_close(results[8], frames[sequence[8]][1], "third frame after the jump")
        # The kidnap after frame 11 breaks the view: relocalized within 3 frames either way,
        # on its first where the image continuity check sees the view change.
        recovered = [step for step in range(9, 12) if results[step].localized]
        assert recovered and (recovered[0] == 9 or not min_inliers), states
        _assert_close(results[recovered[0]], frames[sequence[recovered[0]]][1], "after the kidnap")


def test_jumps_between_overlapping_views_are_accepted_at_once(world, localizer_parts):
    """Photos taken apart: every step is a jump (the jump thresholds are scaled down to this
    small room: 24 cm and 28 degrees between photos), but consecutive views overlap and the
    map's points, projected with the last pose, land on the last view's keypoints: each jump
    is accepted on its own frame, as relocalizing every frame does. Without the geometric
    test they are held as look-alikes."""
    pram_map, recognizer = localizer_parts
    frames = _frames(world, "mapping")[2:14:3]
    small = dict(reverify_every=0, jump_distance_m=0.05, jump_angle_deg=5.0, continuity_step_m=0.0,
                 continuity_step_deg=0.0, continuity_speed_mps=0.0, continuity_turn_dps=0.0)
    reloc = Localizer(pram_map, recognizer, LocalizerConfig(tracking=False))
    for step, (rgb, truth) in enumerate(frames):
        _assert_close(reloc.process(rgb, step), truth, f"pram-reloc, photo {step}")
    for min_shared in (12, 0):
        localizer = Localizer(pram_map, recognizer, LocalizerConfig(jump_min_shared_points=min_shared, **small))
        results = [localizer.process(rgb, step * 100_000_000) for step, (rgb, _) in enumerate(frames)]
        for step, (result, (_, truth)) in enumerate(zip(results, frames)):
            if min_shared:
                _assert_close(result, truth, f"pram, photo {step}")
            else:
                assert step == 0 or "look-alike" in result.message, (step, result.state.name, result.message)


def _rescaled_and_cropped(rgb, K, scale, left, top, width, height):
    """A view of another camera: the crop [top:top+height, left:left+width], resized by scale."""
    crop = rgb[top:top + height, left:left + width]
    size = (round(width * scale), round(height * scale))
    image = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    sx, sy = size[0] / width, size[1] / height
    K_new = np.array([[K[0, 0] * sx, 0, (K[0, 2] - left + 0.5) * sx - 0.5],
                      [0, K[1, 1] * sy, (K[1, 2] - top + 0.5) * sy - 0.5], [0, 0, 1.0]])
    return image, K_new


@pytest.mark.parametrize("method", ["pram", "exhaustive"])
def test_a_query_camera_with_other_intrinsics_and_size_localizes(world, localizer_parts, method):
    """Another robot's camera: the map's frames cropped and rescaled (smaller, then larger
    than the map's), with the intrinsics that go with them. Given its camera, each
    localizes within 5 cm/5 deg; an image of an unannounced size is LOST with the reason."""
    pram_map, recognizer = localizer_parts
    K = pram_map.K(0)
    frames = _frames(world, "mapping")
    for scale, crop in ((0.6, (40, 30, 560, 420)), (1.6, (80, 60, 480, 360))):
        config = LocalizerConfig(reverify_every=0)
        localizer = Localizer(pram_map, recognizer, config) if method == "pram" else \
            ExhaustiveLocalizer(pram_map, config)
        # Frames 10-12 cropped lose what tells them from a look-alike wall 1.08 m away (every
        # method is fooled there): these keep it.
        for index in (4, 5, 6, 7):
            rgb, truth = frames[index]
            image, K_new = _rescaled_and_cropped(rgb, K, scale, *crop)
            if index == 4:
                unannounced = localizer.process(image, 0)
                assert not unannounced.localized and "its camera 640x480" in unannounced.message, unannounced.message
            localizer.set_camera(K_new, image.shape[1], image.shape[0])
            _assert_close(localizer.process(image, index), truth, f"{method}, x{scale} {image.shape[1]}x{image.shape[0]}")


def _distort(rgb, K, distortion):
    """The image a camera with this distortion would have taken of the pinhole view `rgb`."""
    height, width = rgb.shape[:2]
    u, v = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    pixels = np.stack([u.ravel(), v.ravel()], axis=1).reshape(-1, 1, 2)
    pinhole = cv2.undistortPoints(pixels, K, distortion, P=K).reshape(height, width, 2)
    return cv2.remap(rgb, pinhole[..., 0], pinhole[..., 1], cv2.INTER_LINEAR)


def test_distorted_images_are_undistorted_from_a_folder_and_a_bag(world, localizer_parts, tmp_path):
    """A plumb_bob camera: camera.yaml (folder) or CameraInfo (bag) carries the coefficients,
    and frames are undistorted as they are read, so they localize as pinhole frames do. A
    model OpenCV cannot undistort is refused with the file named."""
    from pram_ros.io.camera import save_camera_yaml
    from pram_ros.io.imageset import images_from_bag
    from pram_ros.io.rosbag import write_sequence_bag
    from pram_ros.io.tum import load_tum, save_tum

    pram_map, recognizer = localizer_parts
    K = pram_map.K(0)
    distortion = np.array([-0.28, 0.09, 0.001, -0.001, 0.0])
    stamps_ns, world_from_cam = load_tum(world / "mapping" / "poses.tum")
    chosen = [4, 5, 6]
    sequence = tmp_path / "distorted"
    (sequence / "images").mkdir(parents=True)
    frames = _frames(world, "mapping")
    originals = []
    for index in chosen:
        rgb = frames[index][0]
        originals.append(rgb)
        cv2.imwrite(str(sequence / "images" / f"{index:04d}.png"), cv2.cvtColor(_distort(rgb, K, distortion),
                                                                               cv2.COLOR_RGB2BGR))
    save_camera_yaml(sequence / "camera.yaml", K, 640, 480, distortion=distortion)
    save_tum(sequence / "poses.tum", stamps_ns[chosen], world_from_cam[chosen])
    write_sequence_bag(sequence, tmp_path / "bag")

    centre = (slice(100, 380), slice(120, 520))
    for images in (images_from_folder(sequence / "images", None, sequence / "poses.tum"),
                   images_from_bag(tmp_path / "bag", "/camera/image_raw")):
        localizer = Localizer(pram_map, recognizer, LocalizerConfig(reverify_every=0))
        for (position, rgb), original in zip(images.frames(), originals):
            distorted = _distort(original, K, distortion)
            error = np.abs(rgb[centre].astype(float) - original[centre]).mean()
            assert error < 0.5 * np.abs(distorted[centre].astype(float) - original[centre]).mean(), error
            _assert_close(localizer.process(rgb, position), world_from_cam[chosen[position]],
                          f"{images.source}, frame {position}")

    (sequence / "camera.yaml").write_text((sequence / "camera.yaml").read_text().replace("plumb_bob", "equidistant"))
    with pytest.raises(ValueError, match=r"camera.yaml: distortion model 'equidistant' is not supported"):
        images_from_folder(sequence / "images", None, sequence / "poses.tum")


def test_registration_widens_when_the_recognized_landmarks_fail(world, localizer_parts):
    """Where the top landmarks fail the gate, every point of this small map is tried (more
    landmarks on a map too large for that); the result says which step found the pose, and
    no widened pose is wrong. (Frame 10, every localizer alike, registers its top landmarks
    to a look-alike wall 1.8 m away: the single-frame limit that
    test_off_path_queries_are_right_or_lost keeps as an expected failure.)"""
    pram_map, recognizer = localizer_parts
    narrow = Localizer(pram_map, recognizer, LocalizerConfig(tracking=False, widen_landmarks=0, widen_max_points=0))
    wide = {"all points": Localizer(pram_map, recognizer, LocalizerConfig(tracking=False)),
            "more landmarks": Localizer(pram_map, recognizer, LocalizerConfig(tracking=False, widen_max_points=0))}
    rescued = {search: [] for search in wide}
    for index, (rgb, truth) in enumerate(_frames(world, "mapping")[::2]):
        before = narrow.process(rgb, index)
        for search, localizer in wide.items():
            after = localizer.process(rgb, index)
            if before.localized:
                assert after.search.startswith("top ") and np.allclose(after.cam_from_world, before.cam_from_world)
            elif after.localized:
                expected = r"all \d+ points" if search == "all points" else r"\d+ landmarks"
                assert re.fullmatch(expected, after.search), (search, after.search)
                _assert_close(after, truth, f"widened to {search}, frame {index}")
                rescued[search].append(index)
    assert all(rescued.values()), f"no frame needed widening: the test shows nothing ({rescued})"


def test_foreign_images_are_lost(world, localizer_parts):
    pram_map, recognizer = localizer_parts
    localizer = Localizer(pram_map, recognizer)
    for index, (rgb, _) in enumerate(_frames(world, "foreign")):
        result = localizer.process(rgb, index)
        assert result.state == State.LOST, f"foreign frame {index}: {result.state.name}, {result.num_inliers} inliers"
        assert result.cam_from_world is None and result.covariance[0, 0] == LOST_VARIANCE


def _pram_eval(map_path, source_flag, source, out):
    result = subprocess.run([sys.executable, "-m", "pram_ros.cli", "eval", "--map", str(map_path), source_flag,
                             str(source), "--method", "pram-reloc", "--out", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_cli_eval_writes_the_report(world, localizer_parts, tmp_path):
    pram_map, recognizer = localizer_parts
    map_path = tmp_path / "map.npz"
    save_map(pram_map, map_path)
    save_model(default_model_path(map_path), recognizer.net, label_space([pram_map], ["map"]),
               pram_map.meta["extractor"])
    report = tmp_path / "report"
    _pram_eval(map_path, "--images", world / "query_offpath" / "images", report)
    metrics = json.loads((report / "metrics.json").read_text())
    for key in ("frames", "localized_ratio", "recall_5cm_5deg", "recall_25cm_2deg", "recall_50cm_5deg",
                "median_t_m", "median_r_deg", "wrong_ratio", "latency_ms"):
        assert key in metrics, key
    assert metrics["frames"] == 12 and metrics["method"] == "pram-reloc"
    assert {"features_ms", "recognition_ms", "registration_ms", "total_ms"} <= set(metrics["latency_ms"])
    localized = round(metrics["localized_ratio"] * 12)
    assert len((report / "trajectory.tum").read_text().splitlines()) == localized
    for plot in ("trajectory.png", "error_cdf.png", "latency.png"):
        assert (report / plot).stat().st_size > 1000, plot

    # The same frames from the sequence's rosbag2 (images and /ground_truth/pose) give the same report.
    from_bag = tmp_path / "from_bag"
    _pram_eval(map_path, "--bag", world / "query_offpath" / "bag", from_bag)
    bag_metrics = json.loads((from_bag / "metrics.json").read_text())
    for key in ("frames", "localized_ratio", "recall_5cm_5deg", "median_t_m", "wrong_ratio"):
        assert bag_metrics[key] == pytest.approx(metrics[key], abs=1e-6), key
    assert (from_bag / "trajectory.tum").read_text() == (report / "trajectory.tum").read_text()


def test_degenerate_inputs_are_lost_not_errors(world, localizer_parts):
    pram_map, recognizer = localizer_parts
    localizer = Localizer(pram_map, recognizer)
    width, height = (int(v) for v in pram_map.camera_size[0])
    cases = {
        "black": np.zeros((height, width, 3), np.uint8),
        "one pixel": np.zeros((1, 1, 3), np.uint8),
        "flat grey": np.full((height, width), 128, np.uint8),
        "wrong size": _frames(world, "mapping")[0][0][: height // 2, : width // 2],
        "five channels": np.zeros((height, width, 5), np.uint8),
        "float pixels": np.random.default_rng(0).random((height, width, 3)),
        "not an array": "image.png",
    }
    for name, image in cases.items():
        result = localizer.process(image, 7)
        assert result.state == State.LOST and result.message, name
        assert result.stamp_ns == 7

    # A recognizer that calls everything background: zero landmarks to register against.
    blind_net = copy.deepcopy(recognizer.net)
    with torch.no_grad():
        blind_net.head.bias[0] = 1e4
    blind = Localizer(pram_map, Recognizer(blind_net))
    result = blind.process(_frames(world, "mapping")[0][0], 0)
    assert result.state == State.LOST and "no landmark" in result.message


def test_config_refuses_values_outside_their_declared_range():
    with pytest.raises(ValueError, match=r"LocalizerConfig.min_inliers must be in \[6, 10000\], got 2"):
        LocalizerConfig(min_inliers=2)
    with pytest.raises(ValueError, match="LocalizerConfig.tracking must be true or false"):
        LocalizerConfig(tracking="yes")
    with pytest.raises(ValueError, match="match_ratio"):
        LocalizerConfig(match_ratio=0.0)


def test_cli_bench_features_compares_the_runtimes(world, localization_map, tmp_path):
    """`pram bench --stage features`: the map's extractor on torch, onnxruntime and openvino,
    over the same images, with their agreement (counts and agreement, not times)."""
    out = tmp_path / "features.json"
    result = subprocess.run([sys.executable, "-m", "pram_ros.cli", "bench", "--stage", "features", "--map",
                             str(localization_map), "--images", str(world / "query_offpath" / "images"),
                             "--threads", "1", "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {row["runtime"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"torch", "onnxruntime", "openvino"}
    for runtime in ("onnxruntime", "openvino"):
        row = rows[runtime]
        assert row["frames"] == rows["torch"]["frames"] == 24, row
        assert row["keypoints_within_1px_min"] >= 0.99 and row["descriptor_cosine_min"] >= 0.99, row
        assert runtime in result.stdout
    assert "p50 ms" in result.stdout


def _gray(rgb):
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


@pytest.fixture(scope="module")
def smooth_query(smooth_query_world):
    return _frames(smooth_query_world, "query_offpath")


SMOOTH = SMOOTH_FRAMES


def test_full_frames_in_the_background_leave_every_frame_to_optical_flow(smooth_query, localizer_parts):
    """The node's default: after the first relocalization every frame is tracked by optical
    flow on the caller's thread, while the worker registers frames again with features and
    the flow follows those. Waiting for the worker after each frame makes the run the same
    on any machine."""
    pram_map, recognizer = localizer_parts
    localizer = Localizer(pram_map, recognizer, LocalizerConfig(klt_frames=2), background=True)
    try:
        results = []
        for step, index in enumerate(SMOOTH):
            rgb, truth = smooth_query[index]
            results.append(localizer.process(rgb, step * 100_000_000))
            _assert_close(results[-1], truth, f"frame {index}")
            localizer.background.wait()
        assert results[0].state == State.RELOCALIZED
        tracked = results[1:]
        assert all(r.state == State.TRACKED for r in tracked), [r.state.name for r in results]
        # No features on the caller's thread: they ran on the worker, which refreshed the track.
        assert sum("features_ms" in r.timings_ms for r in tracked) <= 1, [sorted(r.timings_ms) for r in tracked]
        assert localizer.background.submitted >= 4 and localizer.background.taken >= 3
    finally:
        localizer.close()


def test_warm_up_leaves_the_localizer_as_new(smooth_query, localizer_parts):
    """pram_node warms the localizer up on a noise image before the first camera frame; it
    must leave no track, no frame count and no continuity behind."""
    pram_map, recognizer = localizer_parts
    localizer = Localizer(pram_map, recognizer, background=True)
    try:
        localizer.warm_up()
        assert localizer.frame == 0 and not localizer.tracking and localizer.continuity.anchor is None
        rgb, truth = smooth_query[SMOOTH[0]]
        result = localizer.process(rgb, 0)
        assert result.state == State.RELOCALIZED
        _assert_close(result, truth, "first frame after the warm-up")
    finally:
        localizer.close()


def test_optical_flow_refuses_a_frame_its_camera_moved_too_far_for(smooth_query, localizer_parts):
    """An optical-flow frame whose camera moved more than `klt_max_baseline_ratio` of its
    points' median depth takes the full pipeline: here the adjacent frame of a smooth walk,
    flowed with the default and refused with a ratio below its own baseline."""
    pram_map, recognizer = localizer_parts
    first = SMOOTH[0]
    for ratio, flowed in ((LocalizerConfig().klt_max_baseline_ratio, True), (1e-4, False)):
        localizer = Localizer(pram_map, recognizer, LocalizerConfig(klt_max_baseline_ratio=ratio))
        for step in range(2):
            result = localizer.process(smooth_query[first + step][0], step * 100_000_000)
            _assert_close(result, smooth_query[first + step][1], f"frame {first + step}, ratio {ratio}")
        assert ("features_ms" not in result.timings_ms) == flowed, (ratio, sorted(result.timings_ms))
    flow = localizer.track.follow_flow(_gray(smooth_query[first + 2][0]), localizer.camera, localizer.points,
                                       localizer.config)
    assert not flow.outcome.accepted and "depth: too far for it" in flow.outcome.reason, flow.outcome.reason


STRECHA_FOUNTAIN = REPO.parent / "shared" / "data" / "strecha_dev" / "fountain-P11"


@pytest.mark.skipif(not STRECHA_FOUNTAIN.is_dir(), reason="../shared/data/strecha_dev is absent")
def test_optical_flow_between_photos_metres_apart_is_refused(tmp_path):
    """Strecha's fountain photos 1 and 3 (3.1 m apart, 8.4 m deep): five pyramid levels
    follow half of photo 1's inliers into photo 3, and the pose from them is centimetres
    off. The baseline test refuses it; without the test the flow would pass."""
    import importlib.util

    from pram_ros.mapping.build import MapBuildConfig, build_map
    from pram_ros.localization.tracking import Track

    spec = importlib.util.spec_from_file_location("real_split", REPO / "tools" / "real_split.py")
    real_split = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real_split)
    folders = real_split.split(STRECHA_FOUNTAIN, tmp_path / "split")
    mapping = images_from_folder(folders["mapping"] / "images", poses_tum=folders["mapping"] / "poses.tum")
    pram_map, _ = build_map(mapping, MapBuildConfig())
    queries = images_from_folder(folders["query"] / "images", poses_tum=folders["query"] / "poses.tum")
    photos = [rgb for _, rgb in queries.frames()][:2]
    localizer = ExhaustiveLocalizer(pram_map, LocalizerConfig())
    located = localizer.process(photos[0], 0)
    assert located.localized, located.message
    track = Track()
    track.start_from(located.cam_from_world)
    track.accept(_registration_of(located), State.RELOCALIZED)
    track.full_frame_done(_gray(photos[0]), 1)
    for ratio, passes in ((10.0, True), (LocalizerConfig().klt_max_baseline_ratio, False)):
        config = LocalizerConfig(klt_max_baseline_ratio=ratio)
        flow = track.follow_flow(_gray(photos[1]), localizer.camera, localizer.points, config)
        assert flow.outcome.accepted == passes, (ratio, flow.outcome.reason)
    assert "depth: too far for it" in flow.outcome.reason, flow.outcome.reason


def test_a_refreshed_frame_is_followed_through_the_frames_tracked_since(smooth_query, localizer_parts):
    """A refresh arrives frames after its own: its inliers are followed by optical flow
    through the frames accepted since, so that the next frame flows from the previous one,
    not from a frame far back. The worker follows them through the frames accepted by the
    time it finished, the track through the rest."""
    from pram_ros.localization.background import RefreshJob, refresh_frame
    from pram_ros.localization.tracking import Track

    pram_map, recognizer = localizer_parts
    localizer = Localizer(pram_map, recognizer, LocalizerConfig(tracking=False))
    first, last = SMOOTH[0], SMOOTH[0] + 4
    refreshed = localizer.process(smooth_query[first][0], 0)
    _assert_close(refreshed, smooth_query[first][1], f"frame {first}")
    track = Track()
    for frame, index in enumerate(range(first, last + 1)):
        cam_from_world = np.linalg.inv(smooth_query[index][1])
        if frame == 0:
            track.start_from(cam_from_world)
        else:
            track.poses.append(cam_from_world)
        track.flow_accepted(_gray(smooth_query[index][0]), frame)
    job = RefreshJob(track.generation, 0, 0, _gray(smooth_query[first][0]), localizer.camera, refreshed.cam_from_world,
                     False, 0)
    refresh = refresh_frame(job, localizer.extractor, recognizer, localizer.points, LocalizerConfig(),
                            lambda: track.recent[:3])  # what the worker saw: frames 0-2
    assert refresh.passed, refresh.problem
    assert refresh.followed.frame == 2 and refresh.followed.gray is track.recent[2][1]
    track.refreshed(refresh.followed, localizer.camera, False, 100)
    assert track.flow_gray is track.recent[-1][1]  # the last frame's
    assert len(track.inlier_points) >= 0.5 * refresh.outcome.registration.num_inliers
    uv, _ = project_points(localizer.points.xyz[track.inlier_points], np.linalg.inv(smooth_query[last][1]),
                           localizer.camera.K)
    assert np.median(np.linalg.norm(uv - track.inliers_uv, axis=1)) < 2.0


def _registration_of(result):
    from pram_ros.localization.registration import Registration

    return Registration(result.cam_from_world, result.inlier_points, result.inliers_uv, result.num_inliers,
                        result.num_candidates)


def test_a_refresh_away_from_the_flow_sends_the_next_frame_through_the_full_pipeline(smooth_query,
                                                                                    localizer_parts):
    from pram_ros.localization.background import RefreshJob, refresh_frame

    pram_map, recognizer = localizer_parts
    localizer = Localizer(pram_map, recognizer, LocalizerConfig(), background=True)
    first = SMOOTH[0]
    try:
        for step in range(2):
            result = localizer.process(smooth_query[first + step][0], step * 100_000_000)
            _assert_close(result, smooth_query[first + step][1], f"frame {first + step}")
        localizer.background.wait()
        localizer.background.take()  # the worker's own refresh, if any
        cam_from_world = np.linalg.inv(smooth_query[first + 1][1])
        moved = cam_from_world.copy()
        moved[:3, 3] += [0.3, 0.0, 0.0]

        def job(pose):
            return RefreshJob(localizer.track.generation, localizer.frame, 100_000_000,
                              _gray(smooth_query[first + 1][0]), localizer.camera, pose, False, 0)

        run = dict(extractor=localizer.extractor, recognizer=recognizer, points=localizer.points,
                   config=localizer.config)
        assert refresh_frame(job(cam_from_world), **run).passed
        away = refresh_frame(job(moved), **run)
        assert not away.passed and "optical flow's pose" in away.problem, away.problem
        # The frame after a refresh that passed is an optical-flow frame; after one that failed, a full one.
        localizer.background.submit(job(moved))
        localizer.background.wait()
        result = localizer.process(smooth_query[first + 2][0], 200_000_000)
        assert "features_ms" in result.timings_ms, sorted(result.timings_ms)
        _assert_close(result, smooth_query[first + 2][1], f"frame {first + 2}")
        localizer.background.submit(job(np.linalg.inv(smooth_query[first + 2][1])))
        localizer.background.wait()
        result = localizer.process(smooth_query[first + 3][0], 300_000_000)
        assert "features_ms" not in result.timings_ms, sorted(result.timings_ms)
    finally:
        localizer.close()


def test_descriptor_twins_match_masking_every_pair():
    """The candidate search gives what masking every near pair gives, including points whose
    most similar candidates are all near (the exhaustive fallback)."""
    from pram_ros.localization.registration import descriptor_twins

    rng = np.random.default_rng(3)
    xyz = rng.uniform(0.0, 2.0, (400, 3))
    descriptors = rng.normal(size=(400, 16)).astype(np.float32)
    # A cluster of near points with near-identical descriptors: their few candidates are all near.
    xyz[:12] = xyz[0] + rng.normal(0.0, 0.01, (12, 3))
    descriptors[:12] = descriptors[0] + rng.normal(0.0, 0.01, (12, 16))
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    similarity = descriptors @ descriptors.T
    similarity[np.linalg.norm(xyz[:, None] - xyz[None], axis=2) < 0.3] = -np.inf
    expected = np.where(np.isfinite(similarity.max(axis=1)), similarity.argmax(axis=1), -1)
    np.testing.assert_array_equal(descriptor_twins(descriptors, xyz, 0.3, candidates=4), expected)
    assert (descriptor_twins(descriptors[:2], xyz[:2] * 0.0, 0.3) == -1).all()  # nothing far enough


def test_descriptor_twins_are_cached_per_map_content(monkeypatch, tmp_path):
    """A second map load reads its twins from the cache; changed points, or a damaged cache
    file, compute them again."""
    from pram_ros.localization import registration

    monkeypatch.setenv("PRAM_CACHE_DIR", str(tmp_path))
    rng = np.random.default_rng(4)
    xyz = rng.uniform(0.0, 2.0, (300, 3)).astype(np.float32)
    descriptors = rng.normal(size=(300, 16)).astype(np.float16)
    computed = []
    real = registration.descriptor_twins
    monkeypatch.setattr(registration, "descriptor_twins", lambda *args: computed.append(1) or real(*args))
    first = registration.cached_descriptor_twins(descriptors, xyz, 0.3)
    np.testing.assert_array_equal(registration.cached_descriptor_twins(descriptors, xyz, 0.3), first)
    assert len(computed) == 1 and first.dtype == np.int32
    np.testing.assert_array_equal(first, real(descriptors, xyz, 0.3))
    registration.cached_descriptor_twins(descriptors, xyz, 0.5)
    xyz[0] += 1.0
    registration.cached_descriptor_twins(descriptors, xyz, 0.3)
    assert len(computed) == 3
    for path in (tmp_path / "twins").glob("*.npy"):
        path.write_bytes(b"not an array")
    np.testing.assert_array_equal(registration.cached_descriptor_twins(descriptors, xyz, 0.3),
                                  real(descriptors, xyz, 0.3))
    assert len(computed) == 4


def test_a_pose_left_unpolished_is_polished_like_pnp_polishes_it():
    """Relocalization leaves the least-squares step to the refinement (estimate_pose with
    polish_pose=False); polish() then gives the pose the polished PnP gives, and the
    covariance is computed for whichever pose is kept."""
    from scipy.spatial.transform import Rotation

    from pram_ros.geometry import invert, make_transform
    from pram_ros.localization.registration import Camera, estimate_pose, polish

    rng = np.random.default_rng(4)
    camera = Camera.of_intrinsics(np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]]), 640, 480)
    cam_from_world = invert(make_transform(Rotation.from_rotvec([0.05, 0.4, -0.02]).as_matrix(),
                                           np.array([0.3, 0.1, -0.5])))
    in_camera = rng.uniform([-3, -2, 2], [3, 2, 8], (400, 3))
    xyz = (in_camera - cam_from_world[:3, 3]) @ cam_from_world[:3, :3]
    uv = in_camera[:, :2] / in_camera[:, 2:] * 500.0 + [320, 240] + rng.normal(0, 0.8, (400, 2))
    uv[:60] = rng.uniform([0, 0], [640, 480], (60, 2))
    points = np.arange(400)
    rough = estimate_pose(camera, uv, points, xyz, 4.0, polish_pose=False)
    exact = estimate_pose(camera, uv, points, xyz, 4.0)
    assert not rough.polished and exact.polished and rough.num_inliers >= 330
    polished = polish(camera, rough)
    assert polished.polished and polish(camera, polished) is polished
    assert np.array_equal(polished.inlier_points, rough.inlier_points)
    distance = np.linalg.norm(invert(polished.cam_from_world)[:3, 3] - invert(exact.cam_from_world)[:3, 3])
    assert distance < 1e-3, distance
    truth = np.linalg.norm(invert(polished.cam_from_world)[:3, 3] - invert(cam_from_world)[:3, 3])
    assert truth < 0.02, truth
    # The covariance is the final pose's: small, finite, and not LOST_VARIANCE.
    assert np.all(np.isfinite(polished.covariance)) and np.trace(polished.covariance) < 1e-2
