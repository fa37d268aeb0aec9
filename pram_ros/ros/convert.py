"""numpy -> ROS messages, for the node (cv_bridge and sensor_msgs_py are not installable here).

Images in are decoded by `io.image_msgs.decode_image` (the same for bags and live
messages); rgb8 out. Point clouds: xyz + packed rgb. Markers: the map's landmarks as boxes
with labels, colored by id.
"""

from __future__ import annotations

import cv2
import numpy as np
from geometry_msgs.msg import Point, PoseWithCovarianceStamped
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from pram_ros.ros.tf import pose_msg_from_matrix
from pram_ros.viewer.colors import landmark_rgb, landmark_rgb8

def rgb8_msg(header: Header, rgb: np.ndarray) -> Image:
    msg = Image(header=header, height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", is_bigendian=0,
                step=rgb.shape[1] * 3)
    msg.data = np.ascontiguousarray(rgb, np.uint8).tobytes()
    return msg


def pose_with_covariance_msg(header: Header, world_from_x: np.ndarray | None,
                             covariance: np.ndarray) -> PoseWithCovarianceStamped:
    """`world_from_x` None: the identity pose, which only means anything with its (large) covariance."""
    msg = PoseWithCovarianceStamped(header=header)
    msg.pose.pose = pose_msg_from_matrix(np.eye(4) if world_from_x is None else world_from_x)
    msg.pose.covariance = [float(v) for v in np.asarray(covariance, np.float64).reshape(36)]
    return msg


def landmark_color(landmark: int, alpha: float = 1.0) -> ColorRGBA:
    """A distinct, stable color per landmark id (0, background, is gray): viewer/colors.py's."""
    r, g, b = landmark_rgb(landmark)
    return ColorRGBA(r=r, g=g, b=b, a=alpha)


def _box(header: Header, ns: str, landmark: int, centroid: np.ndarray, extent: np.ndarray, alpha: float) -> Marker:
    box = Marker(header=header, ns=ns, id=landmark, type=Marker.CUBE, action=Marker.ADD)
    box.pose.position = Point(x=float(centroid[0]), y=float(centroid[1]), z=float(centroid[2]))
    box.pose.orientation.w = 1.0
    box.scale.x, box.scale.y, box.scale.z = (float(max(v, 0.05)) for v in extent)
    box.color = landmark_color(landmark, alpha)
    return box


def landmark_markers(header: Header, centroids: np.ndarray, extents: np.ndarray) -> MarkerArray:
    """One translucent box (centroid, extent) and one label per landmark; ids are landmark ids."""
    markers = MarkerArray()
    for index, (centroid, extent) in enumerate(zip(centroids, extents)):
        landmark = index + 1
        box = _box(header, "landmarks", landmark, centroid, extent, 0.25)
        label = Marker(header=header, ns="landmark_ids", id=landmark, type=Marker.TEXT_VIEW_FACING,
                       action=Marker.ADD, text=str(landmark))
        label.pose.position = Point(x=float(centroid[0]), y=float(centroid[1]),
                                    z=float(centroid[2] + 0.5 * max(extent[2], 0.05) + 0.1))
        label.pose.orientation.w = 1.0
        label.scale.z = 0.2
        label.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
        markers.markers += [box, label]
    return markers


def recognized_markers(header: Header, landmark_ids: np.ndarray, centroids: np.ndarray,
                       extents: np.ndarray) -> MarkerArray:
    """This frame's landmarks, opaque; the first marker clears the previous frame's."""
    markers = MarkerArray()
    markers.markers.append(Marker(header=header, ns="recognized", action=Marker.DELETEALL))
    for landmark in landmark_ids:
        landmark = int(landmark)
        if not 1 <= landmark <= len(centroids):
            continue
        markers.markers.append(_box(header, "recognized", landmark, centroids[landmark - 1],
                                    extents[landmark - 1], 0.7))
    return markers


def point_cloud_msg(header: Header, xyz: np.ndarray, rgb: np.ndarray) -> PointCloud2:
    """x, y, z float32 and rgb packed into a float32, the layout RViz colors by."""
    count = len(xyz)
    packed = np.zeros(count, dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<u4")])
    packed["x"], packed["y"], packed["z"] = (np.asarray(xyz[:, i], np.float32) for i in range(3))
    rgb = np.asarray(rgb, np.uint32)
    packed["rgb"] = (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]
    fields = [PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
              for i, name in enumerate(("x", "y", "z", "rgb"))]
    msg = PointCloud2(header=header, height=1, width=count, fields=fields, is_bigendian=False, point_step=16,
                      row_step=16 * count, is_dense=True)
    msg.data = packed.tobytes()
    return msg


def debug_rgb(image: np.ndarray, keypoints_uv: np.ndarray, keypoint_landmarks: np.ndarray,
              inliers_uv: np.ndarray, caption: str) -> np.ndarray:
    """Keypoints colored by recognized landmark (gray background, white unknown), inliers ringed green."""
    if image.ndim == 2:
        gray = image if image.dtype == np.uint8 else (image >> 8).astype(np.uint8)
        canvas = np.repeat(gray[:, :, None], 3, axis=2)
    else:
        canvas = image.copy()
    canvas = np.ascontiguousarray(canvas)
    colors = landmark_rgb8(np.asarray(keypoint_landmarks, np.int64))
    for (u, v), color in zip(np.asarray(keypoints_uv), colors):
        cv2.circle(canvas, (int(round(u)), int(round(v))), 2, tuple(int(c) for c in color), -1, cv2.LINE_AA)
    for u, v in np.asarray(inliers_uv):
        cv2.circle(canvas, (int(round(u)), int(round(v))), 5, (0, 255, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, caption, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 0), 1, cv2.LINE_AA)
    return canvas
