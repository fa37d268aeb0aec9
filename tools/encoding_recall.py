#!/usr/bin/env python3
"""Does every image encoding localize like rgb8? Each image of a sequence is encoded as a
camera driver would publish it (every sensor_msgs/Image encoding pram_ros decodes, and
CompressedImage JPEG and PNG), decoded by pram_ros.io.image_msgs (what the node and
`pram localize --bag` use), and localized; one row per encoding: localized ratio, recall at
5 cm/5 deg and its difference from rgb8. The encoders are the tests' (test/test_image_msgs.py),
written independently of the decoder.

    TQDM_DISABLE=1 .venv/bin/python tools/encoding_recall.py --map demo/map.npz --sequence demo/world/query_offpath
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
from rosbags.typesys import Stores, get_typestore

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "test"))

from test_image_msgs import encoded, image_message  # noqa: E402

from pram_ros.evaluation.metrics import sequence_metrics  # noqa: E402
from pram_ros.io.image_msgs import IMAGE_ENCODINGS, decode_image  # noqa: E402
from pram_ros.io.imageset import images_from_folder  # noqa: E402
from pram_ros.io.tum import load_tum  # noqa: E402
from pram_ros.localization import load_localizer  # noqa: E402

TYPES = get_typestore(Stores.ROS2_JAZZY).types


def _message(rgb, encoding: str):
    if encoding in ("jpeg", "png"):
        data = cv2.imencode(".jpg" if encoding == "jpeg" else ".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1]
        return TYPES["sensor_msgs/msg/CompressedImage"](
            header=TYPES["std_msgs/msg/Header"](stamp=TYPES["builtin_interfaces/msg/Time"](sec=0, nanosec=0),
                                                frame_id="camera"),
            format=f"rgb8; {encoding} compressed bgr8", data=data.ravel())
    return image_message(encoding, encoded(encoding, rgb))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--map", required=True)
    parser.add_argument("--sequence", required=True, help="folder with images/, poses.tum and camera.yaml")
    parser.add_argument("--encodings", nargs="*", default=["rgb8", *[e for e in IMAGE_ENCODINGS if e != "rgb8"],
                                                           "jpeg", "png"])
    args = parser.parse_args()
    sequence = Path(args.sequence)
    images = images_from_folder(sequence / "images", sequence / "camera.yaml", sequence / "poses.tum")
    stamps, truth = load_tum(sequence / "poses.tum")
    frames = list(images.frames())
    localizer = load_localizer(args.map, num_threads=2)
    localizer.set_camera(images.K, images.width, images.height)
    baseline = None
    print(f"{'encoding':<14} {'localized':>9} {'recall':>7} {'vs rgb8':>8}")
    for encoding in args.encodings:
        localizer.reset()
        estimates = []
        for index, rgb in frames:
            result = localizer.process(decode_image(_message(rgb, encoding)), int(stamps[index]))
            estimates.append(result.world_from_cam if result.localized else None)
        metrics = sequence_metrics(list(truth), estimates)
        recall = metrics["recall_5cm_5deg"]
        baseline = recall if baseline is None else baseline
        print(f"{encoding:<14} {metrics['localized_ratio']:>9.3f} {recall:>7.3f} {recall - baseline:>+8.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
