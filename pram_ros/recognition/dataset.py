"""Training data for the recognizer, labelled by the map alone.

In: one or more `PramMap`s (a map set shares one label space: each map's landmarks come
after the previous map's) and their database images, found through the map's recorded
source (an image folder or a rosbag2) or given explicitly. Out: a `TrainingSet` of
per-image examples: keypoints, descriptors and a label per keypoint.

Labels come from the map's geometry. A database image's pose projects the kept 3D points
it observed; a keypoint within `near_px` of such a point takes that point's landmark id.
A keypoint farther than `far_px` from every one is background (0). Keypoints in between
are ambiguous (the map dropped redundant points, so a landmark's surface is covered only
to within a few pixels) and carry IGNORE, which the loss skips. So do keypoints near map
points the image did not observe: without depth, nothing tells whether those are hidden.

Each image is also re-extracted under a random photometric change (gamma, gain, colour,
a brightness ramp), and from a random crop blown up to full size (a closer view), so the
recognizer sees descriptors of other lighting and other scales.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial import cKDTree
from pram_ros.progress import progress

from pram_ros.features import ExtractorConfig, Features, create_extractor
from pram_ros.geometry import in_view, project_points
from pram_ros.io.imageset import ImageSet, images_from_bag, images_from_folder, images_from_source
from pram_ros.mapping.mapfile import PramMap, map_fingerprint

logger = logging.getLogger(__name__)

IGNORE = -1
MIN_VISIBLE_POINTS = 20  # a landmark counts as seen in a frame with at least this many points


@dataclass
class LabelConfig:
    near_px: float = 12.0
    far_px: float = 30.0
    photometric_variants: int = 1  # extra extractions per image under a random lighting change
    zoom_variants: int = 1  # extra extractions of a random crop blown up to full size (a closer view)
    zoom_range: tuple[float, float] = (1.25, 2.0)
    max_keypoints: int = 2048  # extracted per image; training draws subsets of these
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.near_px <= self.far_px:
            raise ValueError(f"LabelConfig: need 0 < near_px <= far_px, got {self.near_px}, {self.far_px}")
        if self.photometric_variants < 0 or self.zoom_variants < 0 or self.max_keypoints < 1:
            raise ValueError("LabelConfig: variant counts must be >= 0 and max_keypoints >= 1")
        if not 1.0 <= self.zoom_range[0] <= self.zoom_range[1]:
            raise ValueError(f"LabelConfig: zoom_range must be 1 <= low <= high, got {self.zoom_range}")


@dataclass
class Scene:
    """One map of a map set, and where its labels sit in the shared label space."""

    name: str
    fingerprint: str
    num_landmarks: int
    label_offset: int  # global id = label_offset + the map's landmark id

    def to_dict(self) -> dict:
        return {"name": self.name, "fingerprint": self.fingerprint, "num_landmarks": self.num_landmarks,
                "label_offset": self.label_offset}


def label_space(maps: list[PramMap], names: list[str]) -> list[Scene]:
    scenes, offset = [], 0
    for pram_map, name in zip(maps, names):
        scenes.append(Scene(name, map_fingerprint(pram_map), pram_map.num_landmarks, offset))
        offset += pram_map.num_landmarks
    return scenes


@dataclass
class Example:
    """One image's keypoints (sorted by score), descriptors (float16), labels (global ids or IGNORE)."""

    keypoints: np.ndarray
    descriptors: np.ndarray
    labels: np.ndarray
    image_size: tuple[int, int]
    scene: int
    frame: int  # the database image index in its map
    variant: int  # 0: the image as recorded; >0: a photometric change
    visible: np.ndarray  # global landmark ids seen with >= MIN_VISIBLE_POINTS points


@dataclass
class TrainingSet:
    scenes: list[Scene]
    examples: list[Example] = field(default_factory=list)
    descriptor_dim: int = 0

    @property
    def num_classes(self) -> int:
        return 1 + sum(s.num_landmarks for s in self.scenes)

    def label_counts(self) -> np.ndarray:
        counts = np.zeros(self.num_classes, np.int64)
        for example in self.examples:
            labels = example.labels[example.labels >= 0]
            counts += np.bincount(labels, minlength=self.num_classes)
        return counts


