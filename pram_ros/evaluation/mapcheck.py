"""Geometric checks of a map against a demo-world sequence's rendered ground truth.

In: a `PramMap` built from a demo-world sequence (its images and poses) and that
sequence's folder. Out: per-observation distances between map points and the rendered
surfaces, in metres.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pram_ros.geometry import in_view, project_points
from pram_ros.io.images import load_depth
from pram_ros.mapping.mapfile import PramMap


def surface_errors_m(pram_map: PramMap, sequence_dir: Path, image_step: int = 1) -> np.ndarray:
    """For every observation of a map point in a database image (every `image_step`-th
    image), |point depth in that camera - rendered depth at its projection|."""
    observed = pram_map.points_per_image()
    errors = []
    for image in range(0, pram_map.num_images, image_step):
        uv, z = project_points(pram_map.point_xyz[observed[image]], pram_map.cam_from_world(image),
                              pram_map.K(pram_map.image_camera[image]))
        depth = load_depth(Path(sequence_dir) / "depth" / pram_map.image_names[image])
        inside = in_view(uv, z, depth.shape[1], depth.shape[0], min_depth_m=0.0)
        pixel = np.rint(uv[inside]).astype(int)
        errors.append(np.abs(z[inside] - depth[pixel[:, 1], pixel[:, 0]]))
    return np.concatenate(errors) if errors else np.zeros(0)
