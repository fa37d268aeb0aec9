"""The PRAM map file: one versioned numpy `.npz` archive, loaded without pickle.

In: a `PramMap` built by `pram map build` (cameras, registered database images, the
kept 3D points with one descriptor each, landmarks and their virtual reference frames).
Out: a single `.npz` file that `load_map` reads back, checking everything, so the
recognizer, the localizer and `pram map info` can trust what they get.

File format (`format` "pram_ros.map", `version` 1)
--------------------------------------------------
A zip archive as written by `numpy.savez` (members stored uncompressed: float16
descriptors barely compress, and an uncompressed member loads at disk speed). It holds
exactly the arrays below, each a plain numeric `.npy` member. There are no object arrays
and no pickles; `load_map` opens the file with `allow_pickle=False`, so a crafted file
cannot run code. Symbols: C cameras, I database images, P points, D descriptor
dimensions, K landmarks, O point observations, V virtual reference frames (VRFs).

    meta_json             [N]      uint8    UTF-8 JSON document (see below)
    camera_params         [C x 4]  float64  PINHOLE fx, fy, cx, cy in pixels; OpenCV convention:
                                            the centre of the top-left pixel is (0, 0)
    camera_size           [C x 2]  int32    width, height in pixels
    image_camera          [I]      int32    camera index of each database image
    image_cam_from_world  [I x 7]  float64  qx, qy, qz, qw, tx, ty, tz: cam_from_world, camera
                                            axes per OpenCV (x right, y down, z forward)
    point_xyz             [P x 3]  float32  point positions in the map (world) frame, metres
    point_descriptor      [P x D]  float16  one descriptor per point: the medoid of its track
    point_landmark        [P]      int32    landmark id in 1..K (0, background, is never stored)
    point_error_px        [P]      float32  mean reprojection error of the point's track
    point_obs_offsets     [P+1]    int64    CSR offsets: point p is observed by the images
                                            point_obs_images[offsets[p]:offsets[p+1]]
    point_obs_images      [O]      int32    database image indices
    landmark_centroid     [K x 3]  float32  landmark id k is row k-1
    landmark_extent       [K x 3]  float32  half-size of the axis-aligned box, centred on the centroid, holding its points
    landmark_vrf_offsets  [K+1]    int64    CSR offsets into landmark_vrf_images
    landmark_vrf_images   [V]      int32    database images chosen as the landmark's VRFs

The JSON document (`PramMap.meta`) holds:

    format            "pram_ros.map"
    version           1
    extractor         the feature extractor's configuration, `ExtractorConfig.to_dict()` (its
                      "name" at least), plus "descriptor_dim" (= D) and optionally "preset" (the
                      preset name it came from); queries must use the same extractor
    image_names       [I] database image names, in image index order
    build             optional: the build settings (landmark count, VRF and pruning parameters)
    stats             optional: build statistics; "full_reconstruction_bytes" is the size of the
                      full reconstruction (COLMAP model + every observation's descriptor);
                      "aligned_centre_error_m" (after --align): median and p90 distance of the
                      registered camera centres from the given poses, and how many are more
                      than its "max_error_m" off
    source            optional: where the map came from (image folder, poses file, ...)

Other keys are kept as they are.

A file whose version differs from `MAP_VERSION` is refused: rebuild the map. Every
problem found while loading raises `MapFileError`, a `ValueError` with a one-line message
that starts with the file path and names the field, for example
"maps/office.npz: point_xyz: 12 NaN values".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pram_ros.geometry import transform_from_quat

logger = logging.getLogger(__name__)

MAP_FORMAT = "pram_ros.map"
MAP_VERSION = 1

META_FIELD = "meta_json"

# The stored arrays: name, dtype, shape. A symbol takes its size from the first array that
# uses it, and every later array must agree.
ARRAY_FIELDS: tuple[tuple[str, str, tuple[str | int, ...]], ...] = (
    ("camera_params", "float64", ("C", 4)),
    ("camera_size", "int32", ("C", 2)),
    ("image_camera", "int32", ("I",)),
    ("image_cam_from_world", "float64", ("I", 7)),
    ("point_xyz", "float32", ("P", 3)),
    ("point_descriptor", "float16", ("P", "D")),
    ("point_landmark", "int32", ("P",)),
    ("point_error_px", "float32", ("P",)),
    ("point_obs_offsets", "int64", ("P+1",)),
    ("point_obs_images", "int32", ("O",)),
    ("landmark_centroid", "float32", ("K", 3)),
    ("landmark_extent", "float32", ("K", 3)),
    ("landmark_vrf_offsets", "int64", ("K+1",)),
    ("landmark_vrf_images", "int32", ("V",)),
)
ARRAY_NAMES = tuple(name for name, _, _ in ARRAY_FIELDS)

QUATERNION_TOLERANCE = 1e-3

# Keys that meta["extractor"] holds beside the extractor's own configuration.
EXTRACTOR_EXTRAS = ("descriptor_dim", "preset")

# Arrays by group, for size reports.
SIZE_GROUPS = {
    "points": ("point_xyz", "point_landmark", "point_error_px", "point_obs_offsets", "point_obs_images"),
    "descriptors": ("point_descriptor",),
    "landmarks": ("landmark_centroid", "landmark_extent", "landmark_vrf_offsets", "landmark_vrf_images"),
    "images": ("camera_params", "camera_size", "image_camera", "image_cam_from_world"),
}


class MapFileError(ValueError):
    """A map file (or an in-memory map) that cannot be used; the message is one line."""


@dataclass(eq=False)
class PramMap:
    """A compressed PRAM map; see the module docstring for every field's meaning."""

    meta: dict
    camera_params: np.ndarray  # [C x 4] float64 fx, fy, cx, cy
    camera_size: np.ndarray  # [C x 2] int32 width, height
    image_camera: np.ndarray  # [I] int32
    image_cam_from_world: np.ndarray  # [I x 7] float64 qx, qy, qz, qw, tx, ty, tz
    point_xyz: np.ndarray  # [P x 3] float32
    point_descriptor: np.ndarray  # [P x D] float16
    point_landmark: np.ndarray  # [P] int32 in 1..K
    point_error_px: np.ndarray  # [P] float32
    point_obs_offsets: np.ndarray  # [P+1] int64
    point_obs_images: np.ndarray  # [O] int32
    landmark_centroid: np.ndarray  # [K x 3] float32
    landmark_extent: np.ndarray  # [K x 3] float32
    landmark_vrf_offsets: np.ndarray  # [K+1] int64
    landmark_vrf_images: np.ndarray  # [V] int32

    @property
    def num_points(self) -> int:
        return int(self.point_xyz.shape[0])

    @property
    def num_landmarks(self) -> int:
        return int(self.landmark_centroid.shape[0])

    @property
    def num_images(self) -> int:
        return int(self.image_camera.shape[0])

    @property
    def num_cameras(self) -> int:
        return int(self.camera_params.shape[0])

    @property
    def descriptor_dim(self) -> int:
        return int(self.point_descriptor.shape[1])

    @property
    def extractor(self) -> dict:
        """The extractor entry of meta: configuration plus "descriptor_dim" and "preset"."""
        return self.meta["extractor"]

    def extractor_config(self) -> dict:
        """The extractor's configuration alone, as `ExtractorConfig.from_dict` takes it."""
        return {key: value for key, value in self.extractor.items() if key not in EXTRACTOR_EXTRAS}

    @property
    def image_names(self) -> list[str]:
        return self.meta["image_names"]

    def arrays(self) -> dict[str, np.ndarray]:
        """The stored arrays by name, in file order (without meta)."""
        return {name: getattr(self, name) for name in ARRAY_NAMES}

    def point_observers(self, i: int) -> np.ndarray:
        """[n] int32 indices of the database images that observe point i."""
        return self.point_obs_images[self.point_obs_offsets[i] : self.point_obs_offsets[i + 1]]

    def points_per_image(self) -> list[np.ndarray]:
        """For each database image, the indices of the points it observes (the inverse of point_observers)."""
        point_of_obs = np.repeat(np.arange(self.num_points), np.diff(self.point_obs_offsets))
        order = np.argsort(self.point_obs_images, kind="stable")
        bounds = np.searchsorted(self.point_obs_images[order], np.arange(self.num_images + 1))
        return [point_of_obs[order[bounds[i]:bounds[i + 1]]] for i in range(self.num_images)]

    def landmark_vrfs(self, k: int) -> np.ndarray:
        """[n] int32 database images chosen as VRFs of landmark id k (1-based)."""
        if not 1 <= k <= self.num_landmarks:
            raise IndexError(f"landmark id {k} outside 1..{self.num_landmarks}")
        return self.landmark_vrf_images[self.landmark_vrf_offsets[k - 1] : self.landmark_vrf_offsets[k]]

    def landmark_points(self, k: int) -> np.ndarray:
        """[n] int64 indices of the points of landmark id k (1-based)."""
        return np.flatnonzero(self.point_landmark == k)

    def vrfs_observing(self, i: int) -> np.ndarray:
        """[n] int32 sorted VRFs of point i's landmark that observe point i."""
        return np.intersect1d(self.point_observers(i), self.landmark_vrfs(int(self.point_landmark[i])))

    def K(self, camera_index: int) -> np.ndarray:  # noqa: N802 (the usual name of the intrinsics)
        """3x3 intrinsic matrix of a camera."""
        fx, fy, cx, cy = self.camera_params[camera_index]
        return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

    def cam_from_world(self, image_index: int) -> np.ndarray:
        """4x4 cam_from_world of a database image."""
        pose = self.image_cam_from_world[image_index]
        return transform_from_quat(pose[4:7], pose[0:4])

    def nbytes(self) -> int:
        """In-memory size of the map: every array's bytes plus the meta JSON's length."""
        return sum(int(a.nbytes) for a in self.arrays().values()) + len(_meta_json(self.meta, "<memory>"))


