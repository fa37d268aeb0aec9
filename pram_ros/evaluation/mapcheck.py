"""Geometric checks of a map against a demo-world sequence's rendered ground truth.

In: a `PramMap` built from a demo-world sequence (its images and poses) and that
sequence's folder. Out: per-observation distances between map points and the rendered
surfaces, in metres.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pram_ros.mapping.mapfile import PramMap
from pram_ros.world.io import load_depth


def surface_errors_m(pram_map: PramMap, sequence_dir: Path, image_step: int = 1) -> np.ndarray:
    """For every observation of a map point in a database image (every `image_step`-th
    image), |point depth in that camera - rendered depth at its projection|."""
    K = pram_map.K(0)
    errors = []
    for image in range(0, pram_map.num_images, image_step):
        observed = np.flatnonzero(np.add.reduceat(pram_map.point_obs_images == image,
                                                  pram_map.point_obs_offsets[:-1]) > 0)
        cam_from_world = pram_map.cam_from_world(image)
        xyz_cam = pram_map.point_xyz[observed] @ cam_from_world[:3, :3].T + cam_from_world[:3, 3]
        uv = xyz_cam @ K.T
        uv = np.rint(uv[:, :2] / uv[:, 2:]).astype(int)
        depth = load_depth(Path(sequence_dir) / "depth" / pram_map.image_names[image])
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < depth.shape[1]) & (uv[:, 1] >= 0) & (uv[:, 1] < depth.shape[0])
        errors.append(np.abs(xyz_cam[inside, 2] - depth[uv[inside, 1], uv[inside, 0]]))
    return np.concatenate(errors) if errors else np.zeros(0)
