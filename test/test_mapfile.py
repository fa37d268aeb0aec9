"""The map file: round trips, fingerprints, and clear one-line refusals of bad files."""

from __future__ import annotations

import dataclasses
import zipfile

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pram_ros.mapping.mapfile import (
    ARRAY_NAMES,
    MAP_FORMAT,
    MAP_VERSION,
    MapFileError,
    PramMap,
    load_map,
    map_fingerprint,
    save_map,
    to_npz_arrays,
)
from pram_ros.mapping.mapinfo import describe_map
from pram_ros.mapping.mapvalidate import validate

NUM_IMAGES, NUM_POINTS, DIM, NUM_LANDMARKS = 12, 300, 64, 5


def make_map(seed: int = 0) -> PramMap:
    """A small, consistent map: points clustered around K centres, each seen by 2-5 images."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-5, 5, size=(NUM_LANDMARKS, 3))
    landmark = rng.integers(1, NUM_LANDMARKS + 1, size=NUM_POINTS).astype(np.int32)
    landmark[:NUM_LANDMARKS] = np.arange(1, NUM_LANDMARKS + 1)  # no empty landmark
    xyz = (centres[landmark - 1] + rng.normal(scale=0.5, size=(NUM_POINTS, 3))).astype(np.float32)
    observers = [np.sort(rng.choice(NUM_IMAGES, size=rng.integers(2, 6), replace=False))
                 for _ in range(NUM_POINTS)]
    obs_offsets = np.concatenate([[0], np.cumsum([len(o) for o in observers])]).astype(np.int64)
    vrfs = [np.unique(np.concatenate([observers[p] for p in np.flatnonzero(landmark == k)[:2]]))[:3]
            for k in range(1, NUM_LANDMARKS + 1)]
    centroid = np.stack([xyz[landmark == k].mean(0) for k in range(1, NUM_LANDMARKS + 1)]).astype(np.float32)
    extent = np.stack([np.ptp(xyz[landmark == k], axis=0) / 2 for k in range(1, NUM_LANDMARKS + 1)])
    pose = np.concatenate([Rotation.random(NUM_IMAGES, random_state=seed).as_quat(),
                           rng.normal(size=(NUM_IMAGES, 3))], axis=1)
    return PramMap(
        meta={
            "format": MAP_FORMAT,
            "version": MAP_VERSION,
            "extractor": {"name": "xfeat", "max_keypoints": 1024, "detection_threshold": None,
                          "device": "auto", "root_sift": True, "preset": "xfeat", "descriptor_dim": DIM},
            "build": {"num_landmarks": NUM_LANDMARKS, "vrf": {"max_per_landmark": 3}, "prune_radius_px": 2.0},
            "stats": {"full_reconstruction_bytes": 2_000_000},
            "image_names": [f"frame_{i:04d}.png" for i in range(NUM_IMAGES)],
            "source": {"images": "/data/images"},
        },
        camera_params=np.array([[500.0, 500.0, 319.5, 239.5]]),
        camera_size=np.array([[640, 480]], dtype=np.int32),
        image_camera=np.zeros(NUM_IMAGES, dtype=np.int32),
        image_cam_from_world=pose,
        point_xyz=xyz,
        point_descriptor=rng.normal(size=(NUM_POINTS, DIM)).astype(np.float16),
        point_landmark=landmark,
        point_error_px=rng.uniform(0.1, 2.0, size=NUM_POINTS).astype(np.float32),
        point_obs_offsets=obs_offsets,
        point_obs_images=np.concatenate(observers).astype(np.int32),
        landmark_centroid=centroid,
        landmark_extent=extent.astype(np.float32),
        landmark_vrf_offsets=np.concatenate([[0], np.cumsum([len(v) for v in vrfs])]).astype(np.int64),
        landmark_vrf_images=np.concatenate(vrfs).astype(np.int32),
    )


@pytest.fixture
def pram_map() -> PramMap:
    return make_map()


@pytest.fixture
def map_path(tmp_path, pram_map):
    path = tmp_path / "map.npz"
    save_map(pram_map, path)
    return path


def members_of(pram_map: PramMap) -> dict:
    """Copies of the archive members, to damage freely."""
    return {name: array.copy() for name, array in to_npz_arrays(pram_map).items()}


def write_members(path, members: dict) -> None:
    """Write an npz exactly as given, bypassing save_map's validation."""
    with open(path, "wb") as handle:
        np.savez(handle, **members)


