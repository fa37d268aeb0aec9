"""rosbag2 input/output through the `rosbags` library (no ROS install needed).

Reading: a rosbag2 in -> (topic, msgtype, stamp, CDR bytes) out (`iter_bag_messages`),
rosbags message objects (`deserialize`); image_msgs.py decodes their images.

Writing (`write_sequence_bag`): a sequence folder in (images/, poses.tum, camera.yaml;
see pram_ros.io.tum, .camera, .images) -> a rosbag2 (mcap or sqlite3) out with the
topics a robot would record, so replay and evaluation exercise the same paths as live data:

- /camera/image_raw (sensor_msgs/Image, rgb8) and /camera/camera_info;
- /ground_truth/pose (geometry_msgs/PoseStamped of the camera optical frame in `map`);
- /tf: odom -> base_link at twice the frame rate, where odom drifts slowly from map;
- /tf_static: base_link -> camera optical frame (transient local).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from pram_ros.geometry import (
    interpolate_transforms,
    invert,
    make_transform,
    quat_from_transform,
    yaw_transform,
)
from pram_ros.io.camera import load_camera_yaml, load_distortion
from pram_ros.io.images import load_image
from pram_ros.io.tum import load_tum

logger = logging.getLogger(__name__)

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}

# Camera optical axes (x right, y down, z forward) in a REP-103 body frame (x forward,
# y left, z up), mounted 10 cm ahead of and 20 cm above base_link.
BASE_FROM_CAMERA = make_transform(
    np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]), np.array([0.1, 0.0, 0.2])
)


@dataclass(frozen=True)
class BagTopics:
    """Topic and frame names of a recorded camera sequence."""

    image: str = "/camera/image_raw"
    camera_info: str = "/camera/camera_info"
    ground_truth: str = "/ground_truth/pose"
    tf: str = "/tf"
    tf_static: str = "/tf_static"
    map_frame: str = "map"
    odom_frame: str = "odom"
    base_frame: str = "base_link"
    camera_frame: str = "camera_optical_frame"


@dataclass(frozen=True)
class OdomDrift:
    """Slow, smooth drift of odom from map, as wheel odometry accumulates it.

    map_from_odom(t) = planar transform with yaw = yaw_rate * t and translation
    speed * t along `heading`, plus a small oscillation.
    """

    yaw_rate_rad_s: float
    speed_m_s: float
    heading_rad: float

    @classmethod
    def from_seed(cls, seed: int) -> "OdomDrift":
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0xD21F7]))
        return cls(
            yaw_rate_rad_s=float(np.deg2rad(rng.uniform(0.1, 0.3)) * rng.choice([-1.0, 1.0])),
            speed_m_s=float(rng.uniform(0.005, 0.015)),
            heading_rad=float(rng.uniform(-np.pi, np.pi)),
        )

    def map_from_odom(self, seconds: float) -> np.ndarray:
        distance = self.speed_m_s * seconds + 0.01 * np.sin(0.2 * seconds)
        return yaw_transform(
            distance * np.cos(self.heading_rad),
            distance * np.sin(self.heading_rad),
            self.yaw_rate_rad_s * seconds,
        )


@functools.lru_cache(maxsize=1)
def _typestore():
    return get_typestore(Stores.ROS2_JAZZY)


def _qos(durability: QosDurability, depth: int = 1) -> Qos:
    zero = QosTime(sec=0, nsec=0)
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=depth,
        reliability=QosReliability.RELIABLE,
        durability=durability,
        deadline=zero,
        lifespan=zero,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=zero,
        avoid_ros_namespace_conventions=False,
    )


class _MessageFactory:
    """Builds rosbags message objects of the ROS 2 Jazzy types."""

    def __init__(self, typestore) -> None:
        self.types = typestore.types

    def header(self, stamp_ns: int, frame_id: str):
        time = self.types["builtin_interfaces/msg/Time"](
            sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000)
        )
        return self.types["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)

    def pose(self, a_from_b: np.ndarray):
        translation, quat = quat_from_transform(a_from_b)
        return self.types["geometry_msgs/msg/Pose"](
            position=self.types["geometry_msgs/msg/Point"](*map(float, translation)),
            orientation=self.types["geometry_msgs/msg/Quaternion"](*map(float, quat)),
        )

    def transform_stamped(self, stamp_ns: int, parent: str, child: str, parent_from_child):
        translation, quat = quat_from_transform(parent_from_child)
        transform = self.types["geometry_msgs/msg/Transform"](
            translation=self.types["geometry_msgs/msg/Vector3"](*map(float, translation)),
            rotation=self.types["geometry_msgs/msg/Quaternion"](*map(float, quat)),
        )
        return self.types["geometry_msgs/msg/TransformStamped"](
            header=self.header(stamp_ns, parent), child_frame_id=child, transform=transform
        )

    def tf_message(self, transforms: list):
        return self.types["tf2_msgs/msg/TFMessage"](transforms=transforms)

    def image_rgb8(self, stamp_ns: int, frame_id: str, rgb: np.ndarray):
        height, width = rgb.shape[:2]
        return self.types["sensor_msgs/msg/Image"](
            header=self.header(stamp_ns, frame_id),
            height=height,
            width=width,
            encoding="rgb8",
            is_bigendian=0,
            step=width * 3,
            data=np.ascontiguousarray(rgb, dtype=np.uint8).reshape(-1),
        )

    def image_compressed(self, stamp_ns: int, frame_id: str, rgb: np.ndarray, image_format: str):
        """JPEG or PNG, as image_transport's compressed plugin publishes it."""
        extension = {"jpeg": ".jpg", "png": ".png"}[image_format]
        ok, data = cv2.imencode(extension, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ValueError(f"could not encode an image as {image_format}")
        return self.types["sensor_msgs/msg/CompressedImage"](
            header=self.header(stamp_ns, frame_id), format=f"rgb8; {image_format} compressed bgr8", data=data.ravel())

    def camera_info(self, stamp_ns: int, frame_id: str, K: np.ndarray, width: int, height: int,
                    distortion: np.ndarray | None = None):
        P = np.zeros((3, 4))
        P[:3, :3] = K
        roi = self.types["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        )
        return self.types["sensor_msgs/msg/CameraInfo"](
            header=self.header(stamp_ns, frame_id),
            height=height,
            width=width,
            distortion_model="rational_polynomial" if distortion is not None and len(distortion) == 8 else "plumb_bob",
            d=np.zeros(5) if distortion is None or not len(distortion) else np.asarray(distortion, np.float64),
            k=np.asarray(K, dtype=np.float64).reshape(-1),
            r=np.eye(3).reshape(-1),
            p=P.reshape(-1),
            binning_x=0,
            binning_y=0,
            roi=roi,
        )


@dataclass
class BagSummary:
    path: Path
    storage: str
    messages: dict[str, int]
    start_ns: int
    end_ns: int


def write_sequence_bag(
    sequence_dir: Path,
    bag_path: Path,
    storage: str = "mcap",
    seed: int = 0,
    topics: BagTopics = BagTopics(),
    image_format: str = "raw",
) -> BagSummary:
    """Write a sequence folder as a rosbag2 at `bag_path` (a new directory). `image_format`
    raw: sensor_msgs/Image rgb8 on topics.image; jpeg or png: CompressedImage on
    topics.image + "/compressed", as image_transport names it."""
    sequence_dir, bag_path = Path(sequence_dir), Path(bag_path)
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {sorted(STORAGES)}, got {storage!r}")
    if image_format not in ("raw", "jpeg", "png"):
        raise ValueError(f"image_format must be raw, jpeg or png, got {image_format!r}")
    image_topic = topics.image if image_format == "raw" else topics.image + "/compressed"
    stamps_ns, world_from_cam = load_tum(sequence_dir / "poses.tum")
    K, width, height = load_camera_yaml(sequence_dir / "camera.yaml")
    distortion = load_distortion(sequence_dir / "camera.yaml")  # written as it is: the bag's images are raw
    image_paths = sorted((sequence_dir / "images").glob("*.png"))
    if len(image_paths) != len(stamps_ns):
        raise ValueError(
            f"{sequence_dir}: {len(image_paths)} images in images/ but "
            f"{len(stamps_ns)} poses in poses.tum"
        )
    if len(stamps_ns) < 2:
        raise ValueError(f"{sequence_dir}: a sequence needs at least 2 frames")

    # odom -> base_link at twice the frame rate, like an odometry source faster than the camera.
    midpoints = (stamps_ns[:-1] + stamps_ns[1:]) // 2
    odom_stamps_ns = np.sort(np.concatenate([stamps_ns, midpoints]))
    world_from_base = interpolate_transforms(stamps_ns, world_from_cam, odom_stamps_ns) @ invert(
        BASE_FROM_CAMERA
    )
    drift = OdomDrift.from_seed(seed)
    t0_ns = int(stamps_ns[0])

    typestore = _typestore()
    make = _MessageFactory(typestore)
    counts: dict[str, int] = {}
    writer = Writer(bag_path, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[storage])
    with writer:
        connection = {}

        def add(topic: str, msgtype: str, durability=QosDurability.VOLATILE, depth: int = 10):
            connection[topic] = writer.add_connection(
                topic, msgtype, typestore=typestore, offered_qos_profiles=[_qos(durability, depth)]
            )

        def write(topic: str, stamp_ns: int, message) -> None:
            data = typestore.serialize_cdr(message, connection[topic].msgtype)
            writer.write(connection[topic], int(stamp_ns), data)
            counts[topic] = counts.get(topic, 0) + 1

        add(image_topic, "sensor_msgs/msg/Image" if image_format == "raw" else "sensor_msgs/msg/CompressedImage")
        add(topics.camera_info, "sensor_msgs/msg/CameraInfo")
        add(topics.ground_truth, "geometry_msgs/msg/PoseStamped")
        add(topics.tf, "tf2_msgs/msg/TFMessage", depth=100)
        add(topics.tf_static, "tf2_msgs/msg/TFMessage", QosDurability.TRANSIENT_LOCAL)

        write(
            topics.tf_static,
            t0_ns,
            make.tf_message(
                [make.transform_stamped(t0_ns, topics.base_frame, topics.camera_frame, BASE_FROM_CAMERA)]
            ),
        )
        odom_index = 0
        for index, stamp_ns in enumerate(stamps_ns.tolist()):
            # Odometry up to and including this frame's stamp goes first, as TF usually
            # arrives before the image that needs it.
            while odom_index < len(odom_stamps_ns) and odom_stamps_ns[odom_index] <= stamp_ns:
                odom_ns = int(odom_stamps_ns[odom_index])
                odom_from_base = invert(drift.map_from_odom((odom_ns - t0_ns) * 1e-9)) @ world_from_base[
                    odom_index
                ]
                message = make.tf_message(
                    [make.transform_stamped(odom_ns, topics.odom_frame, topics.base_frame, odom_from_base)]
                )
                write(topics.tf, odom_ns, message)
                odom_index += 1
            rgb = load_image(image_paths[index])
            if image_format == "raw":
                write(image_topic, stamp_ns, make.image_rgb8(stamp_ns, topics.camera_frame, rgb))
            else:
                write(image_topic, stamp_ns, make.image_compressed(stamp_ns, topics.camera_frame, rgb, image_format))
            write(topics.camera_info, stamp_ns, make.camera_info(stamp_ns, topics.camera_frame, K, width, height,
                                                                 distortion))
            pose = make.types["geometry_msgs/msg/PoseStamped"](
                header=make.header(stamp_ns, topics.map_frame), pose=make.pose(world_from_cam[index])
            )
            write(topics.ground_truth, stamp_ns, pose)
    logger.info("wrote %s (%s): %s", bag_path, storage, counts)
    return BagSummary(bag_path, storage, counts, t0_ns, int(stamps_ns[-1]))


def iter_bag_messages(
    bag_path: Path, topics: Iterable[str] | None = None
) -> Iterator[tuple[str, str, int, bytes]]:
    """Yield (topic, msgtype, bag timestamp ns, raw CDR bytes) in time order."""
    with Reader(Path(bag_path)) as reader:
        wanted = set(topics) if topics is not None else None
        connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
        for connection, timestamp, raw in reader.messages(connections=connections):
            yield connection.topic, connection.msgtype, timestamp, raw


def bag_topics(bag_path: Path) -> dict[str, str]:
    """Every topic of a rosbag2 and its message type."""
    with Reader(Path(bag_path)) as reader:
        return {c.topic: c.msgtype for c in reader.connections}


def deserialize(raw: bytes, msgtype: str):
    """Deserialize CDR bytes of a ROS 2 Jazzy type into a rosbags message object."""
    return _typestore().deserialize_cdr(raw, msgtype)


def bag_storage(bag_path: Path) -> str:
    """Storage plugin id recorded in a rosbag2's metadata.yaml ('mcap' or 'sqlite3')."""
    metadata = yaml.safe_load((Path(bag_path) / "metadata.yaml").read_text())
    return metadata["rosbag2_bagfile_information"]["storage_identifier"]