def label_keypoints(keypoints: np.ndarray, points_uv: np.ndarray, points_label: np.ndarray,
                    near_px: float, far_px: float, unsure_uv: np.ndarray | None = None) -> np.ndarray:
    """Landmark of the nearest projected point within near_px; 0 beyond far_px; IGNORE between.
    Keypoints within far_px of `unsure_uv` (map points that may or may not be in view) are
    IGNORE too, unless a point of `points_uv` labelled them."""
    labels = np.zeros(len(keypoints), np.int64)
    if len(keypoints) == 0:
        return labels
    if len(points_uv):
        distance, nearest = cKDTree(points_uv).query(keypoints, k=1)
        labels[distance <= near_px] = points_label[nearest[distance <= near_px]]
        labels[(distance > near_px) & (distance <= far_px)] = IGNORE
    if unsure_uv is not None and len(unsure_uv):
        distance, _ = cKDTree(unsure_uv).query(keypoints, k=1)
        labels[(labels == 0) & (distance <= far_px)] = IGNORE
    return labels


def photometric_change(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random global lighting change: gamma, gain, colour cast and a linear brightness ramp."""
    height, width = rgb.shape[:2]
    image = rgb.astype(np.float32) / 255.0
    image = image ** rng.uniform(0.6, 1.6)
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = ((xs / width - 0.5) * np.cos(angle) + (ys / height - 0.5) * np.sin(angle)) * rng.uniform(0, 0.8)
    gain = rng.uniform(0.5, 1.4) * (1.0 + ramp)
    colour = rng.uniform(0.8, 1.2, size=3).astype(np.float32)
    image = image * gain[..., None] * colour + rng.uniform(-0.05, 0.05)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def zoom_in(rgb: np.ndarray, zoom: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random crop 1/zoom the size of the image, resized back to full size: how the scene
    looks from closer. Returns the image and (scale, offset) with new_px = scale * old_px + offset."""
    height, width = rgb.shape[:2]
    crop_w, crop_h = width / zoom, height / zoom
    x0, y0 = rng.uniform(0, width - crop_w), rng.uniform(0, height - crop_h)
    scale = np.array([width / crop_w, height / crop_h])
    # Pixel centres: old u maps to (u + 0.5 - x0) * scale - 0.5.
    offset = 0.5 * scale - 0.5 - np.array([x0, y0]) * scale
    affine = np.array([[scale[0], 0.0, offset[0]], [0.0, scale[1], offset[1]]])
    image = cv2.warpAffine(rgb, affine, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return image, scale, offset


def database_images(pram_map: PramMap, images: str | Path | None = None) -> ImageSet:
    """The map's database images: from `images` (a folder, or a bag) or the map's recorded source."""
    source = pram_map.meta.get("source") or {}
    if images is not None:
        if source.get("sessions"):
            raise ValueError(f"{images}: the map holds {len(source['sessions'])} sessions and reads their images "
                             "where they were recorded; drop --images")
        path = Path(images)
        if path.is_dir() and not (path / "metadata.yaml").exists():
            return images_from_folder(path, Path(source["camera"]) if source.get("camera") and
                                      Path(source["camera"]).exists() else None)
        if "image_topic" not in source:
            raise ValueError(f"{path}: a bag, but the map records no image topic; build the map from the bag")
        return images_from_bag(path, source["image_topic"], source.get("camera_info_topic"))
    return images_from_source(source)


def database_frames(pram_map: PramMap, images: ImageSet) -> Iterator[tuple[int, np.ndarray]]:
    """(map image index, RGB) for every database image, matched by name."""
    index_of = {name: i for i, name in enumerate(pram_map.image_names)}
    missing = set(index_of) - set(images.names)
    if missing:
        raise ValueError(f"{len(missing)} of the map's {len(index_of)} images are not in the image source "
                         f"(first: {sorted(missing)[0]}): is it the source the map was built from?")
    for position, rgb in images.frames():
        name = images.names[position]
        if name in index_of:
            yield index_of[name], rgb


def build_training_set(maps: list[PramMap], image_sets: list[ImageSet], scenes: list[Scene],
                       config: LabelConfig | None = None, num_threads: int | None = None,
                       known_features: list[dict[str, Features]] | None = None) -> TrainingSet:
    """Extract and label every database image of every map (see the module docstring).
    `known_features` (per map, by image name): the map build's features of the recorded
    images, used as they are when the map's extractor kept `config.max_keypoints`."""
    config = config or LabelConfig()
    rng = np.random.default_rng(config.seed)
    extractor_config = ExtractorConfig.from_dict(maps[0].extractor_config())
    for pram_map in maps[1:]:
        if not extractor_config.same_descriptors(ExtractorConfig.from_dict(pram_map.extractor_config())):
            raise ValueError("the maps of a map set must share one feature extractor")
    extractor = create_extractor(extractor_config, num_threads=num_threads, max_keypoints=config.max_keypoints)
    if known_features is None or extractor_config.max_keypoints != config.max_keypoints:
        known_features = [{} for _ in maps]
    elif any(known_features):
        logger.info("training data: the map build's features of %d recorded images reused",
                    sum(len(known) for known in known_features))
    training_set = TrainingSet(scenes, descriptor_dim=maps[0].descriptor_dim)
    total = sum(m.num_images for m in maps) * (1 + config.photometric_variants + config.zoom_variants)
    bar = progress(total=total, desc="training data", unit="image", leave=False)
    for scene_index, (pram_map, images, scene, known) in enumerate(zip(maps, image_sets, scenes, known_features)):
        observed = pram_map.points_per_image()
        for frame, rgb in database_frames(pram_map, images):
            camera = pram_map.image_camera[frame]
            width, height = (int(v) for v in pram_map.camera_size[camera])
            points = observed[frame]
            all_uv, all_depth = project_points(pram_map.point_xyz, pram_map.cam_from_world(frame), pram_map.K(camera))
            points_uv = all_uv[points]
            # Map points in view that this image did not observe may be hidden behind
            # something, or not: keypoints near them are neither landmark nor background.
            unseen = in_view(all_uv, all_depth, width, height)
            unseen[points] = False
            unsure_uv = all_uv[unseen]
            points_label = pram_map.point_landmark[points] + scene.label_offset
            counts = np.bincount(points_label, minlength=1)
            visible = np.flatnonzero(counts >= MIN_VISIBLE_POINTS)
            for variant in range(1 + config.photometric_variants + config.zoom_variants):
                image, uv, unsure = rgb, points_uv, unsure_uv
                if variant > config.photometric_variants:
                    image, scale, offset = zoom_in(rgb, rng.uniform(*config.zoom_range), rng)
                    uv, unsure = points_uv * scale + offset, unsure_uv * scale + offset
                if variant > 0 and (variant <= config.photometric_variants or rng.random() < 0.5):
                    image = photometric_change(image, rng)
                features = known.get(pram_map.image_names[frame]) if variant == 0 else None
                features = features if features is not None else extractor.extract(image)
                labels = label_keypoints(features.keypoints, uv, points_label, config.near_px, config.far_px,
                                         unsure)
                training_set.examples.append(Example(
                    features.keypoints, features.descriptors.astype(np.float16), labels.astype(np.int16),
                    features.image_size, scene_index, frame, variant, visible))
                bar.update()
    bar.close()
    counts = training_set.label_counts()
    logger.info("training data: %d examples, %d labelled keypoints, %.0f%% background, %d ignored",
                len(training_set.examples), counts.sum(), 100.0 * counts[0] / max(counts.sum(), 1),
                sum(int((e.labels == IGNORE).sum()) for e in training_set.examples))
    return training_set
