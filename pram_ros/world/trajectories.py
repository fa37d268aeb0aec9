"""Camera paths through the demo world, and the poses of frames sampled along them.

In: a `Layout` (rooms in route order, doors between them) and a seed.
Out: `CameraPath`s, sampled every 1 cm of arc length (position, yaw, pitch, roll), and
`world_from_cam` poses [N x 4 x 4] (OpenCV camera axes: x right, y down, z forward)
for N frames spaced so that each frame moves about equally, by the larger of
(step / 5 cm) and (turn / 5 deg): a path sampled at its natural frame count moves at
most 5 cm and 5 deg per frame, and fewer frames scale both up evenly.

Paths:
- mapping: through every room in route order. It crosses each door straight on,
  looking through it, and turns a full circle in the middle of each room (270 deg
  where the exits are on adjacent walls: that already shows all four walls), so every
  wall and object is seen. That is the "spin" style; the "orbit" style instead walks a
  loop of ORBIT_M radius in each room looking outwards (a room is entered looking in, and
  the loop starts where that gaze points outwards), so each wall is seen from a baseline.
- query: from one room into the next, away from the mapping path: other places,
  other heights (the `z_door` height while passing a door, to stay off the mapping
  path there too), and headings that sweep about the walking direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import CubicSpline, PchipInterpolator
from scipy.spatial.transform import Rotation

from pram_ros.world.layout import Door, Layout, Room

SAMPLE_M = 0.01
STEP_M = 0.05
STEP_RAD = math.radians(5.0)
DOOR_APPROACH_M = 0.8
MIN_CLEARANCE_M = 0.3  # camera centre to any wall
ORBIT_M = 0.6  # radius of the loop an "orbit" mapping path walks in each room

# Camera optical axes in a REP-103 body frame (x forward, y left, z up).
BODY_FROM_CAM = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass
class CameraPath:
    """A camera path sampled every SAMPLE_M metres of horizontal arc length."""

    name: str
    s: np.ndarray  # [M] arc length, metres
    xyz: np.ndarray  # [M x 3] camera centre in the world
    yaw: np.ndarray  # [M] rad, 0 = looking along world +x, counter-clockwise
    pitch: np.ndarray  # [M] rad, > 0 looks up
    roll: np.ndarray  # [M] rad

    @property
    def length_m(self) -> float:
        return float(self.s[-1])

    def world_from_cam_rotations(self) -> np.ndarray:
        """Rotations [M x 3 x 3] of the camera (OpenCV axes) in the world."""
        return _world_from_cam_rotations(self.yaw, self.pitch, self.roll)

    def natural_frames(self) -> int:
        """Frame count at which no frame moves more than STEP_M or turns more than STEP_RAD."""
        return int(math.ceil(_motion_cost(self)[-1])) + 1


def _world_from_cam_rotations(yaw, pitch, roll) -> np.ndarray:
    world_from_body = Rotation.from_euler("ZYX", np.stack([yaw, -np.asarray(pitch), roll], axis=-1))
    return world_from_body.as_matrix() @ BODY_FROM_CAM


def _motion_cost(path: CameraPath) -> np.ndarray:
    """Cumulative motion [M] in frame units: max(step / STEP_M, turn / STEP_RAD) per sample."""
    rotations = Rotation.from_matrix(path.world_from_cam_rotations())
    turn = (rotations[:-1].inv() * rotations[1:]).magnitude()
    step = np.linalg.norm(np.diff(path.xyz, axis=0), axis=1)
    return np.concatenate([[0.0], np.cumsum(np.maximum(step / STEP_M, turn / STEP_RAD))])


def sample_poses(path: CameraPath, frames: int) -> np.ndarray:
    """world_from_cam [frames x 4 x 4] at equal motion spacing along the path, end to end."""
    if frames < 2:
        raise ValueError(f"{path.name}: need at least 2 frames, got {frames}")
    cost = _motion_cost(path)
    at = np.interp(np.linspace(0.0, cost[-1], frames), cost, np.arange(len(cost)))
    samples = np.arange(len(cost))
    xyz = np.stack([np.interp(at, samples, path.xyz[:, k]) for k in range(3)], axis=1)
    yaw, pitch, roll = (np.interp(at, samples, angle) for angle in (path.yaw, path.pitch, path.roll))
    world_from_cam = np.tile(np.eye(4), (frames, 1, 1))
    world_from_cam[:, :3, :3] = _world_from_cam_rotations(yaw, pitch, roll)
    world_from_cam[:, :3, 3] = xyz
    return world_from_cam


def motion_per_frame(world_from_cam: np.ndarray) -> tuple[float, float]:
    """(largest step in metres, largest turn in degrees) between consecutive poses."""
    step = np.linalg.norm(np.diff(world_from_cam[:, :3, 3], axis=0), axis=1)
    rotations = Rotation.from_matrix(world_from_cam[:, :3, :3])
    turn = np.degrees((rotations[:-1].inv() * rotations[1:]).magnitude())
    return float(step.max()), float(turn.max())


# --- building blocks -----------------------------------------------------------------


def _spline(waypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Smooth curve through waypoints [K x 2]: (s [M], xy [M x 2], s at each waypoint [K])."""
    chord = np.linalg.norm(np.diff(waypoints, axis=0), axis=1)
    if np.any(chord < 1e-3):
        raise ValueError("camera path has repeated waypoints")
    knots = np.concatenate([[0.0], np.cumsum(chord)])
    curve = CubicSpline(knots, waypoints, bc_type="natural")
    fine = np.linspace(0.0, knots[-1], int(knots[-1] / 0.002) + 2)
    fine_xy = curve(fine)
    fine_s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(fine_xy, axis=0), axis=1))])
    s = np.arange(0.0, fine_s[-1], SAMPLE_M)
    xy = np.stack([np.interp(s, fine_s, fine_xy[:, k]) for k in range(2)], axis=1)
    return s, xy, np.interp(knots, fine, fine_s)


