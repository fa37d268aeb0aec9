"""A map of two recording sessions (the second under changed lighting): real XFeat, real
pycolmap, real training; the points both sessions see are merged, their looks kept."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

from pram_ros.io.imageset import images_from_folder, join_sessions
from pram_ros.localization.registration import MapPoints, match_points
from pram_ros.mapping.build import MapBuildConfig, build_map
from pram_ros.mapping.mapfile import MapFileError, load_map, map_fingerprint, save_map
from pram_ros.mapping.mapinfo import describe_map
from pram_ros.world.generate import WorldConfig, generate_world

from conftest import REPO, venv_executable


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    out = tmp_path_factory.mktemp("sessions_world") / "world"
    generate_world(out, WorldConfig(seed=5, rooms=1, frames=40, sequences=("mapping", "mapping_lighting"),
                                    write_bags=False))
    return out


def _session(world, name):
    return images_from_folder(world / name / "images", poses_tum=world / name / "poses.tum")


@pytest.fixture(scope="module")
def one_session(world):
    return build_map(_session(world, "mapping"), MapBuildConfig())[0]


@pytest.fixture(scope="module")
def two_sessions(world, tmp_path_factory):
    """Built by the CLI, with its recognizer: `pram map build --images A --poses A --images B --poses B`."""
    out = tmp_path_factory.mktemp("sessions_map") / "map.npz"
    args = [venv_executable("pram"), "map", "build", "--out", str(out), "--train", "--epochs", "1"]
    for name in ("mapping", "mapping_lighting"):
        args += ["--images", str(world / name / "images"), "--poses", str(world / name / "poses.tum")]
    build = subprocess.run(args, capture_output=True, text=True, timeout=900, env={**os.environ, "TQDM_DISABLE": "1"})
    assert build.returncode == 0, build.stderr[-3000:]
    assert "images registered: 60 of 60" in build.stdout, build.stdout
    # The recognizer trains on both sessions' images, from the build's own features.
    assert "the map build's features of 60 recorded images reused" in build.stderr, build.stderr[-3000:]
    return out


def test_the_second_session_merges_into_the_first(one_session, two_sessions):
    pram_map = load_map(two_sessions)
    names = pram_map.image_names
    assert sum(n.startswith("session0/") for n in names) == 40 and sum(n.startswith("session1/") for n in names) == 20
    # Points seen in both sessions are one point, observed by images of each.
    session_of_image = np.array([int(n.split("/")[0].removeprefix("session")) for n in names])
    both = [len(np.unique(session_of_image[pram_map.point_observers(p)])) == 2 for p in range(pram_map.num_points)]
    assert np.mean(both) > 0.2, f"only {np.mean(both):.2f} of the points are seen by both sessions"
    # Their looks under the other light are kept, bounded per point.
    assert 0 < pram_map.num_appearances < pram_map.num_points
    assert np.bincount(pram_map.appearance_point).max() <= 2
    assert all(both[p] for p in np.unique(pram_map.appearance_point))
    assert pram_map.nbytes() <= 1.6 * one_session.nbytes(), (pram_map.nbytes(), one_session.nbytes())
    assert f"sessions:    2 (40 + 20 images); {pram_map.num_appearances} further looks" in describe_map(pram_map)


def test_the_recognizer_matches_the_two_session_map(two_sessions):
    from pram_ros.recognition.modelfile import default_model_path, load_model

    pram_map = load_map(two_sessions)
    model = load_model(default_model_path(two_sessions), [(str(two_sessions), pram_map)])
    assert model.recognizer is not None


def test_looks_round_trip_and_are_checked(two_sessions, one_session, tmp_path):
    pram_map = load_map(two_sessions)
    path = tmp_path / "again.npz"
    save_map(pram_map, path)
    again = load_map(path)
    np.testing.assert_array_equal(again.appearance_point, pram_map.appearance_point)
    np.testing.assert_array_equal(again.appearance_descriptor, pram_map.appearance_descriptor)
    assert map_fingerprint(again) == map_fingerprint(pram_map)
    # A map of one session stores no such arrays: its file is what it was before them.
    single = tmp_path / "single.npz"
    save_map(one_session, single)
    with np.load(single) as npz:
        assert "appearance_point" not in npz.files
    pram_map.appearance_point = pram_map.appearance_point.copy()
    pram_map.appearance_point[0] = pram_map.num_points
    with pytest.raises(MapFileError, match="appearance_point"):
        save_map(pram_map, tmp_path / "bad.npz")


def test_a_look_matches_without_making_its_point_ambiguous(two_sessions):
    """A keypoint that fits both looks of one point matches it; with one look alone it would
    also match: the second look never fails the ratio test."""
    pram_map = load_map(two_sessions)
    index = MapPoints(pram_map, twin_min_distance_m=0.5)
    assert len(index) == pram_map.num_points + pram_map.num_appearances
    point = int(pram_map.appearance_point[0])
    entries = np.array([point, pram_map.num_points])  # the point and its first further look
    np.testing.assert_array_equal(index.xyz[entries[1]], index.xyz[entries[0]])
    others = np.setdiff1d(index.landmark_points[int(pram_map.point_landmark[point])], entries)[:200]
    query = index.descriptors(entries).mean(axis=0, keepdims=True)
    query /= np.linalg.norm(query)
    matches = match_points(index, query, np.concatenate([entries, others]), ratio=0.9)
    assert len(matches) == 1 and matches[0, 1] in (0, 1)


def test_sessions_with_and_without_poses_are_refused(world):
    posed, unposed = _session(world, "mapping"), images_from_folder(world / "mapping_lighting" / "images")
    with pytest.raises(ValueError, match="some have poses"):
        join_sessions([posed, unposed])


def test_map_extend_localizes_a_later_session_and_merges_it(world, one_session, tmp_path):
    """`pram map extend MAP --images LATER`: the later session's images are localized on the
    map (no poses given), then one map holds both sessions, in the map's frame."""
    from pram_ros.geometry import invert
    from pram_ros.io.tum import load_tum

    first = tmp_path / "first.npz"
    save_map(one_session, first)
    out = tmp_path / "extended.npz"
    extend = subprocess.run([venv_executable("pram"), "map", "extend", str(first), "--images",
                             str(world / "mapping_lighting" / "images"), "--out", str(out)],
                            capture_output=True, text=True, timeout=900, env={**os.environ, "TQDM_DISABLE": "1"})
    assert extend.returncode == 0, extend.stderr[-3000:]
    localized = int(extend.stdout.split("localized on ")[1].split(": ")[1].split()[0])
    assert 10 <= localized <= 20, extend.stdout
    extended = load_map(out)
    names = extended.image_names
    assert sum(n.startswith("session0/") for n in names) == 40
    assert sum(n.startswith("session1/") for n in names) == localized
    # The later session's poses came from localization: close to its ground truth.
    _, truth = load_tum(world / "mapping_lighting" / "poses.tum")
    errors = [np.linalg.norm(invert(extended.cam_from_world(i))[:3, 3] - truth[int(n.split("/")[1][:6])][:3, 3])
              for i, n in enumerate(names) if n.startswith("session1/")]
    assert np.median(errors) < 0.02 and max(errors) < 0.05, errors  # no look-alike placement kept
    assert extended.num_appearances > 0
    # A wrong --out is refused before the long work; so is an existing one.
    again = subprocess.run(extend.args, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "exists" in again.stderr and "Traceback" not in again.stderr


def test_frames_a_look_alike_placed_off_the_trajectory_are_left_out():
    """A walk at 10 cm per frame, localized with a run of 6 frames and a single frame placed
    3 m away (look-alikes), and a real gap of 8 frames not localized: the look-alikes go,
    both real stretches stay."""
    from pram_ros.geometry import transform_from_quat
    from pram_ros.mapping.sessions import on_one_trajectory

    frames = np.array([f for f in range(60) if not 30 <= f < 38])
    poses = np.array([transform_from_quat(np.array([0.1 * f, 0.0, 1.5]), np.array([0.0, 0.0, np.sin(0.01 * f),
                                                                                   np.cos(0.01 * f)]))
                      for f in frames])
    wrong = np.isin(frames, [10, 11, 12, 13, 14, 15, 50])
    poses[wrong, :3, 3] += [0.0, 3.0, 0.0]
    keep = on_one_trajectory(frames, poses)
    np.testing.assert_array_equal(keep, ~wrong)
    # A session that is all one stretch keeps every frame.
    assert on_one_trajectory(frames[frames < 30][20:], poses[frames < 30][20:]).all()


def test_session_arguments_that_do_not_pair_up_are_refused_before_the_build(world, tmp_path):
    args = [venv_executable("pram"), "map", "build", "--out", str(tmp_path / "map.npz"),
            "--images", str(world / "mapping" / "images"), "--images", str(world / "mapping_lighting" / "images"),
            "--poses", str(world / "mapping" / "poses.tum")]
    build = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert build.returncode == 2 and "1 --poses for 2 --images" in build.stderr, build.stderr
    assert "Traceback" not in build.stderr and not (tmp_path / "map.npz").exists()
    # Without any poses nothing would pair the sessions: refused, with what to do instead.
    unposed = subprocess.run(args[:-2], capture_output=True, text=True, timeout=120)
    assert unposed.returncode == 2 and "pram map extend" in unposed.stderr, unposed.stderr


STRECHA_FOUNTAIN = REPO.parent / "shared" / "data" / "strecha_dev" / "fountain-P11"


@pytest.mark.skipif(not STRECHA_FOUNTAIN.is_dir(), reason="../shared/data/strecha_dev is absent")
def test_map_extend_places_real_photos_within_2_cm(tmp_path):
    """Strecha fountain (survey-grade poses): the even photos make the map, the odd ones are
    added by `pram map extend`; each is placed where the reference says."""
    import sys

    from pram_ros.geometry import invert
    from pram_ros.io.tum import load_tum

    out = tmp_path / "fountain"
    run = subprocess.run([sys.executable, str(REPO / "tools" / "real_split.py"), "--scene", str(STRECHA_FOUNTAIN),
                          "--out", str(out), "--extend"], capture_output=True, text=True, timeout=900,
                         env={**os.environ, "TQDM_DISABLE": "1"}, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    extended = load_map(out / "extended.npz")
    _, truth = load_tum(out / "query" / "poses.tum")
    placed = {name.split("/")[1]: invert(extended.cam_from_world(i))
              for i, name in enumerate(extended.image_names) if name.startswith("session1/")}
    names = sorted(p.name for p in (out / "query" / "images").iterdir())
    assert sorted(placed) == names, "every odd photo is placed"
    errors = [np.linalg.norm(placed[name][:3, 3] - truth[k][:3, 3]) for k, name in enumerate(names)]
    assert np.median(errors) <= 0.02 and max(errors) <= 0.05, errors