# ----------------------------------------------------------------------------------------
# Validation


def validate(pram_map: PramMap, source: str = "<memory>") -> None:
    """Check a map's structure and values; raise MapFileError naming `source` and the field."""
    meta = pram_map.meta
    _check_header(meta, source)
    dims = _check_shapes(pram_map, source)
    _check_values(pram_map, dims, source)
    _check_meta(meta, dims, source)


def _check_header(meta: object, source: str) -> None:
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
    _meta_json(meta, source)  # must serialize


def _json_default(value: object) -> object:
    """Let numpy scalars and small arrays slip into meta without surprises."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def _meta_json(meta: dict, source: str) -> bytes:
    """Canonical JSON of meta: sorted keys, no spaces, UTF-8, no NaN."""
    try:
        text = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise MapFileError(f"{source}: meta: not JSON-serializable ({_one_line(exc)})") from None
    return text.encode("utf-8")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# ----------------------------------------------------------------------------------------
# Saving and loading


def to_npz_arrays(pram_map: PramMap) -> dict[str, np.ndarray]:
    """The archive's members by name: meta_json, then the arrays (views, not copies; no validation)."""
    meta = np.frombuffer(_meta_json(pram_map.meta, "<memory>"), dtype=np.uint8)
    return {META_FIELD: meta, **pram_map.arrays()}


