"""Several recording sessions in one map: a map's own sessions, and a later one posed by
localizing its frames against the map (`pram map extend`).

In: a `PramMap` (its recorded image source and poses) and a later session's `ImageSet`.
Out: posed `ImageSet`s, one per session, that `join_sessions` + `build_map` turn into one
map (points both sessions see merged, their looks kept: see sparsify.session_looks).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from pram_ros.geometry import invert, pose_difference
from pram_ros.io.imageset import ImageSet, images_from_source, session_name, with_poses
from pram_ros.mapping.mapfile import PramMap
from pram_ros.progress import progress

logger = logging.getLogger(__name__)

FRAME_PERIOD_NS = 33_333_333  # stamps for a folder of images: a 30 Hz camera's
# A later session's camera moves at most this much per frame where its median pace is less.
MIN_STEP_M = 0.25
MIN_TURN_DEG = 20.0
PACE_FACTOR = 3.0  # times the median step and turn per frame
RUN_MAX_GAP = 2  # frames apart that still continue a run (a missing frame or so)


def map_sessions(pram_map: PramMap) -> list[ImageSet]:
    """The map's sessions as it holds them: each one's registered images, posed as in the map."""
    source = pram_map.meta.get("source") or {}
    sources = source.get("sessions") or [source]
    world_from_cam = {name: invert(pram_map.cam_from_world(index)) for index, name in enumerate(pram_map.image_names)}
    sessions = []
    for number, session_source in enumerate(sources):
        images = images_from_source(session_source)
        names = [session_name(number, name) if len(sources) > 1 else name for name in images.names]
        keep = [index for index, name in enumerate(names) if name in world_from_cam]
        if not keep:
            where = session_source.get("images") or session_source.get("bag")
            raise ValueError(f"none of the map's images are in {where}: is it where the map was built from?")
        sessions.append(with_poses(images, keep, np.array([world_from_cam[names[index]] for index in keep])))
    return sessions


Localize = Callable[[np.ndarray, int, tuple], "np.ndarray | None"]  # (rgb, stamp_ns, (K, width, height))


def localized_session(images: ImageSet, localize: Localize) -> ImageSet:
    """A later session posed by `localize(rgb, stamp_ns, (K, width, height)) -> cam_from_world
    or None` (a localizer on the map, told each image's camera), in capture order; frames
    it does not localize, and frames off the session's trajectory (`on_one_trajectory`),
    are left out."""
    keep, poses = [], []
    for index, rgb in progress(images.frames(), total=len(images.names), desc="localizing", unit="image",
                               leave=False):
        cam_from_world = localize(rgb, index * FRAME_PERIOD_NS, images.camera_of(index))
        if cam_from_world is not None:
            keep.append(index)
            poses.append(invert(cam_from_world))
    keep, poses = np.array(keep, np.int64), np.array(poses).reshape(-1, 4, 4)
    on_path = on_one_trajectory(keep, poses)
    logger.info("the new session: %d of %d images localized on the map; %d of them left out, off the "
                "trajectory the others make (look-alikes)", len(keep), len(images.names), int((~on_path).sum()))
    keep, poses = keep[on_path], poses[on_path]
    if len(keep) < 2:
        raise ValueError(f"{images.source.get('images') or images.source.get('bag')}: {len(keep)} of "
                         f"{len(images.names)} images localized on the map: is it the same place?")
    return with_poses(images, keep, poses)


def on_one_trajectory(frames: np.ndarray, world_from_cam: np.ndarray, min_step_m: float = MIN_STEP_M,
                      min_turn_deg: float = MIN_TURN_DEG, pace_factor: float = PACE_FACTOR) -> np.ndarray:
    """[N] bool: the localized frames (indices in capture order, poses) that lie on one
    trajectory. A look-alike places a frame, or a run of frames, metres away: runs of
    frames are cut where more than RUN_MAX_GAP frames are missing or a step exceeds what the
    camera can move in that many frames (`pace_factor` times the median step, at least
    `min_step_m` and `min_turn_deg` per frame); the longest run is kept, then every other
    run, longest first, whose ends join the kept frames before and after it within the same
    limits. Assumes capture order (a walk, a video); give a photo collection's --poses."""
    count = len(frames)
    if count < 3:
        return np.ones(count, bool)
    gaps = np.diff(frames).astype(float)
    steps, turns = np.array([pose_difference(a, b) for a, b in zip(world_from_cam[:-1], world_from_cam[1:])]).T
    max_step = max(min_step_m, pace_factor * float(np.median(steps / gaps)))
    max_turn = max(min_turn_deg, pace_factor * float(np.median(turns / gaps)))

    def joined(i: int, j: int) -> bool:
        gap = float(frames[j] - frames[i])
        step, turn = pose_difference(world_from_cam[i], world_from_cam[j])
        return step <= max_step * gap and turn <= max_turn * gap

    cuts = [0] + [k + 1 for k in range(count - 1) if gaps[k] > RUN_MAX_GAP or not joined(k, k + 1)] + [count]
    runs = sorted(zip(cuts[:-1], cuts[1:]), key=lambda run: run[0] - run[1])  # longest first
    kept = np.zeros(count, bool)
    start, end = runs[0]
    kept[start:end] = True
    changed = True
    while changed:
        changed = False
        for start, end in runs[1:]:
            if kept[start]:
                continue
            before = np.flatnonzero(kept[:start])
            after = start + np.flatnonzero(kept[start:])  # none inside the run: it is not kept
            if (not len(before) or joined(before[-1], start)) and (not len(after) or joined(end - 1, after[0])):
                kept[start:end] = True
                changed = True
    return kept
