"""The camera's odometry from a rosbag2's /tf and /tf_static.

In: a bag, the camera's frame (the images' header frame_id) and image stamps. Out:
odom_from_cam [N x 4 x 4] at those stamps (NaN where the odometry does not cover a stamp)
and the odometry frame's name, or None when no transform chain joins the camera to a
moving frame. The chain: static transforms from the camera up to the first frame that a
dynamic /tf transform moves (base_link), and that transform's parent is the odometry
frame (odom); anything above it (map -> odom, a localizer's correction) is not used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pram_ros.geometry import interpolate_transforms, transform_from_quat

logger = logging.getLogger(__name__)


@dataclass
class CameraOdometry:
    odom_from_cam: np.ndarray  # [N x 4 x 4], NaN where not covered
    odom_frame: str
    chain: str  # e.g. "odom -> base_link -> camera_optical_frame", for messages
    stamps_ns: np.ndarray  # [N] the images' stamps

    @property
    def covered(self) -> np.ndarray:
        return np.isfinite(self.odom_from_cam[:, 0, 0])


def _transform(message) -> np.ndarray:
    t, q = message.transform.translation, message.transform.rotation
    return transform_from_quat(np.array([t.x, t.y, t.z]), np.array([q.x, q.y, q.z, q.w]))


def camera_odometry(bag: Path, camera_frame: str, stamps_ns: np.ndarray, tf_topic: str = "/tf",
                    tf_static_topic: str = "/tf_static") -> CameraOdometry | None:
    from pram_ros.io.rosbag import deserialize, iter_bag_messages

    static: dict[str, tuple[str, np.ndarray]] = {}  # child -> (parent, parent_from_child)
    dynamic: dict[str, tuple[str, list[int], list[np.ndarray]]] = {}  # child -> (parent, stamps, poses)
    for topic, msgtype, _, raw in iter_bag_messages(Path(bag), [tf_topic, tf_static_topic]):
        for message in deserialize(raw, msgtype).transforms:
            parent, child = message.header.frame_id.lstrip("/"), message.child_frame_id.lstrip("/")
            if topic == tf_static_topic:
                static[child] = (parent, _transform(message))
            else:
                entry = dynamic.setdefault(child, (parent, [], []))
                if entry[0] == parent:
                    entry[1].append(message.header.stamp.sec * 1_000_000_000 + message.header.stamp.nanosec)
                    entry[2].append(_transform(message))
    frame, moving_from_cam, chain = camera_frame.lstrip("/"), np.eye(4), [camera_frame.lstrip("/")]
    while frame not in dynamic:
        if frame not in static:
            return None
        parent, parent_from_child = static[frame]
        moving_from_cam = parent_from_child @ moving_from_cam
        frame = parent
        chain.append(frame)
    odom_frame, stamps, poses = dynamic[frame]
    chain.append(odom_frame)
    order = np.argsort(stamps)
    stamps, poses = np.asarray(stamps, np.int64)[order], np.asarray(poses)[order]
    query = np.asarray(stamps_ns, np.int64)
    inside = (query >= stamps[0]) & (query <= stamps[-1])
    odom_from_cam = np.full((len(query), 4, 4), np.nan)
    if len(stamps) >= 2 and inside.any():
        odom_from_cam[inside] = interpolate_transforms(stamps, poses, query[inside]) @ moving_from_cam
    if not inside.all():
        logger.warning("%s: the odometry (%s) does not cover %d of %d images", tf_topic, " -> ".join(chain[::-1]),
                       int((~inside).sum()), len(query))
    return CameraOdometry(odom_from_cam, odom_frame, " -> ".join(chain[::-1]), np.asarray(stamps_ns, np.int64))
