"""The landmark recognizer on small rendered worlds: real XFeat features, real maps, real training."""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch

from pram_ros.features import Features
from pram_ros.io.imageset import images_from_folder
from pram_ros.mapping.build import MapBuildConfig, build_map
from pram_ros.mapping.mapfile import load_map, save_map
from pram_ros.recognition.dataset import (
    IGNORE,
    LabelConfig,
    build_training_set,
    database_images,
    label_keypoints,
    label_space,
)
from pram_ros.recognition.evaluate import evaluate_sequence
from pram_ros.recognition.model import Recognizer, RecognizerConfig, RecognizerNet
from pram_ros.recognition.modelfile import ModelFileError, load_model, save_model
from pram_ros.recognition.train import TrainConfig, train, train_and_save, train_on_maps
from pram_ros.world.generate import WorldConfig, generate_world

from conftest import REPO

# Short runs: enough to learn a one-room map, seconds on two cores. Held-out frames are
# interleaved here: a 40-frame map has no unseen stretch the model could generalize to.
QUICK = dict(epochs=6, batch_size=4, min_tokens=256, max_tokens=512, val_chunk=1, val_fraction=0.2)


BUILD_FEATURES: dict[int, dict[str, Features]] = {}  # seed -> the map build's features by image name


def _world_map(tmp_path_factory, seed: int):
    out = tmp_path_factory.mktemp(f"recognition_world_{seed}") / "world"
    generate_world(out, WorldConfig(seed=seed, rooms=1, frames=40, query_frames=12,
                                    sequences=("mapping", "query_offpath"), write_bags=False))
    images = images_from_folder(out / "mapping" / "images", poses_tum=out / "mapping" / "poses.tum")
    BUILD_FEATURES[seed] = {}
    pram_map, _ = build_map(images, MapBuildConfig(), keep_features=BUILD_FEATURES[seed])
    path = out.parent / "map.npz"
    save_map(pram_map, path)
    return out, path


@pytest.fixture(scope="module")
def world_a(tmp_path_factory):
    return _world_map(tmp_path_factory, seed=5)


@pytest.fixture(scope="module")
def world_b(tmp_path_factory):
    return _world_map(tmp_path_factory, seed=6)


@pytest.fixture(scope="module")
def training_set_a(world_a):
    _, map_path = world_a
    pram_map = load_map(map_path)
    scenes = label_space([pram_map], ["a"])
    return build_training_set([pram_map], [database_images(pram_map)], scenes, LabelConfig())


def test_training_reuses_the_map_builds_features(world_a, training_set_a):
    """The map build's features of the recorded images are what training would extract:
    reused, the training set is the same."""
    _, map_path = world_a
    pram_map = load_map(map_path)
    assert set(pram_map.image_names) <= set(BUILD_FEATURES[5])
    config = LabelConfig(photometric_variants=0, zoom_variants=0)
    extracted = build_training_set([pram_map], [database_images(pram_map)], label_space([pram_map], ["a"]), config)
    reused = build_training_set([pram_map], [database_images(pram_map)], label_space([pram_map], ["a"]), config,
                                known_features=[BUILD_FEATURES[5]])
    assert len(reused.examples) == len(extracted.examples) == pram_map.num_images
    for a, b in zip(extracted.examples, reused.examples):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
        np.testing.assert_array_equal(a.descriptors, b.descriptors)
        np.testing.assert_array_equal(a.labels, b.labels)


@pytest.fixture(scope="module")
def trained_a(training_set_a):
    return train(training_set_a, TrainConfig(**QUICK))


def _random_features(count: int, rng: np.random.Generator, dim: int = 64) -> Features:
    descriptors = rng.normal(size=(count, dim))
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    return Features(rng.uniform(0, 640, (count, 2)), descriptors, np.sort(rng.random(count))[::-1], (640, 480))


