"""The retrieval database of the hloc-style retrieval baseline (in pram_ros.localization).

The baseline needs what the PRAM map deliberately drops (DESIGN.md §2): every observation's
descriptor and a global descriptor per database image. So it has its own file, the
*retrieval database*, built for the benchmark only, next to the map (MAP.retrieval.npz).

Building (`build_retrieval_database`). In: a `PramMap` and its database images (where the
map was built, or given). The images are re-extracted with the map's extractor and
triangulated again with the map's poses held fixed (mapping/sfm.py, the map's own SfM
settings): the full reconstruction, before any landmark or compression step. A VLAD
codebook is k-means on the database descriptors (fixed seed). Out: a `RetrievalDatabase`
holding every 3D point, every observation's descriptor (float16) and one VLAD vector per
image, stamped with the map's fingerprint; `save_retrieval_database` writes it as .npz
(no pickle), `load_retrieval_database` refuses a file built for another map.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
from pram_ros.progress import progress

from pram_ros.features import ExtractorConfig, FeatureExtractor, Features, create_extractor
from pram_ros.geometry import invert
from pram_ros.io.imageset import ImageSet
from pram_ros.mapping.mapfile import PramMap, map_fingerprint
from pram_ros.mapping.sfm import SfmConfig, reconstruct, tracks_from_result

logger = logging.getLogger(__name__)

DATABASE_FORMAT = "pram_ros.retrieval"
DATABASE_VERSION = 2  # 2: each observation's keypoint pixels (for the learned matcher)
META_FIELD = "meta_json"
ARRAYS = {  # name: (dtype, number of dimensions)
    "point_xyz": (np.float32, 2),  # [P x 3] every triangulated point
    "image_obs_offsets": (np.int64, 1),  # [I+1] observations grouped by database image (CSR)
    "obs_point": (np.int32, 1),  # [O] the 3D point each observation sees
    "obs_descriptor": (np.float16, 2),  # [O x D] its keypoint's descriptor
    "obs_keypoint_uv": (np.float32, 2),  # [O x 2] its keypoint, pixels
    "global_descriptor": (np.float32, 2),  # [I x C*D] VLAD, unit length
    "codebook": (np.float32, 2),  # [C x D] VLAD cluster centres
}


class RetrievalDatabaseError(ValueError):
    """A retrieval database file that cannot be used: names the file and the field."""


class OldRetrievalDatabase(RetrievalDatabaseError):
    """A file of an older format version: a cache to rebuild, not a broken file."""


@dataclass
class RetrievalConfig:
    top_k: int = 5  # database images retrieved per query
    num_clusters: int = 32  # VLAD codebook size (building)
    codebook_samples: int = 50_000  # descriptors k-means sees (building)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("top_k", "num_clusters", "codebook_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"RetrievalConfig: {name} must be >= 1, got {getattr(self, name)}")


@dataclass
class RetrievalDatabase:
    meta: dict  # format, version, map_fingerprint, extractor, config, image_names, stats
    point_xyz: np.ndarray
    image_obs_offsets: np.ndarray
    obs_point: np.ndarray
    obs_descriptor: np.ndarray
    obs_keypoint_uv: np.ndarray
    global_descriptor: np.ndarray
    codebook: np.ndarray

    @property
    def num_images(self) -> int:
        return len(self.global_descriptor)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in ARRAYS}

    def memory_bytes(self) -> dict[str, int]:
        """What the baseline holds to localize, by part."""
        return {"points": int(self.point_xyz.nbytes),
                "observations": int(self.image_obs_offsets.nbytes + self.obs_point.nbytes + self.obs_descriptor.nbytes
                                    + self.obs_keypoint_uv.nbytes),
                "global_descriptors": int(self.global_descriptor.nbytes + self.codebook.nbytes)}

    def observations(self, image: int) -> slice:
        return slice(int(self.image_obs_offsets[image]), int(self.image_obs_offsets[image + 1]))


# ----------------------------------------------------------------------------------------
# Global descriptor

def vlad(descriptors: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """[N x D] local descriptors -> [C*D] VLAD: residuals to the nearest centre, summed per
    centre, each centre's block L2-normalized (so one repeated texture cannot dominate),
    then the whole vector L2-normalized. Zeros for no descriptors."""
    clusters, dim = codebook.shape
    out = np.zeros((clusters, dim), np.float32)
    if len(descriptors):
        descriptors = np.asarray(descriptors, np.float32)
        # Nearest centre by L2: |c|^2 - 2 d.c (|d|^2 is the same for every centre).
        nearest = np.argmin(np.einsum("cd,cd->c", codebook, codebook)[None] - 2.0 * descriptors @ codebook.T, axis=1)
        np.add.at(out, nearest, descriptors)
        out -= np.bincount(nearest, minlength=clusters)[:, None].astype(np.float32) * codebook
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    out = out.ravel()
    return out / max(float(np.linalg.norm(out)), 1e-12)


def train_codebook(descriptor_sets: list[np.ndarray], config: RetrievalConfig) -> np.ndarray:
    rng = np.random.default_rng(config.seed)
    pool = np.concatenate([np.asarray(d, np.float32) for d in descriptor_sets])
    if len(pool) < config.num_clusters:
        raise ValueError(f"{len(pool)} database descriptors for a codebook of {config.num_clusters} centres")
    if len(pool) > config.codebook_samples:
        pool = pool[np.sort(rng.choice(len(pool), config.codebook_samples, replace=False))]
    from sklearn.cluster import KMeans  # here: importing it costs a second of every localizer's start

    kmeans = KMeans(n_clusters=config.num_clusters, n_init=1, max_iter=100, random_state=config.seed).fit(pool)
    return kmeans.cluster_centers_.astype(np.float32)


# ----------------------------------------------------------------------------------------
# Building

def build_retrieval_database(pram_map: PramMap, images: ImageSet | str | Path | None = None,
                             config: RetrievalConfig | None = None, num_threads: int | None = None,
                             extractor: FeatureExtractor | None = None) -> RetrievalDatabase:
    """The full reconstruction of the map's images at the map's poses, with every
    observation's descriptor and a VLAD per image (see the module docstring)."""
    from pram_ros.recognition.dataset import database_frames, database_images

    config = config or RetrievalConfig()
    start = time.perf_counter()
    if not isinstance(images, ImageSet):
        images = database_images(pram_map, images)
    extractor = extractor or create_extractor(ExtractorConfig.from_dict(pram_map.extractor_config()),
                                              num_threads=num_threads)
    features: list[Features | None] = [None] * pram_map.num_images
    for index, rgb in progress(database_frames(pram_map, images), total=pram_map.num_images, desc="retrieval database",
                           unit="image", leave=False):
        features[index] = extractor.extract(rgb)
    extract_s = time.perf_counter() - start

    # Triangulate at the map's poses with its own settings: the reconstruction the map was
    # compressed from (or, for an SfM map, one consistent with its refined poses).
    sfm_settings = (pram_map.meta.get("build") or {}).get("sfm") or {}
    known = {f.name for f in fields(SfmConfig)}
    sfm = SfmConfig(**{k: v for k, v in sfm_settings.items() if k in known})
    if num_threads is not None:
        sfm = replace(sfm, num_threads=num_threads)
    world_from_cam = np.array([invert(pram_map.cam_from_world(i)) for i in range(pram_map.num_images)])
    work_dir = Path(tempfile.mkdtemp(prefix="pram_retrieval_"))
    try:
        if pram_map.num_cameras == 1:
            cameras = pram_map.K(0), int(pram_map.camera_size[0, 0]), int(pram_map.camera_size[0, 1])
        else:
            of_image = pram_map.image_camera
            cameras = (np.array([pram_map.K(c) for c in of_image]), pram_map.camera_size[of_image, 0],
                       pram_map.camera_size[of_image, 1])
        result = reconstruct(list(pram_map.image_names), features, *cameras, work_dir, world_from_cam, sfm)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    tracks = tracks_from_result(result)

    # Observations grouped by image, each with its keypoint's descriptor.
    obs_point = np.repeat(np.arange(len(tracks), dtype=np.int32), tracks.lengths)
    order = np.lexsort((obs_point, tracks.obs_image))
    obs_image, obs_point, obs_keypoint = tracks.obs_image[order], obs_point[order], tracks.obs_keypoint[order]
    dim = features[0].descriptor_dim
    obs_descriptor = np.empty((len(order), dim), np.float16)
    obs_keypoint_uv = np.empty((len(order), 2), np.float32)
    offsets = np.searchsorted(obs_image, np.arange(pram_map.num_images + 1)).astype(np.int64)
    for image in range(pram_map.num_images):
        rows = slice(offsets[image], offsets[image + 1])
        obs_descriptor[rows] = features[image].descriptors[obs_keypoint[rows]]
        obs_keypoint_uv[rows] = features[image].keypoints[obs_keypoint[rows]]

    codebook = train_codebook([f.descriptors for f in features], config)
    global_descriptor = np.stack([vlad(f.descriptors, codebook) for f in features])
    stats = {"points": len(tracks), "observations": int(len(order)),
             "mean_track_length": round(float(tracks.lengths.mean()), 3) if len(tracks) else 0.0,
             "map_points": pram_map.num_points, "extract_s": round(extract_s, 2),
             "build_s": round(time.perf_counter() - start, 2)}
    meta = {"format": DATABASE_FORMAT, "version": DATABASE_VERSION, "map_fingerprint": map_fingerprint(pram_map),
            "extractor": pram_map.meta["extractor"], "config": asdict(config),
            "image_names": list(pram_map.image_names), "stats": stats}
    logger.info("retrieval database: %d points, %d observations over %d images, %.1f s", len(tracks), len(order),
                pram_map.num_images, stats["build_s"])
    return RetrievalDatabase(meta, tracks.xyz.astype(np.float32), offsets, obs_point.astype(np.int32), obs_descriptor,
                             obs_keypoint_uv, global_descriptor.astype(np.float32), codebook)


