"""Pose covariances: the PnP covariance against pycolmap's, and the conversions checked
against sampling the perturbation they describe."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from pram_ros.geometry import (
    attached_frame_covariance,
    invert,
    make_transform,
    pnp_covariance,
    world_from_cam_covariance,
)


def _random_covariance(rng) -> np.ndarray:
    a = rng.normal(size=(6, 6)) * np.r_[0.01, 0.01, 0.01, 0.05, 0.05, 0.05][:, None]
    return a @ a.T + np.eye(6) * 1e-6


def _empirical(samples_world_from_x: np.ndarray, world_from_x: np.ndarray) -> np.ndarray:
    position = samples_world_from_x[:, :3, 3] - world_from_x[:3, 3]
    # Rotation about the fixed axes: R' = exp(theta) R.
    theta = Rotation.from_matrix(samples_world_from_x[:, :3, :3] @ world_from_x[:3, :3].T).as_rotvec()
    return np.cov(np.c_[position, theta].T)


def test_world_from_cam_covariance_matches_sampled_colmap_perturbations():
    rng = np.random.default_rng(1)
    cam_from_world = make_transform(Rotation.from_euler("xyz", [20, -40, 75], degrees=True).as_matrix(),
                                    np.array([1.5, -0.7, 3.0]))
    colmap_covariance = _random_covariance(rng) * 1e-2
    deltas = rng.multivariate_normal(np.zeros(6), colmap_covariance, size=20000)
    samples = np.empty((len(deltas), 4, 4))
    for i, delta in enumerate(deltas):
        # pycolmap's perturbation: R' = exp(2 delta_q) R, t' = t + delta_t.
        perturbed = make_transform(Rotation.from_rotvec(2.0 * delta[:3]).as_matrix() @ cam_from_world[:3, :3],
                                   cam_from_world[:3, 3] + delta[3:])
        samples[i] = invert(perturbed)
    predicted = world_from_cam_covariance(cam_from_world, colmap_covariance)
    empirical = _empirical(samples, invert(cam_from_world))
    scale = np.sqrt(np.outer(np.diag(predicted), np.diag(predicted)))
    assert np.abs(predicted - empirical).max() / scale.max() < 0.05
    assert np.allclose(predicted, predicted.T)


def test_attached_frame_covariance_moves_with_the_lever_arm():
    rng = np.random.default_rng(2)
    world_from_a = make_transform(Rotation.from_euler("z", 30, degrees=True).as_matrix(), np.array([2.0, 1.0, 0.5]))
    a_from_b = make_transform(Rotation.from_euler("y", -90, degrees=True).as_matrix(), np.array([0.1, -0.3, 0.6]))
    covariance_a = _random_covariance(rng)
    deltas = rng.multivariate_normal(np.zeros(6), covariance_a, size=20000)
    samples = np.empty((len(deltas), 4, 4))
    for i, delta in enumerate(deltas):
        world_from_a_perturbed = make_transform(Rotation.from_rotvec(delta[3:]).as_matrix() @ world_from_a[:3, :3],
                                                world_from_a[:3, 3] + delta[:3])
        samples[i] = world_from_a_perturbed @ a_from_b
    predicted = attached_frame_covariance(world_from_a, a_from_b, covariance_a)
    empirical = _empirical(samples, world_from_a @ a_from_b)
    assert np.abs(predicted - empirical).max() / np.abs(predicted).max() < 0.05
    # A lever arm adds position uncertainty from the rotation's.
    assert np.trace(predicted[:3, :3]) > np.trace(covariance_a[:3, :3])


def test_pnp_covariance_is_pycolmaps():
    """The covariance computed for a registration's final pose equals the one pycolmap's
    PnP refinement reports (which the localizer no longer asks for in every round), at
    several noise levels, with outliers present."""
    import pycolmap

    rng = np.random.default_rng(3)
    K = np.array([[520.0, 0.0, 320.0], [0.0, 510.0, 240.0], [0.0, 0.0, 1.0]])
    camera = pycolmap.Camera(model="PINHOLE", width=640, height=480, params=[520.0, 510.0, 320.0, 240.0])
    world_from_cam = make_transform(Rotation.from_rotvec([0.1, -0.3, 0.05]).as_matrix(), np.array([0.4, -0.2, 1.0]))
    cam_from_world = invert(world_from_cam)
    for noise_px in (0.3, 1.0, 2.0):
        in_camera = rng.uniform([-3, -2, 2], [3, 2, 9], (300, 3))
        xyz = (in_camera - cam_from_world[:3, 3]) @ cam_from_world[:3, :3]
        uv = in_camera[:, :2] / in_camera[:, 2:] * [K[0, 0], K[1, 1]] + K[:2, 2] + rng.normal(0, noise_px, (300, 2))
        uv[:30] = rng.uniform([0, 0], [640, 480], (30, 2))
        options = pycolmap.AbsolutePoseEstimationOptions()
        options.ransac.max_error = 4.0 * noise_px
        estimate = pycolmap.estimate_and_refine_absolute_pose(uv, xyz, camera, options,
                                                               pycolmap.AbsolutePoseRefinementOptions(), True)
        inliers = np.asarray(estimate["inlier_mask"], bool)
        assert 250 <= inliers.sum() <= 290
        pose = np.vstack([np.asarray(estimate["cam_from_world"].matrix()), [0, 0, 0, 1]])
        ours = pnp_covariance(pose, K, uv[inliers], xyz[inliers])
        theirs = np.asarray(estimate["covariance"])
        assert np.allclose(ours, theirs, rtol=1e-3, atol=1e-3 * np.abs(theirs).max()), (noise_px, ours, theirs)
    # Two points fix no pose.
    assert pnp_covariance(cam_from_world, K, uv[:2], xyz[:2]) is None
