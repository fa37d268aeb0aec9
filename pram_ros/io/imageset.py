"""An `ImageSet`: the images mapping, recognition and evaluation read.

In: a folder of images (+ camera.yaml, or cameras/NAME.yaml per image for a photo
collection; optional TUM poses), a COLMAP model and its images, or an image topic of a
rosbag2 (+ its CameraInfo, optional PoseStamped topic or TUM poses, else the camera's
odometry from /tf). Out: an `ImageSet`, names + pinhole cameras (one, or one per image) +
optional poses (+ odometry), whose frames are read lazily in order.
Images with distortion (camera.yaml or CameraInfo: plumb_bob or rational_polynomial) are
undistorted as they are read, to the same K: every consumer sees pinhole images.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pram_ros.geometry import transform_from_quat
from pram_ros.io.camera import check_distortion, load_camera_yaml, load_distortion, undistort_maps
from pram_ros.io.colmap import load_colmap_model
from pram_ros.io.images import load_image
from pram_ros.io.odometry import CameraOdometry, camera_odometry
from pram_ros.io.tum import load_tum

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass
class ImageSet:
    """Database images in capture order: names, pinhole cameras, optional poses.

    `frames()` yields (index, RGB uint8 [H x W x 3]) once, in order; images are not
    held in memory. `world_from_cam` is [N x 4 x 4] (OpenCV camera axes) or None.
    `K`, `width`, `height` are the camera of every image, or of the first one where
    `image_K` and `image_size` give each image its own (a photo collection).
    """

    names: list[str]
    K: np.ndarray
    width: int
    height: int
    frames: Callable[[], Iterator[tuple[int, np.ndarray]]]
    world_from_cam: np.ndarray | None
    source: dict
    # Without poses, from a bag's /tf: the camera's odometry (metric, drifting), for
    # pairing and scale.
    odometry: CameraOdometry | None = None
    image_K: np.ndarray | None = None  # [N x 3 x 3], only where the cameras differ
    image_size: np.ndarray | None = None  # [N x 2] width, height, with image_K
    # Several recording sessions joined (`join_sessions`): each image's session index.
    image_session: np.ndarray | None = None  # [N] int

    @property
    def sessions(self) -> np.ndarray:
        """[N]: each image's session (all 0 for one session)."""
        if self.image_session is not None:
            return self.image_session
        return np.zeros(len(self.names), np.int64)

    @property
    def one_camera(self) -> bool:
        return self.image_K is None

    @property
    def Ks(self) -> np.ndarray:  # noqa: N802 (the usual name of the intrinsics)
        """[N x 3 x 3]: each image's K."""
        if self.image_K is not None:
            return self.image_K
        return np.broadcast_to(self.K, (len(self.names), 3, 3))

    @property
    def sizes(self) -> np.ndarray:
        """[N x 2]: each image's width and height."""
        if self.image_size is not None:
            return self.image_size
        return np.broadcast_to(np.array([self.width, self.height]), (len(self.names), 2))

    def camera_of(self, index: int) -> tuple[np.ndarray, int, int]:
        """(K, width, height) of one image."""
        width, height = (int(v) for v in self.sizes[index])
        return self.Ks[index], width, height


def with_cameras(names: list[str], Ks: np.ndarray, sizes: np.ndarray, frames, world_from_cam, source: dict,
                 odometry: CameraOdometry | None = None) -> ImageSet:
    """An ImageSet from per-image cameras, with one camera where they are all the same."""
    Ks, sizes = np.asarray(Ks, np.float64), np.asarray(sizes, np.int64)
    same = bool(np.allclose(Ks, Ks[0], atol=1e-6) and np.all(sizes == sizes[0]))
    return ImageSet(names, Ks[0].copy(), int(sizes[0, 0]), int(sizes[0, 1]), frames, world_from_cam, source, odometry,
                    None if same else Ks, None if same else sizes)


