"""`pram eval`'s report and printed lines, and `pram report`'s table: synthetic runs, no world.

A run is ground-truth poses along a line and Results made from them: some localized close
to the truth, one wrong by a metre, some LOST; and a run of a place not in the map, all LOST.
"""

from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest

from conftest import pose_on_a_line
from pram_ros.cli import main
from pram_ros.evaluation import report
from pram_ros.evaluation.report import SequenceRun, describe_metrics, load_report, summary_table, write_report
from pram_ros.localization import Result, State

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after the headless backend)

STAGES_MS = {"registration_ms": 9.0, "features_ms": 30.0, "tracking_ms": 2.0, "recognition_ms": 12.0,
             "total_ms": 55.0}


def _run(frames: int, lost: set[int], wrong: set[int] = frozenset(), node_latency: bool = False) -> SequenceRun:
    """Frame i at x = 0.1 i m; localized ones 1-4 cm and 0.2-1.5 deg off, `wrong` ones 1 m off."""
    truth = np.array([pose_on_a_line(0.1 * i) for i in range(frames)])
    results = []
    for i in range(frames):
        node = {"node_latency_ms": 120.0 + i} if node_latency else {}
        if i in lost:
            results.append(Result(i, State.LOST, timings_ms={"features_ms": 30.0, "total_ms": 31.0, **node}))
            continue
        timings = {**STAGES_MS, **node}
        offset_m = 1.0 if i in wrong else 0.01 + 0.003 * i
        estimate = pose_on_a_line(0.1 * i + offset_m, yaw_deg=0.2 + 0.13 * i)
        results.append(Result(i, State.TRACKED if i % 2 else State.RELOCALIZED, np.linalg.inv(estimate),
                              timings_ms=timings))
    return SequenceRun(np.arange(frames, dtype=np.int64) * 100_000_000, truth, results)


def _figure_texts(figure) -> list[str]:
    texts = [t.get_text() for t in figure.texts]
    for axes in figure.axes:
        texts += [axes.get_title(), *(t.get_text() for t in axes.texts)]
        if axes.get_legend():
            texts += [t.get_text() for t in axes.get_legend().get_texts()]
    return texts


def test_report_of_a_run_with_lost_frames(tmp_path):
    run = _run(10, lost={3, 7, 8}, wrong={5})
    out = tmp_path / "query_offpath"
    metrics = write_report(out, run, {"method": "pram", "images": "demo/world/query_offpath/images"})
    for plot in ("trajectory.png", "error_cdf.png", "latency.png"):
        assert (out / plot).stat().st_size > 1000, plot
    written = json.loads((out / "metrics.json").read_text())
    assert written["sequence"] == "query_offpath" and written["states"]["LOST"] == 3
    assert len((out / "trajectory.tum").read_text().splitlines()) == 7

    line = describe_metrics(metrics)
    assert line.startswith("query_offpath (pram): 7 of 10 frames localized (0.700)"), line
    assert "median" in line and "wrong 0.100" in line and "nan" not in line.lower(), line

    # Every title names the sequence and the method.
    estimates = run.estimates()
    figures = [draw(plt, run, estimates, metrics) for draw in
               (report._plot_trajectory, report._plot_error_cdf, report._plot_latency)]
    for figure in figures:
        titles = [a.get_title() for a in figure.axes] + [t.get_text() for t in figure.texts]
        assert any("query_offpath (pram)" in title for title in titles), titles
    # The LOST frames at their true positions, with a legend entry.
    trajectory = figures[0].axes[0]
    assert "LOST, true position (3)" in _figure_texts(figures[0])
    lost_line = next(line for line in trajectory.get_lines() if line.get_label().startswith("LOST"))
    np.testing.assert_allclose(lost_line.get_xdata(), run.true_world_from_cam[[3, 7, 8], 0, 3])
    # Stages in pipeline order, total last, and no node latency among them (an offline run has none).
    latency_axes = figures[2].axes
    assert len(latency_axes) == 1
    assert [t.get_text() for t in latency_axes[0].get_xticklabels()] == [
        "features", "recognition", "tracking", "registration", "total"]
    for figure in figures:
        plt.close(figure)


def _overlapping_labels(axis) -> list[str]:
    figure = axis.figure
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    low, high = axis.get_xlim()
    labels = sorted((t for t in axis.get_xticklabels(which="both")
                     if t.get_text() and t.get_visible() and low <= t.get_position()[0] <= high),
                    key=lambda t: t.get_window_extent(renderer).x0)
    return [f"{a.get_text()}|{b.get_text()}" for a, b in zip(labels, labels[1:])
            if a.get_window_extent(renderer).x1 > b.get_window_extent(renderer).x0]