def _heading(v: np.ndarray) -> float:
    return math.atan2(float(v[1]), float(v[0]))


def _wrap(angle: float) -> float:
    return (angle + math.pi) % (2 * math.pi) - math.pi


def _half_along(room: Room, direction: np.ndarray) -> float:
    """Half the room's extent along a (unit, axis-aligned) direction."""
    return float(abs(direction[0]) * room.half_size[0] + abs(direction[1]) * room.half_size[1])


def _door_points(door: Door, direction: float, lateral_m: float = 0.0) -> list[np.ndarray]:
    """Before, in and after a door, walking along normal * direction, shifted sideways."""
    normal = door.normal * direction
    side = door.lateral * lateral_m
    center = door.center + side
    return [center - normal * DOOR_APPROACH_M, center, center + normal * DOOR_APPROACH_M]


def _waves(rng: np.random.Generator, s: np.ndarray, amplitude: float, periods_m: tuple[float, ...]) -> np.ndarray:
    """Smooth zero-mean wiggle along s: a sum of sines with seeded phases, peak about `amplitude`."""
    out = np.zeros_like(s)
    for period in periods_m:
        out += np.sin(2 * math.pi * s / period + rng.uniform(0, 2 * math.pi))
    return amplitude * out / len(periods_m)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def _check_clearance(layout: Layout, path: CameraPath) -> None:
    clearance = layout.clearance(path.xyz[:, :2])
    worst = int(np.argmin(clearance))
    if clearance[worst] < MIN_CLEARANCE_M:
        raise RuntimeError(
            f"{path.name}: camera passes {clearance[worst]:.2f} m from a wall at "
            f"xy={path.xyz[worst, :2].round(2).tolist()} (need >= {MIN_CLEARANCE_M} m)"
        )


# --- mapping -------------------------------------------------------------------------


MAPPING_STYLES = ("spin", "orbit")