def session_name(session: int, name: str) -> str:
    """An image's name in a map of several sessions: unique across them."""
    return f"session{session}/{name}"


def join_sessions(sets: list[ImageSet]) -> ImageSet:
    """Several recording sessions of one place as one ImageSet, in order: names become
    `session_name(i, name)`. Either every session has poses in the same world frame or none
    has (SfM then registers them together); odometry, one session's own frame, is not kept."""
    if len(sets) == 1:
        return sets[0]
    posed = [s.world_from_cam is not None for s in sets]
    if any(posed) and not all(posed):
        missing = [str(s.source.get("images") or s.source.get("bag")) for s in sets if s.world_from_cam is None]
        raise ValueError(f"sessions: some have poses and some do not ({missing[0]} has none): give poses for "
                         "every session or for none")
    if any(s.odometry is not None for s in sets):
        logger.warning("several sessions: each bag's odometry is in its own frame and is not used")
    names = [session_name(i, name) for i, s in enumerate(sets) for name in s.names]
    sessions = np.concatenate([np.full(len(s.names), i, np.int64) for i, s in enumerate(sets)])

    def frames() -> Iterator[tuple[int, np.ndarray]]:
        offset = 0
        for s in sets:
            for index, rgb in s.frames():
                yield offset + index, rgb
            offset += len(s.names)

    joined = with_cameras(names, np.concatenate([s.Ks for s in sets]), np.concatenate([s.sizes for s in sets]),
                          frames, np.concatenate([s.world_from_cam for s in sets]) if all(posed) else None,
                          {"sessions": [s.source for s in sets]})
    joined.image_session = sessions
    return joined


def images_from_source(source: dict) -> ImageSet:
    """The images a map was built from, read where its recorded `source` says (meta.source)."""
    if source.get("sessions"):
        return join_sessions([images_from_source(session) for session in source["sessions"]])
    if source.get("images"):
        folder = Path(source["images"])
        if not folder.is_dir():
            raise FileNotFoundError(f"the map's images {folder} are not here: pass --images DIR")
        camera = Path(source["camera"]) if source.get("camera") else None
        return images_from_folder(folder, camera if camera and camera.exists() else None)
    if source.get("bag"):
        bag = Path(source["bag"])
        if not bag.exists():
            raise FileNotFoundError(f"the map's bag {bag} is not here: pass --images BAG")
        return images_from_bag(bag, source["image_topic"], source.get("camera_info_topic"))
    raise ValueError("the map records no image source: pass --images DIR")


def with_poses(images: ImageSet, keep: np.ndarray, world_from_cam: np.ndarray) -> ImageSet:
    """The images at indices `keep` (in order), posed by `world_from_cam` [len(keep) x 4 x 4]."""
    keep = np.asarray(keep, np.int64)
    chosen = set(keep.tolist())

    def frames() -> Iterator[tuple[int, np.ndarray]]:
        position = 0
        for index, rgb in images.frames():
            if index in chosen:
                yield position, rgb
                position += 1

    subset = with_cameras([images.names[i] for i in keep], images.Ks[keep], images.sizes[keep], frames,
                          np.asarray(world_from_cam, np.float64), images.source)
    if images.image_session is not None:
        subset.image_session = images.image_session[keep]
    return subset


def _find_camera_yaml(images_dir: Path) -> Path:
    for folder in (images_dir, images_dir.parent):
        for candidate in (folder / "camera.yaml", folder / "cameras"):
            if candidate.is_file() or candidate.is_dir():
                return candidate
    raise FileNotFoundError(f"no camera.yaml (or cameras/ with one NAME.yaml per image) in {images_dir} or its "
                            "parent: pass --camera")