def save_map(pram_map: PramMap, path: str | Path) -> int:
    """Validate, then write the map to `path` atomically; return the bytes written.

    The archive is `numpy.savez` (uncompressed). It goes to a temporary file in the same
    folder first and replaces `path` only when complete, so readers never see half a map.
    The name is kept exactly as given (no `.npz` is appended), though `.npz` is advised.
    """
    path = Path(path)
    validate(pram_map, source=str(path))
    members = to_npz_arrays(pram_map)
    if path.suffix != ".npz":
        logger.warning("%s: map files usually end with .npz; keeping the name as given", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **members)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    size = path.stat().st_size
    logger.info("Wrote map %s: %d points, %d landmarks, %s", path, pram_map.num_points,
                pram_map.num_landmarks, _human_bytes(size))
    return size


def _sniff(head: bytes) -> str:
    """A short guess at what a non-zip file is, for the error message."""
    if not head:
        return "the file is empty"
    if head.startswith(b"\x93NUMPY"):
        return "it is a single .npy array"
    if head.startswith(b"\x89PNG"):
        return "it is a PNG image"
    if head.startswith(b"\xff\xd8\xff"):
        return "it is a JPEG image"
    if head.startswith((b"\x80", b"(dp", b"(lp")):
        return "it looks like a Python pickle"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "unrecognised binary content"
    if all(c.isprintable() or c in "\r\n\t" for c in text):
        return "it looks like a text file"
    return "unrecognised binary content"


