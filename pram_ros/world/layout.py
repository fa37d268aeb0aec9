"""The floor plan of the demo world: rooms and the doors between them.

In: a seed, a room count and a kind ("main" or "foreign").
Out: a `Layout`: rooms in route order, doors, wall faces and the clearance of points
from walls. trajectories.py plans camera paths in it, furnish.py dresses it.

World frame = ROS `map` (REP-103): x forward, y left, z up, metres, floor at z = 0.
Rooms sit on a grid and are numbered in route order (a serpentine over the grid), so
room k and room k + 1 always share a wall with a door in it. Every room draws its own
inner wall faces; the walls between rooms are `WALL_THICKNESS` thick, with jambs and a
lintel around each doorway.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

WALL_THICKNESS = 0.2
DOOR_WIDTH = 1.0
DOOR_HEIGHT = 2.1
MAX_ROOMS = 64  # size of the lamp uniform array in the shader


@dataclass(frozen=True)
class Room:
    """An axis-aligned room interior [x0, x1] x [y0, y1] x [0, height]."""

    index: int
    row: int
    col: int
    x0: float
    y0: float
    x1: float
    y1: float
    height: float

    @property
    def center(self) -> np.ndarray:
        return np.array([(self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2])

    @property
    def half_size(self) -> np.ndarray:
        return np.array([(self.x1 - self.x0) / 2, (self.y1 - self.y0) / 2])

    def margin(self, xy: np.ndarray) -> np.ndarray:
        """Signed distance from points [N x 2] to the nearest wall plane (> 0 inside)."""
        xy = np.atleast_2d(xy)
        return np.minimum.reduce([xy[:, 0] - self.x0, self.x1 - xy[:, 0], xy[:, 1] - self.y0, self.y1 - xy[:, 1]])


@dataclass(frozen=True)
class Door:
    """A doorway from room `room_a` to room `room_b`; `center` lies mid-wall, `normal` points a -> b."""

    room_a: int
    room_b: int
    center: np.ndarray
    normal: np.ndarray
    width: float = DOOR_WIDTH
    height: float = DOOR_HEIGHT

    @property
    def lateral(self) -> np.ndarray:
        """Unit vector along the wall (normal turned left by 90 degrees)."""
        return np.array([-self.normal[1], self.normal[0]])


@dataclass(frozen=True)
class Layout:
    """Rooms in route order and the doors between consecutive rooms (doors[k]: k -> k+1)."""

    kind: str
    rooms: tuple[Room, ...]
    doors: tuple[Door, ...]

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(min xyz, max xyz) of all room interiors."""
        low = np.array([min(r.x0 for r in self.rooms), min(r.y0 for r in self.rooms), 0.0])
        high = np.array([max(r.x1 for r in self.rooms), max(r.y1 for r in self.rooms),
                         max(r.height for r in self.rooms)])
        return low, high

    @property
    def floor_area_m2(self) -> float:
        return float(sum((r.x1 - r.x0) * (r.y1 - r.y0) for r in self.rooms))

    def wall_segments(self) -> np.ndarray:
        """Wall faces seen from above, as 2-D segments [S x 2 x 2]: room faces minus doorways, and jambs."""
        segments = []
        for room in self.rooms:
            for wall in room_walls(room, self.doors):
                for a0, a1 in wall.solid_spans():
                    segments.append((wall.start + wall.along * a0, wall.start + wall.along * a1))
        for door in self.doors:
            for side in (-1.0, 1.0):
                jamb = door.center + door.lateral * side * door.width / 2
                segments.append((jamb - door.normal * WALL_THICKNESS / 2, jamb + door.normal * WALL_THICKNESS / 2))
        return np.array(segments)

    def clearance(self, xy: np.ndarray) -> np.ndarray:
        """Distance of points [N x 2] to the nearest wall face; negative outside rooms and doorways."""
        xy = np.atleast_2d(xy)
        segments = self.wall_segments()
        start, direction = segments[:, 0], segments[:, 1] - segments[:, 0]
        rel = xy[:, None, :] - start[None]
        t = np.clip((rel * direction[None]).sum(-1) / (direction**2).sum(-1)[None], 0.0, 1.0)
        distance = np.linalg.norm(rel - t[..., None] * direction[None], axis=-1).min(axis=1)
        inside = np.zeros(len(xy), bool)
        for room in self.rooms:
            inside |= room.margin(xy) >= 0
        for door in self.doors:
            rel_door = xy - door.center
            inside |= (np.abs(rel_door @ door.normal) <= WALL_THICKNESS / 2) & (
                np.abs(rel_door @ door.lateral) <= door.width / 2)
        return np.where(inside, distance, -distance)


def _serpentine(rows: int, cols: int, count: int) -> list[tuple[int, int]]:
    cells = []
    for row in range(rows):
        order = range(cols) if row % 2 == 0 else range(cols - 1, -1, -1)
        cells.extend((row, col) for col in order)
    return cells[:count]


