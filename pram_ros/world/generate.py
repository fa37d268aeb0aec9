"""Render the demo world: every sequence with exact ground truth, then its rosbag.

In: an output folder (absent or empty) and a `WorldConfig`.
Out, for each sequence in OUT/<sequence>/:
  images/000000.png ...  RGB 8-bit
  depth/000000.png ...   uint16 depth along camera z, millimetres, 0 = no hit
  poses.tum              world_from_cam (OpenCV camera axes), stamps in exact ns
  camera.yaml            ROS camera_calibration format
  sequence.yaml          name, scene, lighting, frames, stamps, seed, bounds, motion
  bag/                   rosbag2 (pram_ros.io.rosbag), unless write_bags=False
and OUT/world.yaml, a summary with render times.

Sequences:
  mapping         the main world, every room, default lighting (`frames` frames)
  query_offpath   main world, rooms 0 -> 1 (a quarter of the rooms in larger worlds),
                  off the mapping path: other places, heights and headings, same lighting
  query_lighting  main world, from the last room back (2 -> 1 by default), off the
                  path, changed lighting
  foreign         another layout with disjoint textures: must not localize
  mapping_lighting  a second mapping session: the mapping path under the changed lighting,
                  half as many frames (`pram map build` takes it as a second session)

The same seed and config give byte-identical images, depth and poses.
"""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml
from pram_ros.progress import progress

from pram_ros.io.camera import save_camera_yaml
from pram_ros.io.images import DEPTH_SCALE, save_depth, save_image
from pram_ros.io.tum import save_tum
from pram_ros.world.furnish import build_scene
from pram_ros.world.layout import Layout, make_layout
from pram_ros.world.render import Renderer
from pram_ros.world.scene import LIGHTINGS, Scene
from pram_ros.world.trajectories import (
    MAPPING_STYLES,
    CameraPath,
    distance_to_path,
    mapping_path,
    motion_per_frame,
    query_path,
    sample_poses,
)

logger = logging.getLogger(__name__)

T0_NS = 1_700_000_000 * 10**9
SESSION_GAP_NS = 86_400 * 10**9  # each sequence is recorded on another day
PERIOD_NS = 100_000_000  # 10 fps
SEQUENCES = ("mapping", "query_offpath", "query_lighting", "foreign", "mapping_lighting")


