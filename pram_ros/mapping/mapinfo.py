"""`pram map info`: a human-readable summary of a PRAM map.

In: a `PramMap` and, optionally, the path of its file (for the file size).
Out: multi-line text: format, extractor, cameras, images, points, landmarks, sizes by
array group, compression against the full reconstruction, alignment error, build
settings and source.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pram_ros.mapping.mapfile import EXTRACTOR_EXTRAS, PramMap, human_bytes, meta_json

# Arrays by group, for size reports.
SIZE_GROUPS = {
    "points": ("point_xyz", "point_landmark", "point_error_px", "point_obs_offsets", "point_obs_images"),
    "descriptors": ("point_descriptor", "appearance_point", "appearance_descriptor"),
    "landmarks": ("landmark_centroid", "landmark_extent", "landmark_vrf_offsets", "landmark_vrf_images"),
    "images": ("camera_params", "camera_size", "image_camera", "image_cam_from_world"),
}


def _min_median_max(values: np.ndarray) -> str:
    if values.size == 0:
        return "none"
    return f"min {int(values.min())} / median {float(np.median(values)):g} / max {int(values.max())}"


def _flatten(settings: dict, prefix: str = "") -> list[tuple[str, object]]:
    items: list[tuple[str, object]] = []
    for key in sorted(settings, key=str):
        value = settings[key]
        if isinstance(value, dict) and value:
            items += _flatten(value, f"{prefix}{key}.")
        else:
            items.append((f"{prefix}{key}", value))
    return items


def describe_map(pram_map: PramMap, path: str | Path | None = None) -> str:
    """A multi-line human-readable summary of a map, for `pram map info`."""
    m = pram_map
    meta = m.meta
    extractor = meta.get("extractor", {})
    lines = [f"PRAM map{f' {path}' if path is not None else ''}"]
    lines.append(f"  format:      {meta.get('format')} version {meta.get('version')}")
    preset = extractor.get("preset")
    settings = ", ".join(f"{key} {value}" for key, value in sorted(extractor.items())
                         if key != "name" and key not in EXTRACTOR_EXTRAS)
    lines.append(
        f"  extractor:   {extractor.get('name', '?')}{f' (preset {preset})' if preset else ''}, "
        f"{m.descriptor_dim}-d descriptors stored as {m.point_descriptor.dtype}"
    )
    if settings:
        lines.append(f"    settings: {settings}")
    cameras = [
        f"{int(w)}x{int(h)} fx {fx:.1f} fy {fy:.1f} cx {cx:.1f} cy {cy:.1f}"
        for (fx, fy, cx, cy), (w, h) in zip(m.camera_params[:3], m.camera_size[:3])
    ]
    more = ", ..." if m.num_cameras > 3 else ""
    lines.append(f"  cameras:     {m.num_cameras} PINHOLE ({'; '.join(cameras)}{more})")
    lines.append(f"  images:      {m.num_images} registered database images")
    observations = m.point_obs_images.size
    per_point = observations / m.num_points if m.num_points else 0.0
    error = float(m.point_error_px.mean()) if m.num_points else 0.0
    lines.append(
        f"  points:      {m.num_points}, {per_point:.1f} observations per point on average "
        f"({observations} in all), mean reprojection error {error:.2f} px"
    )
    sessions = (meta.get("source") or {}).get("sessions")
    if sessions:
        per_session = [sum(name.startswith(f"session{i}/") for name in m.image_names) for i in range(len(sessions))]
        lines.append(f"  sessions:    {len(sessions)} ({' + '.join(map(str, per_session))} images); "
                     f"{m.num_appearances} further looks of points that look different in another session")
    points_per_landmark = np.bincount(m.point_landmark, minlength=m.num_landmarks + 1)[1:]
    vrfs_per_landmark = np.diff(m.landmark_vrf_offsets)
    lines.append(f"  landmarks:   {m.num_landmarks}")
    lines.append(f"    points per landmark: {_min_median_max(points_per_landmark)}")
    lines.append(
        f"    VRFs per landmark:   {_min_median_max(vrfs_per_landmark)} "
        f"({m.landmark_vrf_images.size} in all, {np.unique(m.landmark_vrf_images).size} distinct images)"
    )

    total = m.nbytes()
    groups = {group: sum(getattr(m, name).nbytes for name in names) for group, names in SIZE_GROUPS.items()}
    groups["meta"] = len(meta_json(meta, "<memory>"))
    file_size = Path(path).stat().st_size if path is not None and Path(path).is_file() else None
    if file_size is not None:
        lines.append(f"  file size:   {human_bytes(file_size)} ({file_size} bytes)")
    lines.append(
        f"  in memory:   {human_bytes(total)}: "
        + ", ".join(f"{group} {human_bytes(size)}" for group, size in groups.items())
    )
    full = meta.get("stats", {}).get("full_reconstruction_bytes")
    if isinstance(full, (int, float)) and not isinstance(full, bool) and full > 0:
        size = file_size if file_size is not None else total
        lines.append(
            f"  compression: {human_bytes(size)} = {100.0 * size / full:.1f}% of the full reconstruction "
            f"({human_bytes(full)}: COLMAP model + every observation's descriptor)"
        )
    aligned = meta.get("stats", {}).get("aligned_centre_error_m")
    if isinstance(aligned, dict) and all(isinstance(aligned.get(k), (int, float)) for k in ("median", "p90")):
        lines.append(
            f"  alignment:   Sim3 to given poses; camera centres off by median {100 * aligned['median']:.1f} cm, "
            f"90th percentile {100 * aligned['p90']:.1f} cm ({aligned.get('over_max_error', '?')} images over "
            f"{100 * float(aligned.get('max_error_m', 0.05)):.0f} cm)"
        )
    for title, key in (("build", "build"), ("source", "source")):
        settings = meta.get(key) or {}
        if settings:
            lines.append(f"  {title}:")
            lines += [f"    {name}: {value}" for name, value in _flatten(settings)]
    return "\n".join(lines)
