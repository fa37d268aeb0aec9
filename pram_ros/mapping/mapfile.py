"""The PRAM map file: one versioned numpy `.npz` archive, loaded without pickle.

In: a `PramMap` built by `pram map build` (cameras, registered database images, the
kept 3D points with one descriptor each, landmarks and their virtual reference frames).
Out: a single `.npz` file that `load_map` reads back, checking everything, so the
recognizer, the localizer and `pram map info` can trust what they get. The checks are in
mapvalidate.py, the `pram map info` summary in mapinfo.py.

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

and, only in a map of several sessions whose points look different in a later one (each
point keeps at most a few appearances; both arrays are absent when A = 0, so such a map's
file and fingerprint are those of a map without the fields):

    appearance_point      [A]      int32    the point (0..P-1) each further appearance belongs to
    appearance_descriptor [A x D]  float16  its descriptor: the medoid of the point's
                                            observations in a session where it looked different

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
    ("appearance_point", "int32", ("A",)),
    ("appearance_descriptor", "float16", ("A", "D")),
)
ARRAY_NAMES = tuple(name for name, _, _ in ARRAY_FIELDS)
# Stored only when not empty (a map of one session has none).
OPTIONAL_ARRAYS = ("appearance_point", "appearance_descriptor")

# Keys that meta["extractor"] holds beside the extractor's own configuration.
EXTRACTOR_EXTRAS = ("descriptor_dim", "preset")


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
    appearance_point: np.ndarray | None = None  # [A] int32; None: none
    appearance_descriptor: np.ndarray | None = None  # [A x D] float16; None: none

    def __post_init__(self) -> None:
        if self.appearance_point is None:
            self.appearance_point = np.zeros(0, np.int32)
        if self.appearance_descriptor is None:
            dim = self.point_descriptor.shape[1] if getattr(self.point_descriptor, "ndim", 0) == 2 else 0
            self.appearance_descriptor = np.zeros((0, dim), np.float16)

    @property
    def num_points(self) -> int:
        return int(self.point_xyz.shape[0])

    @property
    def num_landmarks(self) -> int:
        return int(self.landmark_centroid.shape[0])

    @property
    def num_appearances(self) -> int:
        """Descriptors kept beside the points' own (0 in a map of one session)."""
        return int(self.appearance_point.shape[0])

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
        """The stored arrays by name, in file order (without meta); the optional ones only
        when not empty."""
        return {name: getattr(self, name) for name in ARRAY_NAMES
                if name not in OPTIONAL_ARRAYS or len(getattr(self, name))}

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
        return sum(int(a.nbytes) for a in self.arrays().values()) + len(meta_json(self.meta, "<memory>"))


def _json_default(value: object) -> object:
    """Let numpy scalars and small arrays slip into meta without surprises."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serializable")


def meta_json(meta: dict, source: str) -> bytes:
    """Canonical JSON of meta: sorted keys, no spaces, UTF-8, no NaN."""
    try:
        text = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise MapFileError(f"{source}: meta: not JSON-serializable ({_one_line(exc)})") from None
    return text.encode("utf-8")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def human_bytes(size: float) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{int(size)} B"


# ----------------------------------------------------------------------------------------
# Saving and loading


def to_npz_arrays(pram_map: PramMap) -> dict[str, np.ndarray]:
    """The archive's members by name: meta_json, then the arrays (views, not copies; no validation)."""
    meta = np.frombuffer(meta_json(pram_map.meta, "<memory>"), dtype=np.uint8)
    return {META_FIELD: meta, **pram_map.arrays()}


def save_map(pram_map: PramMap, path: str | Path) -> int:
    """Validate, then write the map to `path` atomically; return the bytes written.

    The archive is `numpy.savez` (uncompressed). It goes to a temporary file in the same
    folder first and replaces `path` only when complete, so readers never see half a map.
    The name is kept exactly as given (no `.npz` is appended), though `.npz` is advised.
    """
    from pram_ros.mapping.mapvalidate import validate  # here, not on top: mapvalidate imports this module

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
                pram_map.num_landmarks, human_bytes(size))
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


def load_map_meta(path: str | Path) -> dict:
    """Only a map file's metadata (the arrays stay on disk); MapFileError when unreadable."""
    source = str(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            return _read_meta(npz, source)
    except MapFileError:
        raise
    except Exception as exc:  # missing, not a zip, no meta member
        raise MapFileError(f"{source}: no readable map metadata ({type(exc).__name__}: {_one_line(exc)})") from None


def load_map(path: str | Path) -> PramMap:
    """Read and validate a map file; raise MapFileError (one line, starting with the path) if unusable."""
    from pram_ros.mapping.mapvalidate import check_header, validate  # here, not on top: it imports this module

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
        check_header(meta, source)
        missing = [n for n in ARRAY_NAMES if n not in names and n not in OPTIONAL_ARRAYS]
        if missing:
            raise MapFileError(f"{source}: missing arrays: {', '.join(missing)}")
        extra = sorted(set(names) - set(ARRAY_NAMES) - {META_FIELD})
        if extra:
            raise MapFileError(
                f"{source}: unexpected arrays: {', '.join(extra)} (not part of map version {MAP_VERSION})"
            )
        arrays = {name: _read_member(npz, name, source) for name in ARRAY_NAMES if name in names}
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
    digest.update(meta_json(pram_map.meta, "<memory>"))
    return digest.hexdigest()
