"""Validation of a PRAM map: is every array and meta field what the file format says?

In: a `PramMap` (just loaded, or about to be saved) and the name of its source.
Out: nothing if the map is usable; else a `MapFileError` whose one-line message names
the source and the field. The format itself (fields, dtypes, shapes) is in mapfile.py.
"""

from __future__ import annotations

import numpy as np

from pram_ros.mapping.mapfile import ARRAY_FIELDS, MAP_FORMAT, MAP_VERSION, MapFileError, PramMap, meta_json

QUATERNION_TOLERANCE = 1e-3


def validate(pram_map: PramMap, source: str = "<memory>") -> None:
    """Check a map's structure and values; raise MapFileError naming `source` and the field."""
    meta = pram_map.meta
    check_header(meta, source)
    dims = _check_shapes(pram_map, source)
    _check_values(pram_map, dims, source)
    _check_meta(meta, dims, source)


def check_header(meta: object, source: str) -> None:
    """Format and version: checked first, so an old or foreign file gets the right message."""
    if not isinstance(meta, dict):
        raise MapFileError(f"{source}: meta: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format") != MAP_FORMAT:
        raise MapFileError(
            f"{source}: meta format is {meta.get('format')!r}, expected {MAP_FORMAT!r}: not a pram_ros map"
        )
    version = meta.get("version")
    if version != MAP_VERSION or isinstance(version, bool):
        raise MapFileError(
            f"{source}: map version {version!r} is not supported by this pram_ros "
            f"(expects {MAP_VERSION}); rebuild the map"
        )


def _spec_symbol(item: str | int) -> tuple[str | None, int]:
    """('P', 1) for 'P+1', ('D', 0) for 'D', (None, 4) for 4."""
    if isinstance(item, int):
        return None, item
    base, _, plus = item.partition("+")
    return base, int(plus or 0)


def _check_shapes(pram_map: PramMap, source: str) -> dict[str, int]:
    """Check every array's dtype and shape; return the sizes {C, I, P, D, O, K, V}."""
    dims: dict[str, int] = {}
    for name, dtype, spec in ARRAY_FIELDS:
        array = getattr(pram_map, name)
        ok = isinstance(array, np.ndarray) and array.dtype == np.dtype(dtype) and array.ndim == len(spec)
        if ok:
            for size, item in zip(array.shape, spec):
                symbol, offset = _spec_symbol(item)
                if symbol is None:
                    ok = size == offset
                elif symbol in dims:
                    ok = size == dims[symbol] + offset
                else:
                    ok = size >= offset
                    dims[symbol] = size - offset
                if not ok:
                    break
        if not ok:
            bound = [f"{s}={dims[s]}" for s in dict.fromkeys(_spec_symbol(i)[0] for i in spec) if s in dims]
            known = f" with {', '.join(bound)}" if bound else ""
            if isinstance(array, np.ndarray):
                got = f"{array.dtype} {tuple(array.shape)}"
            else:
                got = type(array).__name__
            shape = " x ".join(str(item) for item in spec)
            raise MapFileError(f"{source}: {name}: expected {dtype} [{shape}]{known}, got {got}")
    return dims


def _check_finite(name: str, array: np.ndarray, source: str) -> None:
    nan = int(np.count_nonzero(np.isnan(array)))
    inf = int(np.count_nonzero(np.isinf(array)))
    if nan or inf:
        parts = [_count(nan, "NaN value")] if nan else []
        parts += [_count(inf, "infinite value")] if inf else []
        raise MapFileError(f"{source}: {name}: {' and '.join(parts)}")


def _check_range(name: str, array: np.ndarray, low: float, high: float, expected: str, source: str) -> None:
    """All values in low..high inclusive, else an error that says what was `expected`."""
    flat = array.reshape(-1)
    bad = np.flatnonzero((flat < low) | (flat > high))
    if bad.size:
        first = int(bad[0])
        raise MapFileError(
            f"{source}: {name}: {_count(bad.size, 'invalid value')}, expected {expected} "
            f"(first: {flat[first].item()} at flat index {first})"
        )