def mapping_path(layout: Layout, seed: int, name: str = "mapping", style: str = "spin") -> CameraPath:
    """Visit every room in route order, turning around in each one ("spin") or walking a
    loop in each one while looking outwards ("orbit"); see the module docstring."""
    if style not in MAPPING_STYLES:
        raise ValueError(f"mapping path style must be one of {MAPPING_STYLES}, got {style!r}")
    rng = np.random.default_rng([seed, 404, 0 if layout.kind == "main" else 1])
    plan = _spin_waypoints if style == "spin" else _orbit_waypoints
    points, yaw_keys = plan(layout, rng)
    return _mapping_path_through(layout, rng, name, points, yaw_keys)


def _spin_waypoints(layout: Layout, rng: np.random.Generator) -> tuple[list[np.ndarray], list[tuple[int, float]]]:
    rooms, doors = layout.rooms, layout.doors
    count = len(rooms)
    points: list[np.ndarray] = []
    yaw_keys: list[tuple[int, float]] = []  # (waypoint index, unwrapped yaw)

    yaw = 0.0
    for k, room in enumerate(rooms):
        door_in = doors[k - 1] if k > 0 else None
        door_out = doors[k] if k < count - 1 else None
        side = 1.0 if rng.random() < 0.5 else -1.0
        c = room.center
        if door_in is None and door_out is None:
            hx, hy = room.half_size
            interior = [c + (-0.4 * hx, -0.3 * hy), c + (0.0, 0.3 * hy), c + (0.4 * hx, -0.2 * hy)]
            spin = side * 2 * math.pi
            yaw = 0.0
        elif door_in is None:
            n = door_out.normal
            m = door_out.lateral
            interior = [c - n * 0.3 * _half_along(room, n) + m * side * 0.3 * _half_along(room, m),
                        c - m * side * 0.25 * _half_along(room, m) + n * 0.1]
            spin = side * 2 * math.pi
            yaw = _heading(n) - spin
        elif door_out is None:
            n = door_in.normal
            m = door_in.lateral
            interior = [c + m * side * 0.25 * _half_along(room, m),
                        c + n * 0.3 * _half_along(room, n) - m * side * 0.3 * _half_along(room, m)]
            spin = side * 2 * math.pi
        else:
            n_in, n_out = door_in.normal, door_out.normal
            turn = _wrap(_heading(n_out) - _heading(n_in))
            if abs(turn) < 0.1:  # doors on opposite walls: walk past the middle, a full turn
                m = door_in.lateral
                interior = [c + m * side * 0.3 * _half_along(room, m)]
                spin = side * 2 * math.pi
            else:  # doors on adjacent walls: swing through the far corner, 270 deg the other way
                interior = [c + n_in * 0.15 * _half_along(room, n_in) - n_out * 0.15 * _half_along(room, n_out)]
                spin = turn - math.copysign(2 * math.pi, turn)
        first = len(points) - 1 if door_in is not None else len(points)
        points.extend(interior)
        yaw_keys.append((first, yaw))
        yaw += spin
        if door_out is not None:
            points.extend(_door_points(door_out, 1.0))
            yaw_keys += [(len(points) - 3, yaw), (len(points) - 2, yaw), (len(points) - 1, yaw)]
        else:
            yaw_keys.append((len(points) - 1, yaw))
    return points, yaw_keys