def assert_refused(path, *words: str) -> str:
    with pytest.raises(MapFileError) as info:
        load_map(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: "), message
    for word in words:
        assert word in message, message
    return message


def test_round_trip_keeps_every_array_and_meta(pram_map, map_path):
    loaded = load_map(map_path)
    for name in ARRAY_NAMES:
        original, back = getattr(pram_map, name), getattr(loaded, name)
        assert back.dtype == original.dtype, name
        np.testing.assert_array_equal(back, original, err_msg=name)
    assert loaded.meta == pram_map.meta
    assert map_fingerprint(map_path) == map_fingerprint(pram_map) == map_fingerprint(loaded)


def test_save_returns_size_and_keeps_name(tmp_path, pram_map):
    path = tmp_path / "sub" / "office.pram"
    size = save_map(pram_map, path)
    assert path.is_file() and size == path.stat().st_size
    assert not (tmp_path / "sub" / "office.pram.npz").exists()
    assert load_map(path).num_points == NUM_POINTS


def test_fingerprint_changes_with_one_descriptor(pram_map):
    before = map_fingerprint(pram_map)
    pram_map.point_descriptor[7, 3] += np.float16(0.5)
    assert map_fingerprint(pram_map) != before


def test_helpers(pram_map):
    m = pram_map
    assert (m.num_points, m.num_landmarks, m.num_images, m.descriptor_dim) == (
        NUM_POINTS, NUM_LANDMARKS, NUM_IMAGES, DIM)
    assert m.extractor["name"] == "xfeat"
    assert m.extractor_config() == {"name": "xfeat", "max_keypoints": 1024, "detection_threshold": None,
                                    "device": "auto", "root_sift": True}  # ExtractorConfig.from_dict's input
    first_observers = m.point_obs_images[m.point_obs_offsets[0]:m.point_obs_offsets[1]]
    assert np.array_equal(m.point_observers(0), first_observers)
    k = int(m.point_landmark[0])
    assert set(m.vrfs_observing(0)) == set(m.point_observers(0)) & set(m.landmark_vrfs(k))
    assert 0 in m.landmark_points(k) and np.all(m.point_landmark[m.landmark_points(k)] == k)
    assert m.K(0)[0, 2] == 319.5 and m.K(0)[2, 2] == 1.0
    cam_from_world = m.cam_from_world(3)
    np.testing.assert_allclose(cam_from_world[:3, :3] @ cam_from_world[:3, :3].T, np.eye(3), atol=1e-9)
    np.testing.assert_allclose(cam_from_world[:3, 3], m.image_cam_from_world[3, 4:])
    arrays_bytes = sum(a.nbytes for a in m.arrays().values())
    assert arrays_bytes < m.nbytes() < arrays_bytes + 2000
    with pytest.raises(IndexError):
        m.landmark_vrfs(0)


def test_describe_mentions_counts_and_percentage(pram_map, map_path):
    text = describe_map(pram_map, map_path)
    assert f"{NUM_POINTS}" in text and f"landmarks:   {NUM_LANDMARKS}" in text
    assert f"{NUM_IMAGES} registered database images" in text
    assert "xfeat (preset xfeat)" in text and "64-d" in text and "float16" in text
    assert "max_keypoints 1024" in text
    percent = 100 * map_path.stat().st_size / 2_000_000
    assert f"{percent:.1f}% of the full reconstruction" in text
    assert "prune_radius_px: 2.0" in text and "vrf.max_per_landmark: 3" in text
    assert "% of the full" in describe_map(pram_map)  # in-memory size without a path


def test_truncated_file(tmp_path, map_path):
    data = map_path.read_bytes()
    path = tmp_path / "half.npz"
    path.write_bytes(data[: len(data) // 2])
    assert_refused(path, "truncated or corrupt")


def test_damaged_member(tmp_path, map_path):
    data = bytearray(map_path.read_bytes())
    with zipfile.ZipFile(map_path) as archive:
        info = archive.getinfo("point_descriptor.npy")
    data[info.header_offset + 200] ^= 0xFF  # inside the member's data: CRC mismatch
    path = tmp_path / "damaged.npz"
    path.write_bytes(bytes(data))
    assert_refused(path, "point_descriptor", "corrupt")


def test_text_png_random_empty_missing(tmp_path):
    text = tmp_path / "map.npz"
    text.write_text("timestamp tx ty tz qx qy qz qw\n")
    assert_refused(text, "not a pram_ros map", "text file")
    png = tmp_path / "image.npz"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert_refused(png, "PNG")
    noise = tmp_path / "noise.npz"
    noise.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert_refused(noise, "not a pram_ros map")
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    assert_refused(empty, "empty")
    assert_refused(tmp_path / "absent.npz", "no such map file")
    assert_refused(tmp_path, "directory")


def test_wrong_version_and_format(tmp_path, pram_map):
    pram_map.meta["version"] = 2
    path = tmp_path / "v2.npz"
    write_members(path, members_of(pram_map))
    message = assert_refused(path)
    assert message == f"{path}: map version 2 is not supported by this pram_ros (expects 1); rebuild the map"
    pram_map.meta.update(version=MAP_VERSION, format="someone.else")
    write_members(path, members_of(pram_map))
    assert_refused(path, "format", "someone.else", MAP_FORMAT)


def test_foreign_npz_missing_and_extra_arrays(tmp_path, pram_map):
    path = tmp_path / "foreign.npz"
    write_members(path, {"weights": np.zeros(3)})
    assert_refused(path, "meta_json", "weights")
    members = members_of(pram_map)
    del members["landmark_extent"]
    write_members(path, members)
    assert_refused(path, "missing", "landmark_extent")
    members = members_of(pram_map)
    members["global_descriptors"] = np.zeros((NUM_IMAGES, 8), np.float32)
    write_members(path, members)
    assert_refused(path, "unexpected", "global_descriptors")


def test_wrong_dtype(tmp_path, pram_map):
    members = members_of(pram_map)
    members["point_descriptor"] = members["point_descriptor"].astype(np.float32)
    path = tmp_path / "f32.npz"
    write_members(path, members)
    message = assert_refused(path)
    assert message.endswith(
        f"point_descriptor: expected float16 [P x D] with P={NUM_POINTS}, got float32 ({NUM_POINTS}, {DIM})")


def test_wrong_shape(tmp_path, pram_map):
    members = members_of(pram_map)
    members["point_landmark"] = members["point_landmark"][:-1]
    path = tmp_path / "short.npz"
    write_members(path, members)
    assert_refused(path, "point_landmark", f"P={NUM_POINTS}", f"({NUM_POINTS - 1},)")


def test_nan_points(tmp_path, pram_map):
    members = members_of(pram_map)
    members["point_xyz"][:12, 1] = np.nan
    path = tmp_path / "nan.npz"
    write_members(path, members)
    assert assert_refused(path).endswith("point_xyz: 12 NaN values")


def test_out_of_range_landmark_id(tmp_path, pram_map):
    members = members_of(pram_map)
    members["point_landmark"][40] = NUM_LANDMARKS + 1
    path = tmp_path / "lm.npz"
    write_members(path, members)
    assert_refused(path, "point_landmark", f"1..K={NUM_LANDMARKS}", "index 40")
    members["point_landmark"][40] = 0
    write_members(path, members)
    assert_refused(path, "point_landmark", "(first: 0 at")


def test_bad_offsets_and_indices(tmp_path, pram_map):
    path = tmp_path / "bad.npz"
    members = members_of(pram_map)
    members["point_obs_offsets"][5], members["point_obs_offsets"][6] = 10**6, 3
    write_members(path, members)
    assert_refused(path, "point_obs_offsets", "decrease")
    members = members_of(pram_map)
    members["landmark_vrf_offsets"][-1] -= 1
    write_members(path, members)
    assert_refused(path, "landmark_vrf_offsets", "last offset", "len(landmark_vrf_images)")
    members = members_of(pram_map)
    members["point_obs_images"][3] = NUM_IMAGES
    write_members(path, members)
    assert_refused(path, "point_obs_images", f"I={NUM_IMAGES}")
    members = members_of(pram_map)
    members["image_camera"][0] = 1
    write_members(path, members)
    assert_refused(path, "image_camera", "C=1")


def test_non_unit_quaternion_and_descriptor_dim(tmp_path, pram_map):
    path = tmp_path / "bad.npz"
    members = members_of(pram_map)
    members["image_cam_from_world"][2, :4] *= 1.01
    write_members(path, members)
    assert_refused(path, "image_cam_from_world", "unit length")
    pram_map.meta["extractor"]["descriptor_dim"] = 128
    write_members(path, members_of(pram_map))
    assert_refused(path, "descriptor_dim", "128", f"D={DIM}")


def test_pickle_bearing_npz(tmp_path, pram_map):
    members = members_of(pram_map)
    members["point_xyz"] = np.array([{"run": "code"}] * NUM_POINTS, dtype=object)
    path = tmp_path / "pickle.npz"
    write_members(path, members)
    assert_refused(path, "point_xyz", "pickled")


def test_save_refuses_invalid_map_and_leaves_nothing(tmp_path, pram_map):
    bad = dataclasses.replace(pram_map, point_xyz=pram_map.point_xyz.astype(np.float64))
    with pytest.raises(MapFileError, match="point_xyz: expected float32"):
        save_map(bad, tmp_path / "map.npz")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(MapFileError, match=r"^<memory>: point_xyz"):
        validate(bad)


def test_failed_write_leaves_no_temp_file(tmp_path, pram_map, monkeypatch):
    def broken_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_map(pram_map, tmp_path / "map.npz")
    assert list(tmp_path.iterdir()) == []