def _folder_cameras(camera: Path, paths: list[Path]) -> tuple[np.ndarray, np.ndarray, list]:
    """Each image's K, size and undistortion maps from camera.yaml, or from the folder
    `camera` of per-image YAMLs (cameras/NAME.yaml, NAME the image's file name without suffix)."""
    if camera.is_dir():
        yamls = [camera / f"{path.stem}.yaml" for path in paths]
        missing = [y.name for y in yamls if not y.is_file()]
        if missing:
            raise FileNotFoundError(f"{camera}: no camera for {len(missing)} of {len(paths)} images, e.g. "
                                    f"{missing[0]} (one NAME.yaml per image)")
    else:
        yamls = [camera] * len(paths)
    by_path = {}
    for yaml_path in dict.fromkeys(yamls):
        K, width, height = load_camera_yaml(yaml_path)
        distortion = load_distortion(yaml_path)
        by_path[yaml_path] = (K, (width, height),
                              undistort_maps(K, width, height, distortion) if len(distortion) else None)
    chosen = [by_path[y] for y in yamls]
    return np.array([c[0] for c in chosen]), np.array([c[1] for c in chosen]), [c[2] for c in chosen]


def images_from_folder(images_dir: Path, camera_yaml: Path | None = None, poses_tum: Path | None = None) -> ImageSet:
    """Images sorted by name; poses (TUM, world_from_cam) must list one pose per image, in order.
    `camera_yaml` is one camera.yaml or a folder of NAME.yaml, one per image (default: found
    next to the images or in their parent)."""
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir}: not a folder of images")
    paths = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"{images_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    camera_yaml = Path(camera_yaml) if camera_yaml else _find_camera_yaml(images_dir)
    Ks, sizes, undistort = _folder_cameras(camera_yaml, paths)
    world_from_cam = None
    if poses_tum is not None:
        _, world_from_cam = load_tum(poses_tum)
        if len(world_from_cam) != len(paths):
            raise ValueError(f"{poses_tum}: {len(world_from_cam)} poses for {len(paths)} images in {images_dir}; "
                             "the TUM file must list one pose per image, in name order")
    source = {"images": str(images_dir), "camera": str(camera_yaml), "poses": str(poses_tum) if poses_tum else None}
    return with_cameras([p.name for p in paths], Ks, sizes, _read_files(paths, sizes, undistort), world_from_cam,
                        source)


def images_from_colmap(model_dir: Path, images_dir: Path) -> ImageSet:
    """The registered images of a COLMAP model (names relative to `images_dir`), with the
    model's camera and poses: to re-extract our features and triangulate against them."""
    model = load_colmap_model(model_dir)
    images_dir = Path(images_dir)
    paths = [images_dir / name for name in model.names]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"{model_dir}: {len(missing)} of its {len(paths)} registered images are not in "
                                f"{images_dir}, e.g. {missing[0]}")
    source = {"images": str(images_dir), "colmap": str(model_dir), "poses": str(model_dir)}
    return with_cameras(model.names, model.K, model.sizes, _read_files(paths, model.sizes, [None] * len(paths)),
                        model.world_from_cam, source)


def _read_files(paths: list[Path], sizes: np.ndarray,
                undistort: list) -> Callable[[], Iterator[tuple[int, np.ndarray]]]:
    def frames() -> Iterator[tuple[int, np.ndarray]]:
        for index, path in enumerate(paths):
            rgb = load_image(path)
            width, height = (int(v) for v in sizes[index])
            if rgb.shape[:2] != (height, width):
                raise ValueError(f"{path}: {rgb.shape[1]}x{rgb.shape[0]} pixels, camera is {width}x{height}")
            maps = undistort[index]
            yield index, (rgb if maps is None else cv2.remap(rgb, *maps, cv2.INTER_LINEAR))

    return frames


