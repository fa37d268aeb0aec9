"""Per-frame log of the Localizer on a demo-world sequence: state, inliers, landmarks,
error against ground truth and the reason for LOST, one line per frame.

    .venv/bin/python tools/frame_log.py --map demo/map.npz --sequence demo/world/query_lighting

`pram eval` gives the totals; this shows which frames make them (ok: within 5 cm/5 deg,
WRONG: reported with an error over 0.5 m or 5 deg, off: in between).
"""

import argparse
import logging
from pathlib import Path

from pram_ros.evaluation.metrics import WRONG_R_DEG, WRONG_T_M, pose_errors
from pram_ros.io.imageset import images_from_folder
from pram_ros.io.tum import load_tum
from pram_ros.localization import load_localizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--map", type=Path, required=True)
    parser.add_argument("--sequence", type=Path, required=True, help="folder with images/ and poses.tum")
    parser.add_argument("--no-tracking", action="store_true", help="relocalize every frame (pram-reloc)")
    parser.add_argument("--step", type=int, default=1, help="every N-th frame (a slower camera)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    localizer = load_localizer(args.map, method="pram-reloc" if args.no_tracking else "pram", num_threads=args.threads)
    images = images_from_folder(args.sequence / "images", None, args.sequence / "poses.tum")
    stamps_ns, _ = load_tum(args.sequence / "poses.tum")  # the jump tests allow motion by time
    counts = {"ok": 0, "off": 0, "WRONG": 0, "LOST": 0}
    for index, rgb in images.frames():
        if index % args.step:
            continue
        result = localizer.process(rgb, int(stamps_ns[index]))
        line = (f"{index:4d} {result.state.name:11s} inliers {result.num_inliers:4d}/{result.num_candidates:4d} "
                f"landmarks {result.landmark_ids[:4].tolist()}")
        if result.localized:
            dt, dr = pose_errors(result.world_from_cam, images.world_from_cam[index])
            tag = "ok" if dt < 0.05 and dr < 5.0 else "WRONG" if dt > WRONG_T_M or dr > WRONG_R_DEG else "off"
            line += f" {100 * dt:6.1f} cm {dr:6.2f} deg {tag}"
        else:
            tag = "LOST"
            line += f" {result.message}"
        counts[tag] += 1
        print(f"{line} ({result.timings_ms.get('total_ms', 0.0):.0f} ms)")
    total = sum(counts.values())
    print(f"{args.sequence.name}: {total} frames, " + ", ".join(f"{k} {v} ({v / max(total, 1):.3f})"
                                                              for k, v in counts.items()))


if __name__ == "__main__":
    main()