@pytest.mark.parametrize("count", [0, 1, 700, 1500])
def test_inference_shapes_and_probabilities(count):
    torch.manual_seed(0)
    recognizer = Recognizer(RecognizerNet(RecognizerConfig.from_preset("cpu", num_classes=6, descriptor_dim=64)))
    recognition = recognizer.recognize(_random_features(count, np.random.default_rng(count)))
    used = min(count, 1024)  # the default keeps the 1024 best-scoring keypoints
    assert recognition.probabilities.shape == (used, 6)
    assert recognition.labels.shape == recognition.keypoint_indices.shape == (used,)
    np.testing.assert_allclose(recognition.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert recognition.votes.shape == (6,) and recognition.votes.sum() == used
    if count == 0:
        assert len(recognition.ranked_landmarks()) == 0 and recognition.background_share == 0.0
    ranked = recognition.ranked_landmarks()
    assert np.all(np.diff(recognition.votes[ranked]) <= 0)


def test_padding_does_not_change_the_answer():
    torch.manual_seed(0)
    net = RecognizerNet(RecognizerConfig.from_preset("cpu", num_classes=4, descriptor_dim=8)).eval()
    descriptors, positions = torch.randn(2, 50, 8), torch.rand(2, 50, 2)
    valid = torch.ones(2, 50, dtype=torch.bool)
    valid[1, 30:] = False
    with torch.inference_mode():
        batched = net(descriptors, positions, valid)
        alone = net(descriptors[1:, :30], positions[1:, :30])
    torch.testing.assert_close(batched[1, :30], alone[0], atol=1e-4, rtol=1e-4)


def test_wrong_descriptor_size_is_refused():
    recognizer = Recognizer(RecognizerNet(RecognizerConfig.from_preset("cpu", num_classes=3, descriptor_dim=64)))
    with pytest.raises(ValueError, match="128-d"):
        recognizer.recognize(_random_features(10, np.random.default_rng(0), dim=128))


def test_keypoint_labels_near_far_and_ignored():
    points = np.array([[100.0, 100.0], [300.0, 300.0]])
    keypoints = np.array([[101.0, 100.0], [300.0, 305.0], [110.0, 100.0], [500.0, 50.0]])
    labels = label_keypoints(keypoints, points, np.array([3, 7]), near_px=6.0, far_px=20.0)
    assert labels.tolist() == [3, 7, IGNORE, 0]


def test_training_labels_come_from_the_map(training_set_a):
    counts = training_set_a.label_counts()
    assert counts[0] > 0 and np.count_nonzero(counts[1:]) == training_set_a.num_classes - 1
    # One recorded image plus its photometric and zoomed variants per database image.
    assert len(training_set_a.examples) == 3 * 40
    recorded = [e for e in training_set_a.examples if e.variant == 0]
    assert sum(len(e.visible) >= 1 for e in recorded) >= 0.5 * len(recorded)


def test_short_training_learns_and_beats_majority_class(trained_a):
    net, report = trained_a
    assert report.val_frames >= 5
    assert report.val_loss[-1] < report.val_loss[0], report.val_loss
    # Balanced over classes: the class-weighted loss trades background accuracy for landmarks,
    # and always answering "background" scores 1 / (number of classes) here.
    majority = report.majority_baseline["balanced_accuracy"]
    accuracy = report.val_metrics["balanced_accuracy"]
    assert accuracy >= majority + 0.15, f"balanced accuracy {accuracy} vs majority class {majority}"


def test_same_seed_same_weights(training_set_a):
    config = TrainConfig(**{**QUICK, "epochs": 1})
    first, _ = train(training_set_a, config)
    second, _ = train(training_set_a, config)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    third, _ = train(training_set_a, TrainConfig(**{**QUICK, "epochs": 1, "seed": 1}))
    assert not torch.equal(first.head.weight, third.head.weight)


def test_save_load_and_reject_other_maps(trained_a, training_set_a, world_a, world_b, tmp_path):
    net, report = trained_a
    _, map_path = world_a
    pram_map = load_map(map_path)
    path = save_model(tmp_path / "a.recognizer.safetensors", net, training_set_a.scenes, pram_map.meta["extractor"],
                      {"report": report.to_dict()})
    model = load_model(path, [(str(map_path), pram_map)])
    features = _random_features(300, np.random.default_rng(1))
    np.testing.assert_allclose(model.recognizer.recognize(features).probabilities,
                               Recognizer(net).recognize(features).probabilities, atol=1e-6)

    _, other_path = world_b
    with pytest.raises(ModelFileError, match="trained on another map"):
        load_model(path, [(str(other_path), load_map(other_path))])
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelFileError, match="truncated.safetensors"):
        load_model(truncated)
    with pytest.raises(ModelFileError, match="not a pram_ros recognizer|not a readable"):
        load_model(map_path)  # an npz, not a model
    tiny = tmp_path / "tiny.safetensors"
    tiny.write_bytes(b"\x01\x02")
    with pytest.raises(ModelFileError, match="truncated"):
        load_model(tiny)


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_recognizer_on_a_cpu_runtime_agrees_with_torch(trained_a, world_a, runtime):
    """On a query's real XFeat features, the exported recognizer labels keypoints as torch
    does (OpenVINO in bf16 where the CPU computes it: top-1 agreement >= 0.99)."""
    from pram_ros.features import ExtractorConfig, create_extractor

    net, _ = trained_a
    world, map_path = world_a
    extractor = create_extractor(ExtractorConfig.from_dict(load_map(map_path).extractor_config()))
    on_torch, on_runtime = Recognizer(net), Recognizer(net, runtime=runtime)
    assert (on_torch.runtime, on_runtime.runtime) == ("torch", runtime)
    images = images_from_folder(world / "query_offpath" / "images")
    agree = total = 0
    for _, rgb in images.frames():
        features = extractor.extract(rgb)
        a, b = on_torch.recognize(features), on_runtime.recognize(features)
        assert len(a.labels) == len(b.labels) == min(len(features), net.config.max_keypoints)
        agree += int((a.labels == b.labels).sum())
        total += len(a.labels)
        if on_runtime.precision == "f32":
            np.testing.assert_allclose(b.probabilities, a.probabilities, atol=1e-3)
    assert total > 5000 and agree / total >= 0.99, agree / total
    assert len(on_runtime.recognize(_random_features(1, np.random.default_rng(0))).labels) == 1  # any count


