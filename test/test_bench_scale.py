"""`pram bench --scale` end to end on a tiny world: render, map, time-boxed recognizer,
retrieval database, then every scale method in its own process; scale.json and plots."""

from __future__ import annotations

import json

from pram_ros.evaluation.scale import SCALE_METHODS, ScaleConfig, format_scale_table, prepare_world, run_scale


def test_scale_bench_one_tiny_world(tmp_path):
    # 320x240 and a 3-second recognizer keep it fast; the numbers are not the point here.
    config = ScaleConfig(rooms=(1,), frames_per_room=16, train_minutes=0.05, train_variants=False, frames_per_world=2,
                         world_overrides={"seed": 5, "query_frames": 6, "width": 320, "height": 240,
                                          "sequences": ("mapping", "query_offpath")})
    scale = run_scale(tmp_path, config)

    saved = json.loads((tmp_path / "scale.json").read_text())
    assert saved["ratios"] == scale["ratios"]
    (world,) = saved["worlds"]
    assert world["rooms"] == 1 and world["frames"] == 2 and world["map_points"] > 0
    assert world["retrieval_points"] >= world["map_points"]  # the full reconstruction the map was compressed from
    assert set(world["prepare_s"]) == {"world", "map", "recognizer", "retrieval_database"}
    assert list(world["methods"]) == list(SCALE_METHODS)
    for method, entry in world["methods"].items():
        assert entry["frames"] == 2, method
        assert 0.0 <= entry["recall_5cm_5deg"] <= 1.0 and 0.0 <= entry["wrong_ratio"] <= 1.0
        assert entry["latency_ms"]["total_ms"]["p50"] > 0 and "features_ms" in entry["latency_ms"]
        assert entry["map_bytes"] > 0 and entry["rss_bytes"] > entry["map_bytes"]
        assert entry["peak_rss_bytes"] >= entry["rss_bytes"]
    assert "recognition_ms" in world["methods"]["pram-reloc"]["latency_ms"]
    assert "retrieval_ms" in world["methods"]["retrieval"]["latency_ms"]
    # One world is both the smallest and the largest.
    assert saved["ratios"]["pram-reloc_p50_growth"] == 1.0
    assert {"pram-reloc_speedup_p50_vs_exhaustive", "pram-reloc_speedup_p50_vs_retrieval"} <= set(saved["ratios"])
    for name in ("scale_latency.png", "scale_recall.png", "scale_memory.png"):
        assert (tmp_path / name).stat().st_size > 1000, name
    table = format_scale_table(saved)
    assert "pram-reloc p50 speed-up" in table and "retrieval" in table

    # A second run reuses the world, map, recognizer and database.
    assert prepare_world(tmp_path, 1, config).prepare_s == {}
