"""Map building on a short rendered sequence: real XFeat features, real pycolmap SfM."""

from __future__ import annotations

import re

import numpy as np
import pytest

from pram_ros.evaluation.mapcheck import surface_errors_m
from pram_ros.geometry import fit_similarity, invert
from pram_ros.io.imageset import images_from_bag, images_from_folder
from pram_ros.io.tum import load_tum
from pram_ros.mapping.build import MapBuildConfig, build_map
from pram_ros.mapping.mapfile import MapFileError, load_map, map_fingerprint, save_map
from pram_ros.mapping.mapinfo import describe_map
from pram_ros.mapping.sfm import SfmConfig, align_to_positions, reconstruct
from pram_ros.world.generate import WorldConfig, generate_world

from conftest import REPO

MIN_POINTS_PER_VRF = 20


@pytest.fixture(scope="module")
def sequence(tmp_path_factory):
    out = tmp_path_factory.mktemp("mapping_world") / "world"
    generate_world(out, WorldConfig(seed=5, rooms=1, frames=40, sequences=("mapping",), write_bags=True))
    return out / "mapping"


@pytest.fixture(scope="module")
def posed_map(sequence):
    images = images_from_folder(sequence / "images", poses_tum=sequence / "poses.tum")
    return build_map(images, MapBuildConfig())


def test_summary_and_size(posed_map):
    pram_map, summary = posed_map
    assert summary.registered == summary.images == 40
    assert summary.points_reconstructed > 3000 and summary.mean_track_length > 3.0
    assert summary.reprojection_error_px < 1.0
    assert pram_map.num_points == summary.points_kept > 1000
    # The compressed map is a small fraction of the classic one.
    assert pram_map.nbytes() <= 0.10 * summary.full_reconstruction_bytes
    assert pram_map.meta["extractor"]["name"] == "xfeat" and pram_map.descriptor_dim == 64
    assert pram_map.point_descriptor.dtype == np.float16


def test_points_lie_on_rendered_surfaces(posed_map, sequence):
    pram_map, _ = posed_map
    stamps, world_from_cam = load_tum(sequence / "poses.tum")
    for image_index, name in enumerate(pram_map.image_names):
        # The map keeps the given poses exactly (triangulation holds them fixed).
        frame = int(name.split(".")[0])
        np.testing.assert_allclose(pram_map.cam_from_world(image_index), invert(world_from_cam[frame]), atol=1e-6)
    errors = surface_errors_m(pram_map, sequence, image_step=3)
    assert len(errors) > 1000
    assert np.median(errors) <= 0.01, f"median distance to the rendered surface {np.median(errors):.4f} m"
    assert np.percentile(errors, 90) <= 0.05


def test_landmarks_are_spatially_coherent(posed_map):
    pram_map, _ = posed_map
    assert set(np.unique(pram_map.point_landmark)) == set(range(1, pram_map.num_landmarks + 1))
    distance = np.linalg.norm(pram_map.point_xyz[:, None] - pram_map.landmark_centroid[None], axis=2)
    nearest = distance.argmin(axis=1) + 1
    assert np.mean(nearest == pram_map.point_landmark) > 0.9
    # Each landmark is compact: its points sit within its box.
    for landmark in range(1, pram_map.num_landmarks + 1):
        members = pram_map.point_xyz[pram_map.point_landmark == landmark]
        centre, half = pram_map.landmark_centroid[landmark - 1], pram_map.landmark_extent[landmark - 1]
        assert np.all(np.abs(members - centre) <= half + 1e-4)
        assert np.all(half < 10.0)


def test_compression_keeps_vrf_coverage(posed_map):
    pram_map, _ = posed_map
    for landmark in range(1, pram_map.num_landmarks + 1):
        vrfs = pram_map.landmark_vrfs(landmark)
        assert 1 <= len(vrfs) <= 8
        members = np.flatnonzero(pram_map.point_landmark == landmark)
        for vrf in vrfs:
            seen = sum(vrf in pram_map.point_observers(p) for p in members)
            assert seen >= MIN_POINTS_PER_VRF, f"landmark {landmark}: VRF {vrf} sees only {seen} kept points"