def _check_offsets(name: str, offsets: np.ndarray, target: str, length: int, source: str) -> None:
    if offsets[0] != 0:
        raise MapFileError(f"{source}: {name}: first offset is {int(offsets[0])}, expected 0")
    drops = np.flatnonzero(np.diff(offsets) < 0)
    if drops.size:
        j = int(drops[0])
        raise MapFileError(
            f"{source}: {name}: offsets decrease in {_count(drops.size, 'place')} "
            f"(first at index {j + 1}: {int(offsets[j])} -> {int(offsets[j + 1])})"
        )
    if offsets[-1] != length:
        raise MapFileError(
            f"{source}: {name}: last offset is {int(offsets[-1])}, expected {length} = len({target})"
        )


def _check_values(m: PramMap, dims: dict[str, int], source: str) -> None:
    for name, dtype, _ in ARRAY_FIELDS:
        if np.dtype(dtype).kind == "f":
            _check_finite(name, getattr(m, name), source)
    num_cameras, num_images, num_landmarks = dims["C"], dims["I"], dims["K"]
    _check_range("camera_params", m.camera_params[:, :2], 1e-12, np.inf, "focal lengths fx, fy > 0", source)
    _check_range("camera_size", m.camera_size, 1, np.iinfo(np.int32).max, "width and height >= 1", source)
    _check_range("image_camera", m.image_camera, 0, num_cameras - 1,
                 f"camera indices in 0..C-1 with C={num_cameras}", source)
    norms = np.linalg.norm(m.image_cam_from_world[:, :4], axis=1)
    bad = np.flatnonzero(np.abs(norms - 1.0) > QUATERNION_TOLERANCE)
    if bad.size:
        first = int(bad[0])
        raise MapFileError(
            f"{source}: image_cam_from_world: {_count(bad.size, 'quaternion')} not of unit length within "
            f"{QUATERNION_TOLERANCE:g} (first: norm {norms[first]:.6g} at image {first})"
        )
    _check_range("point_landmark", m.point_landmark, 1, num_landmarks,
                 f"landmark ids in 1..K={num_landmarks}", source)
    _check_range("point_error_px", m.point_error_px, 0, np.inf, "mean errors >= 0", source)
    _check_offsets("point_obs_offsets", m.point_obs_offsets, "point_obs_images", dims["O"], source)
    _check_range("point_obs_images", m.point_obs_images, 0, num_images - 1,
                 f"image indices in 0..I-1 with I={num_images}", source)
    _check_range("landmark_extent", m.landmark_extent, 0, np.inf, "half-sizes >= 0", source)
    _check_offsets("landmark_vrf_offsets", m.landmark_vrf_offsets, "landmark_vrf_images", dims["V"], source)
    _check_range("landmark_vrf_images", m.landmark_vrf_images, 0, num_images - 1,
                  f"image indices in 0..I-1 with I={num_images}", source)
    _check_range("appearance_point", m.appearance_point, 0, dims["P"] - 1,
                 f"point indices in 0..P-1 with P={dims['P']}", source)


def _check_meta(meta: dict, dims: dict[str, int], source: str) -> None:
    extractor = meta.get("extractor")
    if not isinstance(extractor, dict) or not isinstance(extractor.get("name"), str):
        raise MapFileError(f"{source}: meta.extractor: expected the extractor's configuration (an object "
                           f"with a name), got {extractor!r:.80}")
    dim = extractor.get("descriptor_dim")
    if dim != dims["D"] or isinstance(dim, bool):
        raise MapFileError(
            f"{source}: meta.extractor.descriptor_dim is {dim!r}, "
            f"but point_descriptor has D={dims['D']} columns"
        )
    preset = extractor.get("preset")
    if preset is not None and not isinstance(preset, str):
        raise MapFileError(f"{source}: meta.extractor.preset: expected a string, got {preset!r:.80}")
    names = meta.get("image_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise MapFileError(f"{source}: meta.image_names: expected a list of strings")
    if len(names) != dims["I"]:
        raise MapFileError(f"{source}: meta.image_names: {len(names)} names for I={dims['I']} images")
    for key in ("build", "stats", "source"):
        if key in meta and not isinstance(meta[key], dict):
            raise MapFileError(f"{source}: meta.{key}: expected an object, got {type(meta[key]).__name__}")
    meta_json(meta, source)  # must serialize


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