def make_layout(seed: int, rooms: int, kind: str = "main") -> Layout:
    """Rooms on a grid, connected in a serpentine; sizes and door places drawn from the seed.

    main: rooms about 5 x 4 m, 2.6 m high, on a ceil(sqrt(N))-wide grid.
    foreign: a row of rooms of other sizes (a long hall, then a squarer room), 3.0 m high.
    """
    if not 1 <= rooms <= MAX_ROOMS:
        raise ValueError(f"rooms must be in [1, {MAX_ROOMS}], got {rooms}")
    rng = np.random.default_rng([seed, 101, 0 if kind == "main" else 1])
    if kind == "main":
        cols = math.ceil(math.sqrt(rooms))
        rows = math.ceil(rooms / cols)
        widths = rng.uniform(4.6, 5.4, cols)
        depths = rng.uniform(3.8, 4.4, rows)
        height = 2.6
    elif kind == "foreign":
        cols, rows = rooms, 1
        widths = np.where(np.arange(cols) % 2 == 0, rng.uniform(6.2, 7.0, cols), rng.uniform(4.0, 4.6, cols))
        depths = rng.uniform(3.9, 4.2, rows)
        height = 3.0
    else:
        raise ValueError(f"scene kind must be 'main' or 'foreign', got {kind!r}")
    x_starts = np.concatenate([[0.0], np.cumsum(widths + WALL_THICKNESS)[:-1]])
    y_starts = np.concatenate([[0.0], np.cumsum(depths + WALL_THICKNESS)[:-1]])
    cells = _serpentine(rows, cols, rooms)
    room_list = []
    for index, (row, col) in enumerate(cells):
        x0, y0 = float(x_starts[col]), float(y_starts[row])
        room_list.append(Room(index, row, col, x0, y0, x0 + float(widths[col]), y0 + float(depths[row]), height))
    doors = []
    for a, b in zip(room_list[:-1], room_list[1:]):
        shift = float(rng.uniform(-0.6, 0.6))
        if a.row == b.row:  # neighbours along x
            sign = 1.0 if b.col > a.col else -1.0
            wall_x = (a.x1 + b.x0) / 2 if sign > 0 else (a.x0 + b.x1) / 2
            center = np.array([wall_x, (a.y0 + a.y1) / 2 + shift])
            normal = np.array([sign, 0.0])
        else:  # neighbours along y
            sign = 1.0 if b.row > a.row else -1.0
            wall_y = (a.y1 + b.y0) / 2 if sign > 0 else (a.y0 + b.y1) / 2
            center = np.array([(a.x0 + a.x1) / 2 + shift, wall_y])
            normal = np.array([0.0, sign])
        doors.append(Door(a.index, b.index, center, normal))
    return Layout(kind, tuple(room_list), tuple(doors))


@dataclass(frozen=True)
class Wall:
    """One inner wall face of a room: from `start` along `along` for `length`, facing `normal`."""

    start: np.ndarray
    along: np.ndarray
    normal: np.ndarray
    length: float
    openings: tuple[tuple[float, float], ...]  # (from, to) along the wall, door height

    def point(self, a: float, z: float, offset: float = 0.0) -> np.ndarray:
        return np.array([*(self.start + self.along * a + self.normal * offset), z])

    def solid_spans(self) -> list[tuple[float, float]]:
        spans, cursor = [], 0.0
        for low, high in sorted(self.openings):
            if low > cursor:
                spans.append((cursor, low))
            cursor = max(cursor, high)
        if cursor < self.length:
            spans.append((cursor, self.length))
        return spans


def room_walls(room: Room, doors: tuple[Door, ...]) -> list[Wall]:
    corners = {
        "x-": (np.array([room.x0, room.y0]), np.array([0.0, 1.0]), np.array([1.0, 0.0]), room.y1 - room.y0),
        "y+": (np.array([room.x0, room.y1]), np.array([1.0, 0.0]), np.array([0.0, -1.0]), room.x1 - room.x0),
        "x+": (np.array([room.x1, room.y1]), np.array([0.0, -1.0]), np.array([-1.0, 0.0]), room.y1 - room.y0),
        "y-": (np.array([room.x1, room.y0]), np.array([-1.0, 0.0]), np.array([0.0, 1.0]), room.x1 - room.x0),
    }
    walls = []
    for start, along, normal, length in corners.values():
        openings = []
        for door in doors:
            if room.index not in (door.room_a, door.room_b):
                continue
            # The door is in this wall if the wall's inward normal is parallel to the door normal
            # and the door's centre lies half a wall thickness behind the wall plane.
            behind = float((door.center - start) @ normal)
            if abs(abs(float(normal @ door.normal)) - 1.0) < 1e-6 and abs(behind + WALL_THICKNESS / 2) < 1e-6:
                a = float((door.center - start) @ along)
                openings.append((a - door.width / 2, a + door.width / 2))
        walls.append(Wall(start, along, normal, float(length), tuple(openings)))
    return walls
