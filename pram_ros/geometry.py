"""Rigid transforms as 4x4 numpy matrices, named by direction (`a_from_b` maps b to a).

Quaternions are (x, y, z, w), the ROS and TUM order; conversions go through scipy.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def make_transform(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Build a 4x4 transform from a 3x3 rotation and a translation."""
    a_from_b = np.eye(4)
    a_from_b[:3, :3] = rotation
    a_from_b[:3, 3] = translation
    return a_from_b


def transform_from_quat(translation: np.ndarray, quat_xyzw: np.ndarray) -> np.ndarray:
    """4x4 transform from a translation and an (x, y, z, w) quaternion."""
    return make_transform(Rotation.from_quat(quat_xyzw).as_matrix(), translation)


def quat_from_transform(a_from_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(translation, quaternion xyzw with w >= 0) of a 4x4 transform."""
    quat = Rotation.from_matrix(a_from_b[:3, :3]).as_quat()
    if quat[3] < 0:
        quat = -quat
    return a_from_b[:3, 3].copy(), quat


def invert(a_from_b: np.ndarray) -> np.ndarray:
    """b_from_a of a rigid 4x4 transform."""
    rotation = a_from_b[:3, :3]
    b_from_a = np.eye(4)
    b_from_a[:3, :3] = rotation.T
    b_from_a[:3, 3] = -rotation.T @ a_from_b[:3, 3]
    return b_from_a


def pose_difference(world_from_a: np.ndarray, world_from_b: np.ndarray) -> tuple[float, float]:
    """Distance between the two frames' origins (m) and the angle of the rotation between them (deg)."""
    distance = float(np.linalg.norm(world_from_a[:3, 3] - world_from_b[:3, 3]))
    cosine = (np.trace(world_from_a[:3, :3].T @ world_from_b[:3, :3]) - 1.0) / 2.0
    return distance, float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def fit_similarity(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity taking points `source` [N x 3] to `target` (Umeyama):
    target ~ scale * R @ source + t. -> (scale, R, t)."""
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    a, b = source - source_mean, target - target_mean
    u, singular, vt = np.linalg.svd(b.T @ a / len(a))
    sign = np.diag([1.0, 1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(singular) @ sign) / (a**2).sum(axis=1).mean())
    return scale, rotation, target_mean - scale * rotation @ source_mean


def yaw_transform(x: float, y: float, yaw: float) -> np.ndarray:
    """Planar transform (translation in x, y and rotation about z)."""
    return make_transform(Rotation.from_euler("z", yaw).as_matrix(), np.array([x, y, 0.0]))


def interpolate_transforms(
    stamps_ns: np.ndarray, a_from_b: np.ndarray, query_ns: np.ndarray
) -> np.ndarray:
    """Interpolate [N,4,4] transforms at query stamps: linear translation, slerp rotation.

    Query stamps must lie within [stamps_ns[0], stamps_ns[-1]].
    """
    from scipy.spatial.transform import Slerp

    times = (stamps_ns - stamps_ns[0]).astype(np.float64) * 1e-9
    query = (np.asarray(query_ns) - stamps_ns[0]).astype(np.float64) * 1e-9
    rotations = Slerp(times, Rotation.from_matrix(a_from_b[:, :3, :3]))(query).as_matrix()
    out = np.tile(np.eye(4), (len(query), 1, 1))
    out[:, :3, :3] = rotations
    for axis in range(3):
        out[:, axis, 3] = np.interp(query, times, a_from_b[:, axis, 3])
    return out


def project_points(points_xyz: np.ndarray, cam_from_world: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points [N x 3] -> pixels [N x 2] (OpenCV convention: the top-left pixel's centre
    is (0, 0)) and depths [N] along the optical axis. Points at depth ~0 get finite pixels."""
    xyz_cam = np.asarray(points_xyz, np.float64) @ cam_from_world[:3, :3].T + cam_from_world[:3, 3]
    depth = xyz_cam[:, 2]
    uv = xyz_cam[:, :2] / np.where(np.abs(depth) > 1e-9, depth, 1e-9)[:, None]
    return uv * [K[0, 0], K[1, 1]] + [K[0, 2], K[1, 2]], depth


def in_view(uv: np.ndarray, depth: np.ndarray, width: int, height: int, min_depth_m: float = 0.05,
            slack_px: float = 0.5) -> np.ndarray:
    """Projections in front of the camera within `slack_px` of the pixel centres' span [0, size - 1]:
    0.5 (default) keeps those whose rounded pixel exists; 0 keeps where keypoints can lie."""
    return (depth > min_depth_m) & (uv[:, 0] >= -slack_px) & (uv[:, 0] < width - 1 + slack_px) & \
        (uv[:, 1] >= -slack_px) & (uv[:, 1] < height - 1 + slack_px)


def skew(v: np.ndarray) -> np.ndarray:
    """[v]x, the matrix of the cross product v x ."""
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def pnp_covariance(cam_from_world: np.ndarray, K: np.ndarray, uv: np.ndarray, xyz: np.ndarray) -> np.ndarray | None:
    """The 6x6 covariance of a PnP pose as pycolmap's refinement reports it, computed here
    (a few hundred microseconds, where asking pycolmap costs about a millisecond per PnP,
    most of them in rounds whose pose is thrown away). Gauss-Newton at the pose, residuals
    in pixels weighted by the Cauchy loss of scale 1 px that pycolmap refines with:
    (J^T W J)^-1 over (delta_q, delta_t) in pycolmap's convention (world_from_cam_covariance).
    uv [N x 2] pixels of points xyz [N x 3]. None when the pose is not determined."""
    rotation, translation = cam_from_world[:3, :3], cam_from_world[:3, 3]
    rotated = np.asarray(xyz, np.float64) @ rotation.T
    x, y, z = (rotated + translation).T
    fx, fy = K[0, 0], K[1, 1]
    zeros = np.zeros_like(z)
    d_uv = np.stack([np.stack([fx / z, zeros, -fx * x / z ** 2], 1),
                     np.stack([zeros, fy / z, -fy * y / z ** 2], 1)], 1)  # [N x 2 x 3] by camera point
    # d(camera point)/d(delta_q) = -2 [R X]x (left perturbation, half-angle), d/d(delta_t) = I.
    cross = np.zeros((len(z), 3, 3))
    cross[:, 0, 1], cross[:, 0, 2], cross[:, 1, 2] = -rotated[:, 2], rotated[:, 1], -rotated[:, 0]
    cross -= cross.transpose(0, 2, 1)
    jacobian = np.concatenate([d_uv @ (-2.0 * cross), d_uv], axis=2).reshape(-1, 6)
    residual = np.stack([fx * x / z + K[0, 2], fy * y / z + K[1, 2]], 1) - uv
    weight = np.repeat(1.0 / (1.0 + (residual ** 2).sum(1)), 2)
    information = jacobian.T @ (jacobian * weight[:, None])
    if not np.all(np.isfinite(information)) or np.linalg.cond(information) > 1e12:
        return None
    return np.linalg.inv(information)


def world_from_cam_covariance(cam_from_world: np.ndarray, colmap_covariance: np.ndarray) -> np.ndarray:
    """pycolmap's 6x6 pose covariance -> the covariance of world_from_cam in ROS's order.

    In: pycolmap's covariance of cam_from_world = (R, t) over (delta_q, delta_t), where the
    rotation is perturbed on the left through the quaternion's vector part, R' = exp(2 delta_q) R
    (half-angle: checked against Monte Carlo PnP), and t' = t + delta_t.
    Out: geometry_msgs/PoseWithCovariance's convention, (x, y, z, rot_x, rot_y, rot_z) of the
    camera's position and of a rotation about the fixed (world) axes, in m^2 and rad^2.
    """
    rotation, translation = cam_from_world[:3, :3], cam_from_world[:3, 3]
    # Camera centre c = -R^T t and world rotation R^T, perturbed to first order.
    jacobian = np.zeros((6, 6))
    jacobian[:3, :3] = -rotation.T @ skew(translation) * 2.0
    jacobian[:3, 3:] = -rotation.T
    jacobian[3:, :3] = -rotation.T * 2.0
    covariance = jacobian @ colmap_covariance @ jacobian.T
    return 0.5 * (covariance + covariance.T)


def attached_frame_covariance(world_from_a: np.ndarray, a_from_b: np.ndarray, covariance_a: np.ndarray) -> np.ndarray:
    """ROS-ordered covariance of world_from_b, for a frame b rigidly attached to a, from that of a."""
    lever_world = world_from_a[:3, :3] @ a_from_b[:3, 3]
    # b's position moves with a's position and swings with a's rotation about the lever arm.
    jacobian = np.eye(6)
    jacobian[:3, 3:] = -skew(lever_world)
    covariance = jacobian @ covariance_a @ jacobian.T
    return 0.5 * (covariance + covariance.T)