def test_map_file_round_trip_and_rejections(posed_map, tmp_path):
    pram_map, _ = posed_map
    path = tmp_path / "map.npz"
    save_map(pram_map, path)
    loaded = load_map(path)
    for name, array in pram_map.arrays().items():
        np.testing.assert_array_equal(getattr(loaded, name), array, err_msg=name)
    assert map_fingerprint(loaded) == map_fingerprint(pram_map) == map_fingerprint(path)

    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(MapFileError) as error:
        load_map(truncated)
    assert str(truncated) in str(error.value) and "\n" not in str(error.value)


SACRE_COEUR = REPO.parent / "shared" / "data" / "sacre_coeur"


def _real_split():
    """tools/real_split.py, the repository's recipe for real photo sets (it reads their poses)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("real_split", REPO / "tools" / "real_split.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sacre_coeur_sfm(extractor_name: str, config: SfmConfig, work_dir):
    """SfM without poses on Sacré-Cœur's 10 photos (10 cameras), Sim3-aligned to the reference
    camera centres (IMC poses, arbitrary scale); -> (registered, centre errors of the
    registered photos, extent of the reference centres)."""
    from pram_ros.features import create_extractor
    from pram_ros.io.images import load_image

    images = sorted((SACRE_COEUR / "images").iterdir())
    cameras, world_from_cam = _real_split().reference_cameras(SACRE_COEUR, images)
    extractor = create_extractor(extractor_name)
    names = [path.name for path in images]
    features = [extractor.extract(load_image(path)) for path in images]
    Ks, widths, heights = (np.array(values) for values in zip(*cameras))
    centres = world_from_cam[:, :3, 3]
    result = reconstruct(names, features, Ks, widths, heights, work_dir, config=config)
    extent = np.linalg.norm(centres.max(axis=0) - centres.min(axis=0))
    align_to_positions(result, names, centres, max_error_m=0.05 * extent)
    registered = result.registered()
    errors = np.array([np.linalg.norm(result.reconstruction.images[image_id].projection_center() - centre)
                       for image_id, centre, ok in zip(result.image_ids, centres, registered) if ok])
    return registered, errors, extent


@pytest.mark.skipif(not SACRE_COEUR.is_dir(), reason="../shared/data/sacre_coeur is absent")
def test_sfm_without_poses_on_real_photos_matches_reference_up_to_sim3(tmp_path):
    """10 real photos from different cameras, SIFT and incremental SfM (measured 0.84% of
    the extent, median)."""
    registered, errors, extent = _sacre_coeur_sfm(
        "sift", SfmConfig(unposed_pairing="exhaustive", unposed_match_ratio=0.8, num_threads=1), tmp_path)
    assert registered.sum() >= 9, f"{registered.sum()} of 10 photos registered"
    assert np.median(errors) <= 0.02 * extent, f"median centre error {np.median(errors) / extent:.4f} of the extent"


@pytest.mark.skipif(not SACRE_COEUR.is_dir(), reason="../shared/data/sacre_coeur is absent")
def test_global_sfm_registers_every_sacre_coeur_photo_within_1_percent(tmp_path):
    """Issue 16's target on Internet photos, XFeat and global SfM: camera centres within 1%
    of the scene's extent after Sim3 (measured 0.26-0.77% median; incremental SfM registers
    6 of 10). Every photo is registered in most runs, 9 of 10 in 1 of 7 on 2026-12-06
    (GLOMAP is not deterministic here, even on one thread): at least 9."""
    registered, errors, extent = _sacre_coeur_sfm(
        "xfeat", SfmConfig(unposed_pairing="exhaustive", unposed_match_ratio=0.8, unposed_mapper="global"), tmp_path)
    assert registered.sum() >= 9, f"{registered.sum()} of 10 photos registered"
    assert np.median(errors) <= 0.01 * extent, f"median centre error {np.median(errors) / extent:.4f} of the extent"


def test_sfm_without_poses_on_rendered_frames_recovers_the_trajectory_up_to_sim3(tmp_path):
    """The same room walked on the "orbit" mapping path (the default "spin" path gives
    SfM a few centimetres of baseline: 5 of these 40 frames register), reconstructed from
    the images alone and Sim3-aligned to the rendered poses by `--align`."""
    world = tmp_path / "world"
    generate_world(world, WorldConfig(seed=5, rooms=1, frames=40, sequences=("mapping",), write_bags=False,
                                      mapping_path="orbit"))
    sequence = world / "mapping"
    pram_map, summary = build_map(images_from_folder(sequence / "images"), MapBuildConfig(),
                                  align_tum=sequence / "poses.tum")
    errors = summary.aligned_centre_errors_m
    assert summary.registered >= 30 and len(errors) == summary.registered
    assert np.median(errors) <= 0.02, f"median camera centre error {np.median(errors):.3f} m"
    assert np.mean(errors <= 0.05) >= 0.75, np.round(errors, 3).tolist()
    assert pram_map.meta["stats"]["aligned_centre_error_m"]["median"] == pytest.approx(np.median(errors), abs=1e-4)
    assert "Sim3 alignment: camera centres" in summary.describe()
    assert "alignment:   Sim3 to given poses" in describe_map(pram_map)


def test_bag_and_folder_give_the_same_map(sequence, posed_map):
    pram_map, _ = posed_map
    images = images_from_bag(sequence / "bag", "/camera/image_raw", pose_topic="/ground_truth/pose")
    assert len(images.names) == 40
    from_bag, _ = build_map(images, MapBuildConfig())
    for name in ("point_xyz", "point_descriptor", "point_landmark", "point_obs_offsets", "point_obs_images",
                 "landmark_vrf_images", "image_cam_from_world", "camera_params"):
        np.testing.assert_allclose(getattr(from_bag, name).astype(float), getattr(pram_map, name).astype(float),
                                   atol=1e-5, err_msg=name)


def test_bad_inputs_give_clear_errors(sequence, tmp_path):
    with pytest.raises(ValueError, match="poses for 40 images"):
        short = tmp_path / "short.tum"
        short.write_text("".join((sequence / "poses.tum").read_text().splitlines(keepends=True)[:10]))
        images_from_folder(sequence / "images", poses_tum=short)
    with pytest.raises(ValueError, match="no topic /nope/image_raw; its image topics: /camera/image_raw"):
        images_from_bag(sequence / "bag", "/nope/image_raw", camera_info_topic="/camera/camera_info")
    with pytest.raises(FileNotFoundError, match="not a folder of images"):
        images_from_folder(tmp_path / "missing")


def test_cli_map_build_and_info(sequence, tmp_path):
    """`pram map build` from the bag, then `pram map info`; a broken file gives one line, no traceback."""
    import os
    import subprocess

    from conftest import venv_executable

    out = tmp_path / "map.npz"
    build = subprocess.run(
        [venv_executable("pram"), "map", "build", "--bag", str(sequence / "bag"), "--image-topic", "/camera/image_raw",
         "--pose-topic", "/ground_truth/pose", "--landmarks", "5", "--out", str(out), "--train", "--epochs", "1"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "TQDM_DISABLE": "1"},
    )
    assert build.returncode == 0, build.stderr[-3000:]
    assert "images registered: 40 of 40" in build.stdout and out.is_file()
    # --train: the recognizer beside the map, from the build's own features of the bag's images.
    assert "the map build's features of 40 recorded images reused" in build.stderr
    from pram_ros.recognition.modelfile import default_model_path, load_model

    assert load_model(default_model_path(out), [(str(out), load_map(out))]).recognizer is not None
    assert "Could not read image" not in build.stderr  # COLMAP's colour pass is silenced
    info = subprocess.run([venv_executable("pram"), "map", "info", str(out)], capture_output=True, text=True, timeout=120)
    assert info.returncode == 0 and "landmarks:   5" in info.stdout, info.stdout + info.stderr
    again = subprocess.run(build.args, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "exists" in again.stderr, "an existing map is never overwritten silently"

    broken = tmp_path / "broken.npz"
    broken.write_bytes(out.read_bytes()[:1000])
    info = subprocess.run([venv_executable("pram"), "map", "info", str(broken)], capture_output=True, text=True, timeout=120)
    assert info.returncode == 2
    assert "Traceback" not in info.stderr and str(broken) in info.stderr


def _pram_map_build(sequence, poses, out, *extra):
    import os
    import subprocess

    from conftest import venv_executable

    return subprocess.run(
        [venv_executable("pram"), "map", "build", "--images", str(sequence / "images"), "--poses", str(poses),
         "--out", str(out), *extra],
        capture_output=True, text=True, timeout=600, env={**os.environ, "TQDM_DISABLE": "1"},
    )


def test_wrong_pose_files_are_refused_before_mapping(sequence, tmp_path):
    """Each common pose mistake: exit 2, one line naming the file (and line, or the likely
    cause), no traceback, no map, and no full feature extraction (its log line is absent)."""
    from pram_ros.io.tum import save_tum
    from pram_ros.mapping.posecheck import BODY_FROM_OPTICAL

    stamps, world_from_cam = load_tum(sequence / "poses.tum")
    lines = (sequence / "poses.tum").read_text().splitlines(keepends=True)
    cases = {}
    for name, text in {"garbage": "abc", "nan": "nan"}.items():
        broken = list(lines)
        fields = broken[6].split()
        fields[2] = text
        broken[6] = " ".join(fields) + "\n"
        cases[name] = ("".join(broken), rf"poses_{name}.tum:7: ty ('abc' is not a number|is nan)")
    zero = list(lines)
    zero[3] = " ".join(zero[3].split()[:4] + ["0", "0", "0", "0"]) + "\n"
    cases["zero quaternion"] = ("".join(zero), r"poses_zero quaternion.tum:4: the quaternion .* has zero length")
    cases["too few"] = ("".join(lines[:30]), r"30 poses for 40 images")
    for name, (text, expected) in cases.items():
        (tmp_path / f"poses_{name}.tum").write_text(text)
    for name, poses in {"inverted": np.array([invert(p) for p in world_from_cam]),
                        "body axes": world_from_cam @ np.linalg.inv(BODY_FROM_OPTICAL)}.items():
        save_tum(tmp_path / f"poses_{name}.tum", stamps, poses)
    cases["inverted"] = (None, r"poses_inverted.tum: they look inverted: give world_from_camera")
    cases["body axes"] = (None, r"poses_body axes.tum: they look like poses of a body frame")

    for name, (_, expected) in cases.items():
        out = tmp_path / f"{name}.npz"
        run = _pram_map_build(sequence, tmp_path / f"poses_{name}.tum", out)
        assert run.returncode == 2, (name, run.stderr[-2000:])
        assert "Traceback" not in run.stderr and not out.exists(), name
        error_lines = [line for line in run.stderr.splitlines() if "error" in line.lower()]
        assert error_lines and re.search(expected, error_lines[-1]), (name, run.stderr[-2000:])
        assert "features: 40 images" not in run.stderr, f"{name}: refused only after the full extraction"


def test_pairing_distance_comes_from_the_scene(sequence, posed_map):
    """The pose check measures the depth the cameras see (the rendered room: 1-4 m), pairing
    uses it, and the summary says so; an explicit distance overrides it."""
    _, summary = posed_map
    assert summary.pose_check is not None and "as given 100%" in summary.pose_check, summary.pose_check
    assert 1.0 < summary.pair_lookat_m < 4.0, summary.pair_lookat_m
    images = images_from_folder(sequence / "images", poses_tum=sequence / "poses.tum")
    # Look-at points within 0.02 m of each other: no pairs, so no map (the override is used).
    with pytest.raises(ValueError, match="no image pair shares .* cameras assumed to look 0.20 m ahead"):
        build_map(images, MapBuildConfig(sfm=SfmConfig(pair_lookat_m=0.2, pair_radius_m=0.02)))


@pytest.mark.skipif(not (REPO.parent / "shared" / "data" / "strecha_dev").is_dir(),
                    reason="../shared/data/strecha_dev is absent")
def test_a_posed_outdoor_scene_gets_pairs_from_its_depth(tmp_path):
    """The entry scene (about 19 m deep) got no map when pairing assumed a room (2 m)."""
    scene = REPO.parent / "shared" / "data" / "strecha_dev" / "entry-P10"
    images = images_from_folder(scene / "images", poses_tum=scene / "poses.tum")
    pram_map, summary = build_map(images, MapBuildConfig())
    assert summary.registered == 10 and summary.pair_lookat_m > 10.0, summary.describe()
    assert pram_map.num_points > 300, summary.describe()


@pytest.mark.skipif(not (REPO.parent / "shared" / "data" / "strecha_dev").is_dir(),
                    reason="../shared/data/strecha_dev is absent")
def test_global_sfm_places_every_strecha_photo_within_2_cm(tmp_path):
    """Without poses, `--mapper global`: the survey-grade Strecha scenes, every photo
    registered and the camera centres within 2 cm (median) of the reference after Sim3
    (measured: fountain 0.5 cm, entry 1.5 cm; incremental SfM gives entry 2.5 cm)."""
    for name in ("fountain-P11", "entry-P10"):
        scene = REPO.parent / "shared" / "data" / "strecha_dev" / name
        _, summary = build_map(images_from_folder(scene / "images"),
                               MapBuildConfig(sfm=SfmConfig(unposed_mapper="global")), align_tum=scene / "poses.tum")
        errors = summary.aligned_centre_errors_m
        assert summary.registered == summary.images and np.median(errors) <= 0.02, (name, summary.describe())


def test_global_sfm_runs_on_rendered_frames(tmp_path):
    """The CI-sized case of `--mapper global` (its accuracy is tested on real photos): the
    option reaches pycolmap's global pipeline, which registers the orbit room's frames and
    returns a reconstruction the map is built from. On this turning walk it misplaces
    many of them, which is why incremental SfM stays the default."""
    world = tmp_path / "world"
    generate_world(world, WorldConfig(seed=5, rooms=1, frames=40, sequences=("mapping",), write_bags=False,
                                      mapping_path="orbit"))
    pram_map, summary = build_map(images_from_folder(world / "mapping" / "images"),
                                  MapBuildConfig(sfm=SfmConfig(unposed_mapper="global")))
    assert summary.registered >= 30 and "global_sfm" in summary.timings_s and pram_map.num_points > 500
    with pytest.raises(ValueError, match="unposed_mapper"):
        SfmConfig(unposed_mapper="glomap")


def test_a_colmap_model_imports_into_the_map_its_poses_give(sequence, posed_map, tmp_path):
    """A COLMAP model (written by pycolmap: camera and poses of the rendered sequence, image
    names relative to the images folder) builds the same map as the TUM poses do; a model
    with lens distortion is refused naming the camera."""
    import pycolmap

    from pram_ros.io.camera import load_camera_yaml
    from pram_ros.io.colmap import COLMAP_PIXEL_OFFSET
    from pram_ros.io.imageset import images_from_colmap

    _, world_from_cam = load_tum(sequence / "poses.tum")
    K, width, height = load_camera_yaml(sequence / "camera.yaml")
    names = sorted(p.name for p in (sequence / "images").iterdir())
    model = pycolmap.Reconstruction()
    camera = pycolmap.Camera(model="PINHOLE", width=width, height=height, camera_id=1,
                             params=[K[0, 0], K[1, 1], K[0, 2] + COLMAP_PIXEL_OFFSET, K[1, 2] + COLMAP_PIXEL_OFFSET])
    model.add_camera_with_trivial_rig(camera)
    for index in np.random.default_rng(0).permutation(len(names)):  # ids in another order than the names
        cam_from_world = invert(world_from_cam[index])
        image = pycolmap.Image(name=names[index], camera_id=1, image_id=int(index) + 10)
        model.add_image_with_trivial_frame(
            image, pycolmap.Rigid3d(pycolmap.Rotation3d(cam_from_world[:3, :3]), cam_from_world[:3, 3]))
    (tmp_path / "model").mkdir()
    model.write(str(tmp_path / "model"))

    imported = images_from_colmap(tmp_path / "model", sequence / "images")
    assert imported.names == names
    np.testing.assert_allclose(imported.K, K, atol=1e-9)
    np.testing.assert_allclose(imported.world_from_cam, world_from_cam, atol=1e-6)
    pram_map, summary = build_map(imported, MapBuildConfig())
    expected, expected_summary = posed_map
    assert summary.registered == expected_summary.registered == 40
    assert pram_map.num_points == expected.num_points, (pram_map.num_points, expected.num_points)
    np.testing.assert_allclose(pram_map.point_xyz, expected.point_xyz, atol=1e-4)

    distorted = pycolmap.Reconstruction(str(tmp_path / "model"))
    distorted.cameras[1] = pycolmap.Camera(model="OPENCV", width=width, height=height, camera_id=1,
                                           params=[K[0, 0], K[1, 1], K[0, 2], K[1, 2], -0.1, 0.01, 0.0, 0.0])
    (tmp_path / "distorted").mkdir()
    distorted.write(str(tmp_path / "distorted"))
    with pytest.raises(ValueError, match=r"distorted: camera 1 \(OPENCV\) has lens distortion"):
        images_from_colmap(tmp_path / "distorted", sequence / "images")
    with pytest.raises(FileNotFoundError, match="not a COLMAP model"):
        images_from_colmap(sequence / "images", sequence / "images")


def test_odometry_in_the_bag_gives_the_unposed_map_metres(tmp_path):
    """A bag without poses but with /tf (odom -> base_link, drifting) and /tf_static
    (base_link -> camera), on the orbit path (SfM needs its baseline): the map comes out in
    metres (scale within 1% of the truth), and the summary says where the scale came from."""
    from scipy.spatial.transform import Rotation

    generate_world(tmp_path / "world", WorldConfig(seed=5, rooms=1, frames=40, sequences=("mapping",),
                                                   write_bags=True, mapping_path="orbit"))
    sequence = tmp_path / "world" / "mapping"
    images = images_from_bag(sequence / "bag", "/camera/image_raw")
    assert images.world_from_cam is None and images.odometry is not None
    assert images.odometry.chain == "odom -> base_link -> camera_optical_frame" and images.odometry.covered.all()
    pram_map, summary = build_map(images, MapBuildConfig())
    assert summary.scale.startswith("metres, from odometry"), summary.scale
    assert "short spans" in summary.scale, summary.scale
    # SfM places a stretch of this orbit 2.7-2.9 m off (the same happens without odometry);
    # those images disagree with the odometry and are dropped, not kept as wrong poses.
    assert summary.registered >= 20, summary.describe()
    _, truth = load_tum(sequence / "poses.tum")
    in_map = {name: index for index, name in enumerate(pram_map.image_names)}
    centres, true_centres, odometry = [], [], []
    for index, name in enumerate(images.names):
        pose = pram_map.image_cam_from_world[in_map[name]] if name in in_map else np.full(7, np.nan)
        if np.all(np.isfinite(pose)):  # qx qy qz qw tx ty tz, cam_from_world
            centres.append(-Rotation.from_quat(pose[:4]).as_matrix().T @ pose[4:])
            true_centres.append(truth[index][:3, 3])
            odometry.append(images.odometry.odom_from_cam[index, :3, 3])
    assert len(centres) == summary.registered
    centres, true_centres = np.array(centres), np.array(true_centres)
    scale = fit_similarity(centres, true_centres)[0]
    assert abs(scale - 1.0) <= 0.01, f"scale off by {abs(scale - 1.0):.3%}"
    assert np.max(np.linalg.norm(centres - np.array(odometry), axis=1)) < 0.25

    plain = images_from_bag(sequence / "bag", "/camera/image_raw", use_odometry=False)
    assert plain.odometry is None


def test_the_odometry_scale_comes_from_short_spans_not_the_drifting_walk():
    """Wheel odometry of a walk that turns every way, its heading drifting 0.3 deg/s and its
    steps a little noisy, and a reconstruction at an arbitrary scale: the short spans give
    the scale within 0.3%, where a similarity fitted to the whole walk takes the bend as
    scale. Rows in any order; no motion, no spans."""
    from pram_ros.mapping.sfm import short_span_scale

    rng = np.random.default_rng(2)
    seconds = np.arange(0.0, 60.0, 0.1)
    angle = 0.3 * seconds + 0.5 * np.sin(0.4 * seconds)
    truth = np.stack([2.0 * np.cos(angle) + 0.1 * seconds, 1.5 * np.sin(angle), np.full_like(angle, 1.2)], 1)
    heading_error = np.deg2rad(0.3) * seconds[1:]
    step = np.diff(truth, axis=0)
    cos, sin = np.cos(heading_error), np.sin(heading_error)
    step = np.stack([cos * step[:, 0] - sin * step[:, 1], sin * step[:, 0] + cos * step[:, 1], step[:, 2]], 1)
    odometry = np.vstack([truth[:1], truth[0] + np.cumsum(step + rng.normal(0.0, 0.002, step.shape), axis=0)])
    reconstruction = 0.37 * truth + rng.normal(0.0, 0.002, truth.shape)
    stamps_ns = (seconds * 1e9).astype(np.int64) + 1_700_000_000_000_000_000
    scale, spans = short_span_scale(stamps_ns, reconstruction, odometry)
    assert spans > 1000 and abs(scale * 0.37 - 1.0) <= 0.003, (scale * 0.37, spans)
    assert abs(fit_similarity(reconstruction, odometry)[0] * 0.37 - 1.0) > 0.01  # what it replaces
    order = rng.permutation(len(seconds))
    assert short_span_scale(stamps_ns[order], reconstruction[order], odometry[order]) == (scale, spans)
    assert short_span_scale(stamps_ns, reconstruction, np.zeros_like(odometry)) == (1.0, 0)


def test_landmark_count_comes_from_points_and_images_not_the_floor_area():
    from pram_ros.mapping.landmarks import LandmarkConfig, choose_num_landmarks

    config = LandmarkConfig()
    # (points, mapping images) -> K: the demo map keeps its 10; small photo sets are capped by
    # what they can teach (100 points a landmark, one landmark an image).
    cases = {(17_796, 300): 10, (981, 30): 4, (335, 5): 3, (250, 40): 2, (65_000, 1_600): 36, (10**7, 10**5): 512}
    assert {(points, images): choose_num_landmarks(points, config, images) for points, images in cases} == cases
    assert choose_num_landmarks(17_796, LandmarkConfig(num_landmarks=7), 300) == 7


def test_a_map_takes_photos_from_several_cameras(sequence, tmp_path):
    """Every other frame resized to 0.75 with its own cameras/NAME.yaml (as a photo
    collection has one camera per photo): the map keeps two cameras, says whose each image
    is, and its points lie on the rendered surfaces through either camera."""
    import cv2

    from pram_ros.io.camera import load_camera_yaml, save_camera_yaml
    from pram_ros.io.images import load_depth, load_image, save_depth, save_image

    K, width, height = load_camera_yaml(sequence / "camera.yaml")
    small_K = K.copy()
    small_K[:2] *= 0.75
    small_K[:2, 2] = (K[:2, 2] + 0.5) * 0.75 - 0.5  # resizing maps pixel centres
    folder = tmp_path / "collection"
    for part in ("images", "cameras", "depth"):
        (folder / part).mkdir(parents=True)
    names = sorted(p.name for p in (sequence / "images").iterdir())
    for index, name in enumerate(names):
        rgb, depth = load_image(sequence / "images" / name), load_depth(sequence / "depth" / name)
        stem = name.rsplit(".", 1)[0]
        if index % 2:
            rgb = cv2.resize(rgb, (width * 3 // 4, height * 3 // 4), interpolation=cv2.INTER_AREA)
            depth = cv2.resize(depth, (width * 3 // 4, height * 3 // 4), interpolation=cv2.INTER_NEAREST)
            save_camera_yaml(folder / "cameras" / f"{stem}.yaml", small_K, width * 3 // 4, height * 3 // 4)
        else:
            save_camera_yaml(folder / "cameras" / f"{stem}.yaml", K, width, height)
        save_image(folder / "images" / name, rgb)
        save_depth(folder / "depth" / name, depth)
    images = images_from_folder(folder / "images", poses_tum=sequence / "poses.tum")
    assert not images.one_camera and images.camera_of(1)[1:] == (width * 3 // 4, height * 3 // 4)
    pram_map, summary = build_map(images, MapBuildConfig())
    assert summary.registered == 40 and pram_map.num_cameras == 2
    frames = [int(name.split(".")[0]) for name in pram_map.image_names]
    small = pram_map.camera_size[pram_map.image_camera][:, 0] == width * 3 // 4
    assert np.array_equal(small, np.array(frames) % 2 == 1)
    errors = surface_errors_m(pram_map, folder, image_step=1)
    # One camera gives 0.9 / 4.1 cm here; the smaller images triangulate a little worse.
    assert np.median(errors) <= 0.015 and np.percentile(errors, 90) <= 0.06, (np.median(errors),
                                                                             np.percentile(errors, 90))

    (folder / "cameras" / f"{names[3].rsplit('.', 1)[0]}.yaml").unlink()
    with pytest.raises(FileNotFoundError, match=r"cameras: no camera for 1 of 40 images"):
        images_from_folder(folder / "images")


@pytest.mark.skipif(not SACRE_COEUR.is_dir(), reason="../shared/data/sacre_coeur is absent")
def test_photos_from_many_cameras_map_and_localize_with_their_own_cameras(tmp_path):
    """tools/real_split.py on Sacre-Coeur (10 photos, 10 cameras): the 5 even photos map
    with their own intrinsics, and the 5 odd ones, each with its own camera, localize by
    matching the whole map (the exhaustive method: no recognizer needed) within 5 cm and
    5 degrees in the poses' units (arbitrary scale; the camera centres span about 9),
    with no wrong pose. The photo the project's `retrieval` also misses may stay LOST."""
    from pram_ros.evaluation.localize import localize_frames
    from pram_ros.geometry import pose_difference
    from pram_ros.localization import LocalizerParts, create_localizer
    from pram_ros.localization.loading import map_extractor

    folders = _real_split().split(SACRE_COEUR, tmp_path / "split")
    mapping = images_from_folder(folders["mapping"] / "images", poses_tum=folders["mapping"] / "poses.tum")
    assert not mapping.one_camera
    pram_map, summary = build_map(mapping, MapBuildConfig())
    assert summary.registered == 5 and pram_map.num_cameras == 5, summary.describe()
    queries = images_from_folder(folders["query"] / "images", poses_tum=folders["query"] / "poses.tum")
    localizer = create_localizer("exhaustive", LocalizerParts(tmp_path / "map.npz", pram_map, None,
                                                              map_extractor(pram_map)))
    results = localize_frames(localizer, queries, np.arange(len(queries.names)) * 10**9)
    errors = [pose_difference(r.world_from_cam, truth) if r.localized else None
              for r, truth in zip(results, queries.world_from_cam)]
    close = [e for e in errors if e is not None and e[0] <= 0.05 and e[1] <= 5.0]
    wrong = [e for e in errors if e is not None and (e[0] > 0.5 or e[1] > 5.0)]
    assert len(close) >= 4 and not wrong, errors