# ----------------------------------------------------------------------------------------
# File

def default_database_path(map_path: str | Path) -> Path:
    """MAP.npz -> MAP.retrieval.npz, beside the map."""
    map_path = Path(map_path)
    return map_path.with_name(map_path.name.removesuffix(map_path.suffix) + ".retrieval.npz")


def save_retrieval_database(database: RetrievalDatabase, path: str | Path) -> int:
    """Write atomically (a temporary file, then a rename); return the bytes written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = np.frombuffer(json.dumps(database.meta, sort_keys=True).encode("utf-8"), np.uint8)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, **{META_FIELD: meta}, **database.arrays())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path.stat().st_size


def load_retrieval_database(path: str | Path, pram_map: PramMap | None = None) -> RetrievalDatabase:
    """Read a retrieval database; with `pram_map`, refuse one built for another map."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no retrieval database; build it for the map with "
                                "build_retrieval_database() (pram bench and pram eval --method retrieval "
                                "build it when missing)")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:  # not a zip, truncated
        raise RetrievalDatabaseError(f"{path}: not a readable .npz retrieval database ({type(exc).__name__}: {exc})")
    with npz:
        try:
            meta = json.loads(npz[META_FIELD].tobytes().decode("utf-8"))
        except (KeyError, ValueError):
            meta = {}
        if meta.get("format") == DATABASE_FORMAT and meta.get("version") != DATABASE_VERSION:
            raise OldRetrievalDatabase(f"{path}: version {meta.get('version')!r}, this pram_ros reads version "
                                       f"{DATABASE_VERSION}: rebuild it (--rebuild-retrieval)")
        missing = [name for name in (META_FIELD, *ARRAYS) if name not in npz.files]
        if missing:
            raise RetrievalDatabaseError(f"{path}: missing arrays {missing}: not a {DATABASE_FORMAT} file")
        try:
            meta = json.loads(npz[META_FIELD].tobytes().decode("utf-8"))
            arrays = {name: npz[name] for name in ARRAYS}
        except ValueError as exc:  # object arrays need pickle, which is refused
            raise RetrievalDatabaseError(f"{path}: cannot be read without pickle ({exc})") from None
    if meta.get("format") != DATABASE_FORMAT or meta.get("version") != DATABASE_VERSION:
        raise RetrievalDatabaseError(f"{path}: format {meta.get('format')!r} version {meta.get('version')!r}, "
                                     f"expected {DATABASE_FORMAT!r} version {DATABASE_VERSION}: rebuild it")
    for name, (dtype, ndim) in ARRAYS.items():
        if arrays[name].dtype != dtype or arrays[name].ndim != ndim:
            raise RetrievalDatabaseError(f"{path}: {name}: expected {np.dtype(dtype)} with {ndim} dimensions, "
                                         f"got {arrays[name].dtype} {arrays[name].shape}")
    database = RetrievalDatabase(meta, **arrays)
    images = len(meta.get("image_names", []))
    if len(database.image_obs_offsets) != images + 1 or database.num_images != images \
            or database.image_obs_offsets[-1] != len(database.obs_point) \
            or len(database.obs_descriptor) != len(database.obs_point) \
            or len(database.obs_keypoint_uv) != len(database.obs_point) \
            or (len(database.obs_point) and database.obs_point.max() >= len(database.point_xyz)):
        raise RetrievalDatabaseError(f"{path}: image_obs_offsets, obs_point, obs_descriptor and global_descriptor "
                                     f"disagree with {images} images and {len(database.point_xyz)} points")
    if pram_map is not None:
        expected = map_fingerprint(pram_map)
        if meta.get("map_fingerprint") != expected:
            raise RetrievalDatabaseError(
                f"{path}: map_fingerprint {str(meta.get('map_fingerprint'))[:12]}... is not the map's "
                f"{expected[:12]}...: it was built for another map (stale); rebuild it (--rebuild-retrieval)")
    return database