def _orbit_waypoints(layout: Layout, rng: np.random.Generator) -> tuple[list[np.ndarray], list[tuple[int, float]]]:
    # Looking outwards from a loop, the camera moves sideways to its view all the way round:
    # every wall is seen with a baseline (ORBIT_M * the field of view), which SfM without
    # poses needs. A room is entered looking in; the loop starts where that gaze points out.
    rooms, doors = layout.rooms, layout.doors
    count = len(rooms)
    points: list[np.ndarray] = []
    yaw_keys: list[tuple[int, float]] = []  # (waypoint index, unwrapped yaw)
    yaw: float | None = None
    for k, room in enumerate(rooms):
        door_in = doors[k - 1] if k > 0 else None
        door_out = doors[k] if k < count - 1 else None
        direction = 1.0 if rng.random() < 0.5 else -1.0
        if door_in is None:  # a full loop that ends looking at the exit (anywhere in a lone room)
            sweep = 2 * math.pi
            start = (_heading(door_out.normal) if door_out is not None else 0.0) - direction * sweep
        else:  # enter looking into the room; the loop starts where that gaze points outwards
            start = _heading(door_in.normal)
            sweep = 2 * math.pi
            if door_out is not None:
                turn = (direction * (_heading(door_out.normal) - start)) % (2 * math.pi)
                if 0.1 < turn < math.pi:  # doors on adjacent walls: go the long way round
                    direction, turn = -direction, 2 * math.pi - turn
                if turn > 0.1:
                    sweep = turn
        yaw = start if yaw is None else yaw + _wrap(start - yaw)
        radius = min(ORBIT_M, 0.3 * float(min(room.half_size)))
        steps = max(2, math.ceil(sweep / math.radians(45.0)))
        angles = yaw + direction * sweep * np.arange(steps + 1) / steps
        if door_in is not None:
            yaw_keys.append((len(points) - 1, yaw))
        for angle in angles:
            yaw_keys.append((len(points), float(angle)))
            points.append(room.center + radius * np.array([math.cos(angle), math.sin(angle)]))
        yaw = float(angles[-1])
        if door_out is not None:
            points.extend(_door_points(door_out, 1.0))
            yaw_keys += [(len(points) - 3, yaw), (len(points) - 2, yaw), (len(points) - 1, yaw)]
    return points, yaw_keys


def _mapping_path_through(layout: Layout, rng: np.random.Generator, name: str, points: list[np.ndarray],
                          yaw_keys: list[tuple[int, float]]) -> CameraPath:
    waypoints = np.array(points)
    s, xy, s_at = _spline(waypoints)
    key_s, key_yaw = [], []
    for index, value in yaw_keys:
        if key_s and s_at[index] <= key_s[-1] + 1e-6:
            continue
        key_s.append(s_at[index])
        key_yaw.append(value)
    # Turn at a steady rate through each room: linear keys inside every turning stretch.
    dense_s, dense_yaw = [key_s[0]], [key_yaw[0]]
    for s0, s1, y0, y1 in zip(key_s[:-1], key_s[1:], key_yaw[:-1], key_yaw[1:]):
        if abs(y1 - y0) > 1e-6:
            for fraction in (0.2, 0.4, 0.6, 0.8):
                dense_s.append(s0 + fraction * (s1 - s0))
                dense_yaw.append(y0 + fraction * (y1 - y0))
        dense_s.append(s1)
        dense_yaw.append(y1)
    yaw_dense = PchipInterpolator(dense_s, dense_yaw, extrapolate=True)(s)
    z = 1.5 + _waves(rng, s, 0.08, (5.3, 3.1))
    pitch = np.radians(-2.0 + _waves(rng, s, 7.0, (3.7, 2.3)))
    roll = np.radians(_waves(rng, s, 2.5, (4.1, 2.9)))
    path = CameraPath(name, s, np.column_stack([xy, z]), yaw_dense, pitch, roll)
    _check_clearance(layout, path)
    return path


# --- queries -------------------------------------------------------------------------


def _far_point(room: Room, avoid_xy: np.ndarray, anchor: np.ndarray, want_m: float) -> np.ndarray:
    """A point in the room, >= 1.1 m from its walls, far from avoid_xy and about want_m from anchor."""
    xs = np.arange(room.x0 + 1.1, room.x1 - 1.1 + 1e-9, 0.05)
    ys = np.arange(room.y0 + 1.1, room.y1 - 1.1 + 1e-9, 0.05)
    grid = np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1).reshape(-1, 2)
    near = avoid_xy[room.margin(avoid_xy) > -1.0]
    away = np.full(len(grid), 2.0)
    for chunk in range(0, len(near), 2048):
        d = np.linalg.norm(grid[:, None, :] - near[None, chunk : chunk + 2048, :], axis=2).min(axis=1)
        away = np.minimum(away, d)
    score = np.minimum(away, 0.9) - 0.5 * np.abs(np.linalg.norm(grid - anchor, axis=1) - want_m)
    return grid[int(np.argmax(score))]