@dataclass
class WorldConfig:
    """What to render. Query and foreign frame counts follow `frames` unless given."""

    seed: int = 0
    rooms: int = 3
    frames: int = 300
    query_frames: int | None = None  # default max(frames // 3, 10)
    foreign_frames: int | None = None  # default frames // 5, within [8, 60]
    foreign_rooms: int = 2
    width: int = 640
    height: int = 480
    focal_px: float | None = None  # default 525 at 640 px wide (63 deg horizontal field of view)
    storage: str = "mcap"
    write_bags: bool = True
    sequences: tuple[str, ...] = SEQUENCES
    # "spin" turns round on the spot in each room; "orbit" walks a loop looking outwards,
    # which gives SfM without poses the baseline it needs (longer: about 400 natural frames).
    mapping_path: str = "spin"

    def K(self) -> np.ndarray:
        """Pinhole intrinsics, principal point at the image centre."""
        focal = self.focal_px if self.focal_px is not None else 525.0 * self.width / 640.0
        return np.array([[focal, 0.0, (self.width - 1) / 2], [0.0, focal, (self.height - 1) / 2], [0.0, 0.0, 1.0]])

    def frame_count(self, sequence: str) -> int:
        if sequence == "mapping":
            return self.frames
        if sequence == "mapping_lighting":
            return max(self.frames // 2, 2)
        if sequence.startswith("query"):
            return self.query_frames if self.query_frames is not None else max(self.frames // 3, 10)
        return self.foreign_frames if self.foreign_frames is not None else min(max(self.frames // 5, 8), 60)

    def validate(self) -> None:
        unknown = set(self.sequences) - set(SEQUENCES)
        if unknown:
            raise ValueError(f"WorldConfig.sequences: unknown {sorted(unknown)}, expected some of {SEQUENCES}")
        if self.frames < 2:
            raise ValueError(f"WorldConfig.frames must be >= 2, got {self.frames}")
        if self.width < 16 or self.height < 16:
            raise ValueError(f"WorldConfig.width/height must be >= 16, got {self.width}x{self.height}")
        if self.mapping_path not in MAPPING_STYLES:
            raise ValueError(f"WorldConfig.mapping_path must be one of {MAPPING_STYLES}, got {self.mapping_path!r}")
        if self.storage not in ("mcap", "sqlite3"):
            raise ValueError(f"WorldConfig.storage must be 'mcap' or 'sqlite3', got {self.storage!r}")


@dataclass
class SequenceSummary:
    name: str
    scene: str
    lighting: str
    frames: int
    path: Path
    render_s: float
    max_step_m: float
    max_turn_deg: float
    min_median_depth_m: float
    offpath_median_m: float | None = None
    bag: Path | None = None


@dataclass
class WorldSummary:
    out_dir: Path
    seed: int
    rooms: int
    floor_area_m2: float
    sequences: dict[str, SequenceSummary] = field(default_factory=dict)
    total_s: float = 0.0

    def describe(self) -> str:
        lines = [f"world in {self.out_dir}: seed {self.seed}, {self.rooms} rooms, "
                 f"{self.floor_area_m2:.0f} m2, {self.total_s:.1f} s"]
        for s in self.sequences.values():
            extra = f", {s.offpath_median_m:.2f} m off the mapping path" if s.offpath_median_m is not None else ""
            lines.append(f"  {s.name}: {s.frames} frames ({s.scene}, {s.lighting} light), "
                         f"{1000 * s.render_s / max(s.frames, 1):.0f} ms/frame, up to "
                         f"{100 * s.max_step_m:.1f} cm and {s.max_turn_deg:.1f} deg per frame{extra}")
        return "\n".join(lines)


@dataclass
class _Plan:
    """A sequence before rendering: its scene, path and lighting."""

    name: str
    scene: Scene
    path: CameraPath
    lighting: str
    frames: int
    index: int
    mapping: CameraPath | None = None  # for queries: the path they must stay off


def plan_paths(layout: Layout, seed: int, mapping_style: str = "spin") -> dict[str, CameraPath]:
    """The camera paths of the main world's sequences (they depend only on layout, seed and
    the mapping path's style)."""
    mapping = mapping_path(layout, seed, style=mapping_style)
    count = len(layout.rooms)
    span = min(max(2, math.ceil(count / 4)), count)  # rooms each query passes through
    offpath_rooms = tuple(range(span))
    lighting_rooms = tuple(range(count - 1, count - 1 - span, -1))
    return {
        "mapping": mapping,
        "query_offpath": query_path(layout, mapping, seed, "query_offpath", offpath_rooms, z_range=(1.1, 1.9),
                                    z_door=1.85, lateral_m=0.18, heading_bias_deg=25.0),
        "query_lighting": query_path(layout, mapping, seed, "query_lighting", lighting_rooms, z_range=(1.1, 1.9),
                                     z_door=1.15, lateral_m=-0.18, heading_bias_deg=-30.0),
    }


def build_world(config: WorldConfig) -> tuple[dict[str, Scene], dict[str, CameraPath]]:
    """Scenes ('main', 'foreign') and camera paths per sequence, independent of frame counts."""
    main_layout = make_layout(config.seed, config.rooms, "main")
    paths = plan_paths(main_layout, config.seed, config.mapping_path)
    keep_out = np.concatenate([p.xyz[:, :2] for p in paths.values()])
    scenes = {"main": build_scene(main_layout, config.seed, keep_out)}
    if "foreign" in config.sequences:
        foreign_layout = make_layout(config.seed, config.foreign_rooms, "foreign")
        # A walk across the foreign world's big hall, at about the queries' pace.
        paths["foreign"] = query_path(foreign_layout, None, config.seed, "foreign", (0,), z_range=(1.2, 1.8),
                                      z_door=1.5, lateral_m=0.0, heading_bias_deg=0.0)
        scenes["foreign"] = build_scene(foreign_layout, config.seed, paths["foreign"].xyz[:, :2])
    return scenes, paths


def _prepare_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir}: output folder must be empty or absent")
    out_dir.mkdir(parents=True, exist_ok=True)


def _write_frame(seq_dir: Path, index: int, rgb: np.ndarray, depth: np.ndarray) -> None:
    save_image(seq_dir / "images" / f"{index:06d}.png", rgb)
    save_depth(seq_dir / "depth" / f"{index:06d}.png", depth)


def _render_sequence(renderer: Renderer, plan: _Plan, config: WorldConfig, seq_dir: Path,
                     writers: ThreadPoolExecutor) -> SequenceSummary:
    (seq_dir / "images").mkdir(parents=True)
    (seq_dir / "depth").mkdir()
    world_from_cam = sample_poses(plan.path, plan.frames)
    lighting = LIGHTINGS[plan.lighting]
    renderer.set_lighting(lighting, plan.scene.lamps_for(lighting))
    medians = np.empty(plan.frames)
    pending: list[Future] = []
    start = time.perf_counter()
    for index, pose in enumerate(progress(world_from_cam, desc=plan.name, unit="frame", leave=False)):
        rgb, depth = renderer.render(pose)
        medians[index] = float(np.median(depth))
        pending.append(writers.submit(_write_frame, seq_dir, index, rgb, depth))
        if len(pending) > 8:  # bound memory; PNG encoding overlaps the next render
            pending.pop(0).result()
    for future in pending:
        future.result()
    render_s = time.perf_counter() - start

    t0_ns = T0_NS + plan.index * SESSION_GAP_NS
    stamps_ns = t0_ns + np.arange(plan.frames, dtype=np.int64) * PERIOD_NS
    save_tum(seq_dir / "poses.tum", stamps_ns, world_from_cam)
    save_camera_yaml(seq_dir / "camera.yaml", config.K(), config.width, config.height, camera_name="camera")
    max_step, max_turn = motion_per_frame(world_from_cam)
    low, high = plan.scene.layout.bounds
    meta = {
        "name": plan.name,
        "scene": plan.scene.kind,
        "frames": plan.frames,
        "period_ns": PERIOD_NS,
        "t0_ns": int(t0_ns),
        "lighting": plan.lighting,
        "seed": config.seed,
        "rooms": len(plan.scene.layout.rooms),
        "depth_scale": DEPTH_SCALE,
        "bounds": {"min": [round(float(v), 4) for v in low], "max": [round(float(v), 4) for v in high]},
        "floor_area_m2": round(plan.scene.layout.floor_area_m2, 3),
        "path_length_m": round(plan.path.length_m, 3),
        "max_step_m": round(max_step, 4),
        "max_turn_deg": round(max_turn, 3),
    }
    summary = SequenceSummary(plan.name, plan.scene.kind, plan.lighting, plan.frames, seq_dir, render_s,
                              max_step, max_turn, float(medians.min()))
    if plan.mapping is not None:
        summary.offpath_median_m = float(np.median(distance_to_path(world_from_cam[:, :3, 3], plan.mapping)))
        meta["offpath_median_m"] = round(summary.offpath_median_m, 3)
    (seq_dir / "sequence.yaml").write_text(yaml.safe_dump(meta, sort_keys=False, default_flow_style=None))
    if summary.min_median_depth_m < 0.5:
        logger.warning("%s: a frame's median depth is %.2f m (camera close to a surface)", plan.name,
                       summary.min_median_depth_m)
    logger.info("%s: %d frames in %.1f s (%.0f ms/frame), up to %.1f cm and %.1f deg per frame", plan.name,
                plan.frames, render_s, 1000 * render_s / plan.frames, 100 * max_step, max_turn)
    return summary


def generate_world(out_dir: Path, config: WorldConfig | None = None) -> WorldSummary:
    """Render all configured sequences into out_dir (see the module docstring)."""
    config = config or WorldConfig()
    config.validate()
    out_dir = Path(out_dir)
    _prepare_out_dir(out_dir)
    start = time.perf_counter()
    scenes, paths = build_world(config)
    logger.info("built the world in %.1f s: %d rooms, %.0f m2, %d quads, %d texture layers",
                time.perf_counter() - start, config.rooms, scenes["main"].layout.floor_area_m2,
                len(scenes["main"].quads), len(scenes["main"].textures))

    natural = paths["mapping"].natural_frames()
    if config.frames < natural:
        logger.info("mapping: %d frames cover the path at up to %.1f cm and %.1f deg per frame; "
                    "%d frames would keep it within 5 cm and 5 deg", config.frames,
                    5.0 * (natural - 1) / (config.frames - 1), 5.0 * (natural - 1) / (config.frames - 1), natural)

    plans = []
    for index, name in enumerate(SEQUENCES):
        if name not in config.sequences:
            continue
        scene = scenes["foreign" if name == "foreign" else "main"]
        lighting = {"query_lighting": "changed", "mapping_lighting": "changed", "foreign": "foreign"}.get(
            name, "default")
        mapping = paths["mapping"] if name.startswith("query") else None
        path = paths["mapping" if name == "mapping_lighting" else name]
        plans.append(_Plan(name, scene, path, lighting, config.frame_count(name), index, mapping))

    summary = WorldSummary(out_dir, config.seed, config.rooms, scenes["main"].layout.floor_area_m2)
    renderer = Renderer(config.K(), config.width, config.height)
    loaded = None
    try:
        with ThreadPoolExecutor(max_workers=2) as writers:
            for plan in plans:
                if loaded is not plan.scene:
                    renderer.load(plan.scene)
                    loaded = plan.scene
                seq_dir = out_dir / plan.name
                summary.sequences[plan.name] = _render_sequence(renderer, plan, config, seq_dir, writers)
                if config.write_bags:
                    # Last step per sequence: the bag is built from the files written above.
                    from pram_ros.io.rosbag import write_sequence_bag

                    write_sequence_bag(seq_dir, seq_dir / "bag", storage=config.storage, seed=config.seed)
                    summary.sequences[plan.name].bag = seq_dir / "bag"
    finally:
        renderer.release()

    summary.total_s = time.perf_counter() - start
    world = {
        "seed": config.seed,
        "rooms": config.rooms,
        "config": {k: v for k, v in asdict(config).items() if k != "sequences"},
        "floor_area_m2": round(summary.floor_area_m2, 3),
        "textures": {kind: sorted(scene.photo_names) for kind, scene in scenes.items()},
        "sequences": {
            s.name: {"frames": s.frames, "scene": s.scene, "lighting": s.lighting, "render_s": round(s.render_s, 2),
                     "bag": s.bag is not None}
            for s in summary.sequences.values()
        },
        "total_s": round(summary.total_s, 2),
    }
    (out_dir / "world.yaml").write_text(yaml.safe_dump(world, sort_keys=False))
    logger.info("world written to %s in %.1f s", out_dir, summary.total_s)
    return summary