def images_from_bag(bag: Path, image_topic: str, camera_info_topic: str | None = None,
                    pose_topic: str | None = None, poses_tum: Path | None = None,
                    use_odometry: bool = True) -> ImageSet:
    """Images of one topic of a rosbag2 (sensor_msgs/Image in any encoding image_msgs.py
    decodes, or CompressedImage; IMAGE/compressed is read where IMAGE is not recorded),
    named by their header stamp (ns).

    The camera comes from `camera_info_topic` (default: the image topic's sibling
    `camera_info`, /compressed stripped). Poses, optional, come from a PoseStamped topic of the camera optical
    frame in the map, or from a TUM file, matched to images by stamp. Without poses, the
    camera's odometry comes from /tf and /tf_static where they join the camera's frame.
    """
    from pram_ros.io.image_msgs import camera_info_topic_of, decode_image, recorded_image_topic
    from pram_ros.io.rosbag import bag_topics, deserialize, iter_bag_messages  # rosbags only for bags

    bag = Path(bag)
    recorded = recorded_image_topic(image_topic, bag_topics(bag), str(bag))
    if recorded != image_topic:
        logger.info("%s: reading the compressed images on %s", bag, recorded)
    image_topic = recorded
    camera_info_topic = camera_info_topic or camera_info_topic_of(image_topic)
    stamps, camera, poses, camera_frame = [], None, {}, None
    topics = [image_topic, camera_info_topic] + ([pose_topic] if pose_topic else [])
    for topic, msgtype, _, raw in iter_bag_messages(bag, topics):
        if topic == image_topic:
            header = deserialize(raw, msgtype).header
            stamps.append(header.stamp.sec * 1_000_000_000 + header.stamp.nanosec)
            camera_frame = camera_frame or header.frame_id
        elif topic == camera_info_topic and camera is None:
            camera = deserialize(raw, msgtype)
        elif topic == pose_topic:
            message = deserialize(raw, msgtype)
            p, q = message.pose.position, message.pose.orientation
            stamp = message.header.stamp.sec * 1_000_000_000 + message.header.stamp.nanosec
            poses[stamp] = transform_from_quat(np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w]))
    if not stamps:
        raise ValueError(f"{bag}: no messages on image topic {image_topic}")
    if camera is None:
        raise ValueError(f"{bag}: no CameraInfo on {camera_info_topic}: pass --camera-info-topic")
    K = np.asarray(camera.k, float).reshape(3, 3)
    undistort = None
    if np.any(np.abs(np.asarray(camera.d, float)) > 1e-9):
        distortion = np.asarray(camera.d, float)
        check_distortion(camera.distortion_model or "plumb_bob", distortion, f"{bag}: {camera_info_topic}")
        undistort = undistort_maps(K, camera.width, camera.height, distortion)
    if poses_tum is not None:
        tum_stamps, tum_poses = load_tum(poses_tum)
        poses = dict(zip(tum_stamps.tolist(), tum_poses))
    world_from_cam = None
    if pose_topic or poses_tum:
        missing = [s for s in stamps if s not in poses]
        if missing:
            raise ValueError(f"{bag}: {len(missing)} of {len(stamps)} images have no pose with the same stamp "
                             f"(first at {missing[0]} ns)")
        world_from_cam = np.array([poses[s] for s in stamps])
    odometry = None
    if world_from_cam is None and use_odometry and camera_frame:
        odometry = camera_odometry(bag, camera_frame, np.array(stamps, np.int64))
        if odometry is not None:
            logger.info("%s: odometry %s for %d of %d images", bag, odometry.chain, int(odometry.covered.sum()),
                        len(stamps))

    def frames() -> Iterator[tuple[int, np.ndarray]]:
        index = 0
        for _, msgtype, _, raw in iter_bag_messages(bag, [image_topic]):
            image = decode_image(deserialize(raw, msgtype))
            yield index, (image if undistort is None else cv2.remap(image, *undistort, cv2.INTER_LINEAR))
            index += 1

    source = {"bag": str(bag), "image_topic": image_topic, "camera_info_topic": camera_info_topic,
              "pose_topic": pose_topic, "poses": str(poses_tum) if poses_tum else None}
    return ImageSet([str(s) for s in stamps], K, int(camera.width), int(camera.height), frames, world_from_cam, source,
                    odometry)