def query_path(
    layout: Layout,
    mapping: CameraPath | None,
    seed: int,
    name: str,
    rooms: tuple[int, ...],
    z_range: tuple[float, float],
    z_door: float,
    lateral_m: float,
    heading_bias_deg: float,
) -> CameraPath:
    """Through consecutive route rooms (e.g. (2, 1) or (0, 1, 2, 3)), or across one room alone.

    Waypoints are placed as far as possible from the `mapping` path (when given);
    doors are passed `lateral_m` to the side of their middle.
    """
    rooms = tuple(int(r) for r in rooms)
    if any(abs(b - a) != 1 for a, b in zip(rooms[:-1], rooms[1:])):
        raise ValueError(f"{name}: rooms {rooms} are not consecutive on the route")
    rng = np.random.default_rng([seed, 505, *rooms, 0 if layout.kind == "main" else 1])
    avoid = mapping.xyz[:, :2] if mapping is not None else np.zeros((0, 2))
    door_s: list[int] = []
    if len(rooms) == 1:
        room = layout.rooms[rooms[0]]
        c, (hx, hy) = room.center, room.half_size
        a = _far_point(room, avoid, c + (-0.35 * hx, -0.15 * hy), 0.0)
        b = _far_point(room, avoid, c + (0.35 * hx, -0.15 * hy), 0.0)
        waypoints = np.array([a, c + (0.0, 0.2 * hy), b])
    else:
        crossings = []
        for a, b in zip(rooms[:-1], rooms[1:]):
            crossings.append(_door_points(layout.doors[min(a, b)], 1.0 if b > a else -1.0, lateral_m))
        points = [_far_point(layout.rooms[rooms[0]], avoid, crossings[0][0], 1.4)]
        for index, (before, inside, after) in enumerate(crossings):
            points += [before, inside, after]
            door_s.append(len(points) - 2)
            room = layout.rooms[rooms[index + 1]]
            if index + 1 < len(crossings):  # a room passed through: a point near its middle
                points.append(_far_point(room, avoid, (after + crossings[index + 1][0]) / 2, 0.0))
            else:
                points.append(_far_point(room, avoid, after, 1.4))
        waypoints = np.array(points)
    s, xy, s_at = _spline(waypoints)
    # 0 within 0.5 m of a door, 1 beyond 1.5 m: near doors, look through them at z_door.
    free = np.ones_like(s)
    for index in door_s:
        free = np.minimum(free, _smoothstep(np.abs(s - s_at[index]) - 0.5))
    tangent = np.unwrap(np.arctan2(np.gradient(xy[:, 1]), np.gradient(xy[:, 0])))
    sweep = np.radians(heading_bias_deg) + _waves(rng, s, math.radians(50.0), (4.5, 2.7))
    yaw = tangent + free * sweep
    low, high = z_range
    z_free = (low + high) / 2 + _waves(rng, s, (high - low) / 2, (3.3,))
    z = free * z_free + (1 - free) * z_door
    pitch = np.radians(free * _waves(rng, s, 9.0, (3.1, 1.9)))
    roll = np.radians(_waves(rng, s, 4.0, (2.3,)))
    path = CameraPath(name, s, np.column_stack([xy, z]), yaw, pitch, roll)
    _check_clearance(layout, path)
    return path


def distance_to_path(xyz: np.ndarray, path: CameraPath) -> np.ndarray:
    """Distance [N] from points [N x 3] to the nearest sample of a path."""
    out = np.empty(len(xyz))
    for index, point in enumerate(xyz):
        out[index] = np.linalg.norm(path.xyz - point, axis=1).min()
    return out
