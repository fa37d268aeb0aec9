#!/usr/bin/env python3
"""Run the Localizer over a demo-world sequence and print accuracy and latency.

A stand-in until `pram eval` (issue 5) exists:
    .venv/bin/python tools/localize_sequence.py demo/map.npz demo/world/query_offpath [--no-tracking]

Prints the share of frames localized, recall at 5 cm / 5 deg, frames reported with an error
over 0.5 m or 5 deg ("wrong"), median errors, states, and p50 milliseconds per state.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from pram_ros.localization.localizer import Localizer, LocalizerConfig, State
from pram_ros.mapping.build import images_from_folder
from pram_ros.mapping.mapfile import load_map
from pram_ros.recognition.modelfile import default_model_path, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("map")
    parser.add_argument("sequence", help="a demo-world sequence folder (images/, poses.tum)")
    parser.add_argument("--model", help="recognizer (default: beside the map)")
    parser.add_argument("--no-tracking", action="store_true", help="relocalize every frame")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    pram_map = load_map(args.map)
    model = load_model(args.model or default_model_path(args.map), [(args.map, pram_map)])
    localizer = Localizer(pram_map, model.recognizer, LocalizerConfig(tracking=not args.no_tracking))
    sequence = Path(args.sequence)
    images = images_from_folder(sequence / "images", None, sequence / "poses.tum")
    states, errors_m, errors_deg, total_ms = [], [], [], []
    for index, rgb in images.frames():
        result = localizer.process(rgb, index)
        states.append(result.state)
        total_ms.append(result.timings_ms["total_ms"])
        if result.localized:
            truth = images.world_from_cam[index]
            estimate = result.world_from_cam
            errors_m.append(np.linalg.norm(estimate[:3, 3] - truth[:3, 3]))
            cos = (np.trace(estimate[:3, :3].T @ truth[:3, :3]) - 1.0) / 2.0
            errors_deg.append(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
        else:
            errors_m.append(np.nan)
            errors_deg.append(np.nan)
    states = np.array([int(s) for s in states])
    errors_m, errors_deg, total_ms = np.array(errors_m), np.array(errors_deg), np.array(total_ms)
    localized = states != State.LOST
    good = localized & (errors_m < 0.05) & (errors_deg < 5.0)
    wrong = localized & ((errors_m > 0.5) | (errors_deg > 5.0))
    print(f"{sequence.name}: {len(states)} frames, localized {localized.mean():.2f}, "
          f"recall 5 cm/5 deg {good.mean():.2f}, wrong {int(wrong.sum())}")
    if localized.any():
        print(f"  median error {np.nanmedian(errors_m) * 100:.2f} cm, {np.nanmedian(errors_deg):.2f} deg")
    for state in (State.RELOCALIZED, State.TRACKED, State.LOST):
        chosen = states == state
        if chosen.any():
            print(f"  {state.name}: {int(chosen.sum())} frames, total p50 {np.median(total_ms[chosen]):.1f} ms")


if __name__ == "__main__":
    main()