@pytest.mark.parametrize("max_error_deg", [1.5, 40.0])
def test_error_cdf_tick_labels_do_not_overlap(max_error_deg):
    # Rotation errors within a decade are where matplotlib's default log ticks overlap.
    run = _run(10, lost={2})
    for i, result in enumerate(run.results):
        if result.localized:
            yaw_deg = 0.2 + (max_error_deg - 0.2) * i / 9
            result.cam_from_world = np.linalg.inv(pose_on_a_line(0.1 * i + 0.01 * (i + 1), yaw_deg))
    metrics = report.sequence_metrics(run.true_world_from_cam, run.estimates())
    figure = report._plot_error_cdf(plt, run, run.estimates(), {**metrics, "sequence": "s"})
    for axis in figure.axes:
        assert len([t for t in axis.get_xticklabels() if t.get_text()]) >= 2, axis.get_xlabel()
        assert not _overlapping_labels(axis), (axis.get_xlabel(), _overlapping_labels(axis))
    plt.close(figure)


def test_report_of_a_place_not_in_the_map(tmp_path):
    run = _run(6, lost=set(range(6)), node_latency=True)
    info = {"method": "pram_node (live)", "bag": "demo/world/foreign/bag", "unmapped": True,
            "frames_in_bag": 6, "frames_processed": 6, "dropped_frames": 0, "not_received": 0}
    metrics = write_report(tmp_path / "foreign", run, info)
    assert metrics["sequence"] == "foreign" and metrics["median_t_m"] is None
    for plot in ("trajectory.png", "error_cdf.png", "latency.png"):
        assert (tmp_path / "foreign" / plot).stat().st_size > 1000, plot

    line = describe_metrics(metrics)
    assert "foreign (pram_node (live)): 0 of 6 frames localized (all LOST" in line, line
    assert "as expected" in line and "recall 5 cm/5 deg 0.000" in line and "nan" not in line.lower(), line
    assert "as expected" not in describe_metrics({**metrics, "unmapped": False})

    estimates = run.estimates()
    cdf = report._plot_error_cdf(plt, run, estimates, metrics)
    assert any(text.startswith("no frame localized (6 frames LOST)\nas expected") for text in _figure_texts(cdf))
    # A live run's node latency: on its own axes, beside the stages, not one of them.
    latency = report._plot_latency(plt, run, estimates, metrics)
    stages, node = latency.axes
    assert [t.get_text() for t in stages.get_xticklabels()] == ["features", "total"]
    assert node.get_title() == "node latency" and node.patches[0].get_height() == pytest.approx(122.5)
    plt.close(cdf)
    plt.close(latency)


def _live_report(folder, sequence: str, run: SequenceRun, processed: int, in_bag: int, load: float,
                 unmapped: bool = False) -> None:
    write_report(folder, run, {"method": "pram_node (live)", "bag": f"demo/world/{sequence}/bag",
                               "frames_in_bag": in_bag, "frames_processed": processed, "dropped_frames": 1,
                               "not_received": in_bag - processed - 1})
    # What `pram eval --live` adds after the run.
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics.update(load_avg_1min_start=load, load_avg_1min_end=load + 1.0, cpu_count=2, unmapped=unmapped)
    (folder / "metrics.json").write_text(json.dumps(metrics))


def test_pram_report_prints_one_table(tmp_path, capsys):
    _live_report(tmp_path / "query_offpath", "query_offpath", _run(10, lost={3}, wrong={5}), 10, 12, load=0.3)
    _live_report(tmp_path / "foreign", "foreign", _run(6, lost=set(range(6))), 6, 8, load=0.2, unmapped=True)
    assert main(["report", str(tmp_path / "query_offpath"), str(tmp_path / "foreign")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["sequence", "method", "frames"] and "processed/received" in lines[0]
    assert set(lines[1]) <= {"-", " "}
    offpath, foreign = lines[2], lines[3]
    assert offpath.startswith("query_offpath") and "9/10 0.900" in offpath and "10/11" in offpath, offpath
    assert 1.0 < float(offpath.split()[-4]) < 5.0, offpath  # the median in cm, the wrong frame aside
    assert foreign.startswith("foreign") and "0/6 0.000" in foreign and "6/7" in foreign, foreign
    assert foreign.split()[-4:-2] == ["-", "-"], foreign  # no median when nothing was localized
    assert lines[4:] == ["foreign: a place the map does not hold: every frame LOST, as expected"], lines
    assert "nan" not in "\n".join(lines).lower()  # and, on an idle machine, no warning

    # A busy machine: few frames processed, or a load above the cores: the table says so.
    _live_report(tmp_path / "busy", "query_lighting", _run(10, lost=set()), 10, 100, load=3.5)
    table = summary_table([load_report(tmp_path / "busy")])
    assert "warning: live results depend on a free CPU" in table
    assert "only 10 of 100 frames processed" in table and "load average 3.5 on 2 CPUs" in table, table


def test_pram_report_names_a_folder_without_metrics(tmp_path, caplog):
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "metrics.json" in caplog.text and str(tmp_path / "empty") in caplog.text


def test_pram_eval_without_camera_yaml_suggests_no_missing_option(tmp_path, caplog):
    images = tmp_path / "query" / "images"
    images.mkdir(parents=True)
    (images / "000000.png").write_bytes(b"")
    code = main(["eval", "--map", str(tmp_path / "map.npz"), "--images", str(images), "--out", str(tmp_path / "r")])
    assert code == 2
    assert "no camera.yaml" in caplog.text and "--camera" not in caplog.text, caplog.text