def test_recognizer_falls_back_to_torch_without_a_cpu_runtime(trained_a, monkeypatch, caplog):
    net, _ = trained_a
    monkeypatch.setitem(sys.modules, "openvino", None)  # import fails as if not installed
    assert Recognizer(net, runtime="auto").runtime == "onnxruntime"
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with caplog.at_level("INFO", logger="pram_ros.recognition.model"):
        recognizer = Recognizer(net, runtime="auto")
    assert recognizer.runtime == "torch"
    assert "the recognizer runs on torch: openvino is not installed" in caplog.text
    features = _random_features(50, np.random.default_rng(2))
    np.testing.assert_array_equal(recognizer.recognize(features).labels, Recognizer(net).recognize(features).labels)
    with pytest.raises(RuntimeError, match="the recognizer on openvino"):
        Recognizer(net, runtime="openvino")


def test_map_set_recognizes_the_scene(world_a, world_b):
    maps = [(str(path), load_map(path)) for _, path in (world_a, world_b)]
    net, report, scenes, _ = train_on_maps(maps, config=TrainConfig(**{**QUICK, "epochs": 12}))
    assert [s.label_offset for s in scenes] == [0, maps[0][1].num_landmarks]
    from pram_ros.features import ExtractorConfig, create_extractor

    extractor = create_extractor(ExtractorConfig.from_dict(maps[0][1].extractor_config()))
    scene_hits = scene_frames = 0
    for index, (world, _) in enumerate((world_a, world_b)):
        query = world / "query_offpath"
        summary = evaluate_sequence(Recognizer(net), extractor, scenes, index, maps[index][1], query / "images",
                                    query / "poses.tum")
        # Two one-room worlds and a short run: far from perfect, far from chance (0.5).
        assert summary["top3_recall"] >= 0.6, summary
        frames = summary["frames"] - summary["frames_without_landmark"]
        scene_hits += round(summary["scene_accuracy"] * frames)
        scene_frames += frames
    assert scene_hits / scene_frames >= 0.7, f"scene accuracy {scene_hits}/{scene_frames}"


def test_cli_train_and_eval(world_a, tmp_path):
    world, map_path = world_a
    model_path = tmp_path / "model.safetensors"
    train_cli = [sys.executable, "-m", "pram_ros.cli", "train", "--map", str(map_path), "--epochs", "1",
                 "--out", str(model_path)]
    result = subprocess.run(train_cli, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote" in result.stdout and model_path.is_file()
    again = subprocess.run(train_cli, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "--overwrite" in again.stderr

    query = world / "query_offpath"
    result = subprocess.run([sys.executable, "-m", "pram_ros.cli", "eval", "--stage", "recognition", "--map",
                             str(map_path), "--model", str(model_path), "--images", str(query / "images"),
                             "--out", str(tmp_path / "report")], cwd=REPO, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "report" / "recognition.json").read_text())
    assert report["frames"] == 12 and not report["unmapped"]
    for key in ("top3_recall", "landmark_accuracy", "background_precision", "background_recall"):
        assert 0.0 <= report[key] <= 1.0, key
    assert set(report["background_share"]) == {"mean", "p10", "p50", "p90"}


def test_training_warns_when_the_recognizer_does_not_beat_the_majority_class(world_a, tmp_path, caplog):
    """Landmarks that do not fit the data (here each point's landmark shuffled, so a landmark
    is no place) give a recognizer no better than always answering the commonest class:
    training says so, and what to change, instead of writing a useless model silently."""
    _, map_path = world_a
    good = load_map(map_path)
    summary = train_and_save([("a", good)], None, tmp_path / "good.safetensors", TrainConfig(**QUICK))
    assert "WARNING" not in summary, summary
    shuffled = copy.deepcopy(good)
    shuffled.point_landmark = np.random.default_rng(0).permutation(good.point_landmark)
    with caplog.at_level(logging.WARNING):
        summary = train_and_save([("a", shuffled)], None, tmp_path / "bad.safetensors", TrainConfig(**QUICK))
    assert "does not beat always answering the majority class" in summary and "--landmarks" in summary, summary
    assert any("majority class" in record.getMessage() for record in caplog.records)
    assert tmp_path.joinpath("bad.safetensors").is_file()  # written, but flagged