def _read_member(npz, name: str, source: str) -> np.ndarray:
    try:
        array = npz[name]
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise MapFileError(
                f"{source}: {name}: holds pickled Python objects (an object array); pram_ros maps never do, "
                f"so the file is refused"
            ) from None
        raise MapFileError(f"{source}: {name}: cannot be read ({_one_line(exc)})") from None
    except Exception as exc:  # zipfile, zlib and numpy format errors on a damaged archive
        raise MapFileError(
            f"{source}: {name}: cannot be read, the file is truncated or corrupt "
            f"({type(exc).__name__}: {_one_line(exc)})"
        ) from None
    if not isinstance(array, np.ndarray):
        raise MapFileError(f"{source}: {name}: not a numpy array member")
    return array


def _read_meta(npz, source: str) -> dict:
    raw = _read_member(npz, META_FIELD, source)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise MapFileError(
            f"{source}: {META_FIELD}: expected uint8 [N] (UTF-8 JSON), got {raw.dtype} {raw.shape}"
        )
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MapFileError(f"{source}: {META_FIELD}: not valid UTF-8 JSON ({_one_line(exc)})") from None
    return meta


def load_map(path: str | Path) -> PramMap:
    """Read and validate a map file; raise MapFileError (one line, starting with the path) if unusable."""
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise MapFileError(f"{source}: no such map file")
    if path.is_dir():
        raise MapFileError(f"{source}: is a directory, expected a .npz map file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as exc:
        raise MapFileError(f"{source}: cannot be read ({exc.strerror or _one_line(exc)})") from None
    if not head.startswith(b"PK"):
        raise MapFileError(f"{source}: not a pram_ros map (.npz archive): {_sniff(head)}")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:  # BadZipFile and friends
        raise MapFileError(
            f"{source}: not a readable .npz archive, the file is truncated or corrupt "
            f"({type(exc).__name__}: {_one_line(exc)})"
        ) from None
    with npz:
        names = list(npz.files)
        if META_FIELD not in names:
            shown = ", ".join(sorted(names)[:8]) + (", ..." if len(names) > 8 else "")
            raise MapFileError(
                f"{source}: no {META_FIELD} member, so not a pram_ros map (it holds: {shown or 'nothing'})"
            )
        meta = _read_meta(npz, source)
        _check_header(meta, source)
        missing = [n for n in ARRAY_NAMES if n not in names]
        if missing:
            raise MapFileError(f"{source}: missing arrays: {', '.join(missing)}")
        extra = sorted(set(names) - set(ARRAY_NAMES) - {META_FIELD})
        if extra:
            raise MapFileError(
                f"{source}: unexpected arrays: {', '.join(extra)} (not part of map version {MAP_VERSION})"
            )
        arrays = {name: _read_member(npz, name, source) for name in ARRAY_NAMES}
    pram_map = PramMap(meta=meta, **arrays)
    validate(pram_map, source)
    logger.debug("Loaded map %s: %d points, %d landmarks", path, pram_map.num_points, pram_map.num_landmarks)
    return pram_map


def map_fingerprint(path_or_map: str | Path | PramMap) -> str:
    """SHA-256 hex of a map's content (arrays and canonical meta JSON), stable across save and load."""
    pram_map = path_or_map if isinstance(path_or_map, PramMap) else load_map(path_or_map)
    digest = hashlib.sha256()
    digest.update(f"{MAP_FORMAT} fingerprint\0".encode())
    for name, array in pram_map.arrays().items():
        array = np.asarray(array)
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(_meta_json(pram_map.meta, "<memory>"))
    return digest.hexdigest()


# ----------------------------------------------------------------------------------------
# Description


def _human_bytes(size: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"


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
    groups["meta"] = len(_meta_json(meta, "<memory>"))
    file_size = Path(path).stat().st_size if path is not None and Path(path).is_file() else None
    if file_size is not None:
        lines.append(f"  file size:   {_human_bytes(file_size)} ({file_size} bytes)")
    lines.append(
        f"  in memory:   {_human_bytes(total)}: "
        + ", ".join(f"{group} {_human_bytes(size)}" for group, size in groups.items())
    )
    full = meta.get("stats", {}).get("full_reconstruction_bytes")
    if isinstance(full, (int, float)) and not isinstance(full, bool) and full > 0:
        size = file_size if file_size is not None else total
        lines.append(
            f"  compression: {_human_bytes(size)} = {100.0 * size / full:.1f}% of the full reconstruction "
            f"({_human_bytes(full)}: COLMAP model + every observation's descriptor)"
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
