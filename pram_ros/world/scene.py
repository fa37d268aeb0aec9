"""Geometry, materials and lights of the demo world, as textured quads.

In: a seed, a room count and a scene kind ("main" or "foreign"); for furnishing, the
camera paths that objects must keep clear of.
Out: a `Layout` (rooms and doors, used to plan camera paths) and a `Scene` (quads
with texture layers, the texture images, lamp positions), which `render.py` draws.

World frame = ROS `map` (REP-103): x forward, y left, z up, metres, floor at z = 0.
Rooms sit on a grid and are numbered in route order (a serpentine over the grid), so
room k and room k + 1 always share a wall with a door in it. Every room draws its own
inner wall faces; the walls between rooms are `WALL_THICKNESS` thick, with jambs and a
lintel around each doorway.

Look-alikes on purpose: every room has one real-brick wall, floors repeat one of a
few tiled materials, and one poster appears in every other room. Unique per room:
its other wall materials and tints, 2-3 posters and its furniture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pram_ros.world import textures as tex

WALL_THICKNESS = 0.2
DOOR_WIDTH = 1.0
DOOR_HEIGHT = 2.1
MAX_ROOMS = 64  # size of the lamp uniform array in the shader
VERTEX_FLOATS = 14  # position 3, normal 3, uv 2, layer 1, tint 3, room 1, emissive 1
GROW_M = 0.002  # overlap of neighbouring quads (see quads_to_vertices)


@dataclass(frozen=True)
class Lighting:
    """Lambertian lighting: ambient + one directional light + one lamp per room.

    `sun_direction` is the direction the light travels (world frame). Each room's lamp
    sits at its default place shifted by `lamp_shift_m` (clamped inside the room).
    """

    name: str
    ambient: tuple[float, float, float]
    sun_direction: tuple[float, float, float]
    sun_color: tuple[float, float, float]
    lamp_color: tuple[float, float, float]
    lamp_shift_m: tuple[float, float] = (0.0, 0.0)
    lamp_falloff: float = 0.12  # intensity / (1 + falloff * d^2)
    emissive_gain: float = 1.0


LIGHTINGS = {
    "default": Lighting(
        name="default",
        ambient=(0.42, 0.42, 0.42),
        sun_direction=(0.45, 0.6, -0.66),
        sun_color=(0.18, 0.18, 0.17),
        lamp_color=(0.85, 0.83, 0.8),
    ),
    # Dimmer and warmer, the fill light from the other side and each lamp moved.
    "changed": Lighting(
        name="changed",
        ambient=(0.3, 0.25, 0.19),
        sun_direction=(-0.7, -0.35, -0.62),
        sun_color=(0.4, 0.3, 0.16),
        lamp_color=(0.95, 0.7, 0.42),
        lamp_shift_m=(1.3, -1.0),
        lamp_falloff=0.2,
        emissive_gain=0.8,
    ),
    "foreign": Lighting(
        name="foreign",
        ambient=(0.4, 0.42, 0.46),
        sun_direction=(-0.3, 0.5, -0.8),
        sun_color=(0.2, 0.2, 0.22),
        lamp_color=(0.7, 0.75, 0.82),
    ),
}


# --- layout ------------------------------------------------------------------------


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
            for wall in _room_walls(room, self.doors):
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


# --- quads and the texture bank ------------------------------------------------------


@dataclass(frozen=True)
class Quad:
    """A textured rectangle: corner `origin`, edges `u_edge` and `v_edge` (metres).

    Texture coordinates run from `uv0` at the origin to `uv1` at the opposite corner,
    so values > 1 repeat the texture. The visible side is cross(u_edge, v_edge).
    """

    origin: tuple[float, float, float]
    u_edge: tuple[float, float, float]
    v_edge: tuple[float, float, float]
    layer: int
    uv0: tuple[float, float]
    uv1: tuple[float, float]
    tint: tuple[float, float, float]
    room: int
    emissive: bool = False


@dataclass
class TextureBank:
    """Texture layers in upload order; a quad refers to one by index."""

    textures: list[tex.Texture] = field(default_factory=list)

    def add(self, texture: tex.Texture) -> int:
        self.textures.append(texture)
        return len(self.textures) - 1


def _vec(x) -> tuple[float, float, float]:
    return tuple(float(v) for v in x)


def _quad(origin, u_edge, v_edge, layer, uv0, uv1, tint, room, emissive=False) -> Quad:
    return Quad(_vec(origin), _vec(u_edge), _vec(v_edge), int(layer), tuple(map(float, uv0)), tuple(map(float, uv1)),
                _vec(tint), int(room), emissive)


def box_quads(center_xy, half_xy, yaw: float, z0: float, z1: float, layer: int, tint, room: int,
              repeat_m: float | None = None) -> list[Quad]:
    """The four sides and the top of a box standing on z0 (its bottom is never seen).

    With `repeat_m` the texture repeats every repeat_m metres; otherwise each face
    shows the whole texture once.
    """
    c, s = math.cos(yaw), math.sin(yaw)
    axis_x, axis_y = np.array([c, s, 0.0]), np.array([-s, c, 0.0])
    center = np.array([center_xy[0], center_xy[1], 0.0])
    up = np.array([0.0, 0.0, 1.0])
    height = z1 - z0
    quads = []
    for normal, half_normal, along, half_along in (
        (axis_x, half_xy[0], axis_y, half_xy[1]),
        (-axis_x, half_xy[0], -axis_y, half_xy[1]),
        (axis_y, half_xy[1], -axis_x, half_xy[0]),
        (-axis_y, half_xy[1], axis_x, half_xy[0]),
    ):
        origin = center + normal * half_normal - along * half_along + up * z0
        width = 2 * half_along
        uv1 = (width / repeat_m, height / repeat_m) if repeat_m else (1.0, 1.0)
        quads.append(_quad(origin, along * width, up * height, layer, (0, 0), uv1, tint, room))
    origin = center - axis_x * half_xy[0] - axis_y * half_xy[1] + up * z1
    uv1 = (2 * half_xy[0] / repeat_m, 2 * half_xy[1] / repeat_m) if repeat_m else (1.0, 1.0)
    quads.append(_quad(origin, axis_x * 2 * half_xy[0], axis_y * 2 * half_xy[1], layer, (0, 0), uv1, tint, room))
    return quads


def quads_to_vertices(quads: list[Quad], grow_m: float = GROW_M) -> np.ndarray:
    """Two triangles per quad: float32 [6 * len(quads) x VERTEX_FLOATS].

    Each quad grows by grow_m on every side (texture coordinates extended alike), so
    that quads meeting edge to edge overlap: T-junctions and rounding leave no
    one-pixel holes. Overlapping parts of one wall show the same texels.
    """
    rows = np.empty((len(quads) * 6, VERTEX_FLOATS), np.float32)
    for index, quad in enumerate(quads):
        origin, u_edge, v_edge = np.array(quad.origin), np.array(quad.u_edge), np.array(quad.v_edge)
        normal = np.cross(u_edge, v_edge)
        normal /= np.linalg.norm(normal)
        du = grow_m / np.linalg.norm(u_edge)
        dv = grow_m / np.linalg.norm(v_edge)
        corners = ((-du, -dv), (1 + du, -dv), (1 + du, 1 + dv), (-du, -dv), (1 + du, 1 + dv), (-du, 1 + dv))
        for k, (a, b) in enumerate(corners):
            position = origin + a * u_edge + b * v_edge
            uv = (quad.uv0[0] + a * (quad.uv1[0] - quad.uv0[0]), quad.uv0[1] + b * (quad.uv1[1] - quad.uv0[1]))
            rows[index * 6 + k] = (*position, *normal, *uv, quad.layer, *quad.tint, quad.room, float(quad.emissive))
    return rows


# --- the scene -----------------------------------------------------------------------


@dataclass
class Scene:
    """Everything the renderer needs, plus provenance for checks."""

    kind: str
    seed: int
    layout: Layout
    quads: list[Quad]
    textures: list[tex.Texture]
    lamp_positions: np.ndarray  # [rooms x 3], default lamp places

    @property
    def photo_names(self) -> set[str]:
        return {name for texture in self.textures for name in texture.photos}

    def vertices(self) -> np.ndarray:
        return quads_to_vertices(self.quads)

    def lamps_for(self, lighting: Lighting) -> np.ndarray:
        """Lamp positions [rooms x 3] under a lighting, shifted and kept 0.5 m inside each room."""
        lamps = self.lamp_positions.copy()
        for room in self.layout.rooms:
            shifted = lamps[room.index, :2] + np.asarray(lighting.lamp_shift_m)
            lamps[room.index, 0] = np.clip(shifted[0], room.x0 + 0.5, room.x1 - 0.5)
            lamps[room.index, 1] = np.clip(shifted[1], room.y0 + 0.5, room.y1 - 0.5)
        return lamps


@dataclass
class _Materials:
    """Shared material layers of one scene (texture indices), and the pools posters draw from."""

    brick: int
    walls: list[int]
    floors: list[int]
    ceilings: list[int]
    wainscot: list[int]
    crates: list[int]
    metals: list[int]
    books: list[int]
    woods: list[int]
    lamp: int
    shared_poster: int
    poster_photos: tuple[str, ...]


def _make_materials(bank: TextureBank, kind: str, seed: int) -> _Materials:
    rng = np.random.default_rng([seed, 202, 0 if kind == "main" else 1])
    if kind == "main":
        brick = bank.add(tex.photo_wall(rng, "brick", mirror=False))
        walls = [bank.add(tex.plaster(rng)), bank.add(tex.plaster(rng))]
        walls += [bank.add(tex.wallpaper(rng, name)) for name in ("page", "coins", "camera", "moon", "text", "clock")]
        floors = [bank.add(tex.floor_tiles(rng, "gravel")), bank.add(tex.wood(rng, planks=6)),
                  bank.add(tex.photo_wall(rng, "grass"))]
        crates = [bank.add(tex.crate(rng, ("coins", "clock", "logo", "horse", "camera"))) for _ in range(3)]
        posters = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "logo", "moon", "camera", "horse")
    else:
        brick = bank.add(tex.procedural_bricks(rng))
        walls = [bank.add(tex.plaster(rng)), bank.add(tex.plaster(rng))]
        walls += [bank.add(tex.wallpaper(rng, name)) for name in ("cell", "microaneurysms", "shepp_logan_phantom")]
        walls += [bank.add(tex.photo_wall(rng, "retina"))]
        floors = [bank.add(tex.floor_tiles(rng, None)), bank.add(tex.wood(rng, planks=5)),
                  bank.add(tex.photo_wall(rng, "immunohistochemistry"))]
        crates = [bank.add(tex.crate(rng, ("colorwheel", "cell", "motorcycle"))) for _ in range(3)]
        posters = ("retina", "colorwheel", "immunohistochemistry", "motorcycle", "cell")
    ceilings = [bank.add(tex.ceiling_tiles(rng)), bank.add(tex.plaster(rng))]
    wainscot = [bank.add(tex.wood(rng, planks=3)), bank.add(tex.metal(rng))]
    metals = [bank.add(tex.metal(rng)), bank.add(tex.metal(rng))]
    books = [bank.add(tex.books(rng)), bank.add(tex.books(rng))]
    woods = [bank.add(tex.wood(rng, planks=4)), bank.add(tex.wood(rng, planks=8))]
    lamp = bank.add(tex.lamp_panel())
    shared_poster = bank.add(tex.poster(rng, posters, aspect=1.0))
    return _Materials(brick, walls, floors, ceilings, wainscot, crates, metals, books, woods, lamp, shared_poster,
                      posters)


@dataclass(frozen=True)
class _Wall:
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


def _room_walls(room: Room, doors: tuple[Door, ...]) -> list[_Wall]:
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
        walls.append(_Wall(start, along, normal, float(length), tuple(openings)))
    return walls


def _tint(rng: np.random.Generator, spread: float = 0.18) -> np.ndarray:
    return np.clip(1.0 + rng.uniform(-spread, spread, 3), 0.6, 1.2)


def _wall_quads(wall: _Wall, layer: int, tint, room: int, height: float, repeat_m: float, uv_offset,
                z0: float = 0.0, z1: float | None = None, offset: float = 0.0) -> list[Quad]:
    """Quads of a wall band [z0, z1] minus its door openings, texture continuous along the wall."""
    z1 = height if z1 is None else z1
    up = np.array([0.0, 0.0, 1.0])
    along3 = np.array([*wall.along, 0.0])

    def band(a0, a1, b0, b1):
        uv0 = (uv_offset[0] + a0 / repeat_m, uv_offset[1] + b0 / repeat_m)
        uv1 = (uv_offset[0] + a1 / repeat_m, uv_offset[1] + b1 / repeat_m)
        return _quad(wall.point(a0, b0, offset), along3 * (a1 - a0), up * (b1 - b0), layer, uv0, uv1, tint, room)

    quads = [band(a0, a1, z0, z1) for a0, a1 in wall.solid_spans()]
    for a0, a1 in wall.openings:
        if z1 > DOOR_HEIGHT:
            quads.append(band(a0, a1, max(z0, DOOR_HEIGHT), z1))
    return quads


def _poster_slots(rng: np.random.Generator, wall: _Wall, count: int,
                  height: float) -> list[tuple[float, float, float, float]]:
    """Non-overlapping (a0, a1, z0, z1) rectangles on the solid parts of a wall."""
    slots: list[tuple[float, float, float, float]] = []
    spans = [s for s in wall.solid_spans() if s[1] - s[0] > 0.9]
    for _ in range(40 * count):
        if len(slots) == count or not spans:
            break
        a_lo, a_hi = spans[int(rng.integers(len(spans)))]
        width = float(rng.uniform(0.55, min(1.5, a_hi - a_lo - 0.3)))
        aspect = float(rng.uniform(0.65, 1.6))
        poster_h = min(width / aspect, height - 1.25)
        a0 = float(rng.uniform(a_lo + 0.15, a_hi - 0.15 - width))
        z0 = float(rng.uniform(0.95, max(height - 0.2 - poster_h, 0.96)))
        candidate = (a0, a0 + width, z0, z0 + poster_h)
        if all(candidate[1] + 0.15 < s[0] or candidate[0] > s[1] + 0.15 for s in slots):
            slots.append(candidate)
    return slots


def _footprint_distance(points: np.ndarray, center, half, yaw: float) -> np.ndarray:
    """Distance from points [N x 2] to a rotated rectangle (0 inside)."""
    c, s = math.cos(yaw), math.sin(yaw)
    rel = points - np.asarray(center)
    local = np.stack([rel @ np.array([c, s]), rel @ np.array([-s, c])], axis=1)
    outside = np.maximum(np.abs(local) - np.asarray(half), 0.0)
    return np.linalg.norm(outside, axis=1)


class _Furnisher:
    """Places objects in one room, keeping them clear of camera paths, doors and each other."""

    def __init__(self, layout: Layout, room: Room, keep_out_xy: np.ndarray, clearance_m: float):
        self.room = room
        self.clearance_m = clearance_m
        inside = room.margin(keep_out_xy) > -1.0
        self.keep_out = keep_out_xy[inside] if len(keep_out_xy) else np.zeros((0, 2))
        self.doors = [d.center for d in layout.doors if room.index in (d.room_a, d.room_b)]
        self.placed: list[tuple[np.ndarray, np.ndarray, float]] = []

    def fits(self, center, half, yaw) -> bool:
        corners = np.array([[sx * half[0], sy * half[1]] for sx in (-1, 1) for sy in (-1, 1)])
        c, s = math.cos(yaw), math.sin(yaw)
        world = corners @ np.array([[c, s], [-s, c]]) + center
        if np.any(self.room.margin(world) < 0.02):
            return False
        if len(self.keep_out) and np.min(_footprint_distance(self.keep_out, center, half, yaw)) < self.clearance_m:
            return False
        if self.doors and np.min(_footprint_distance(np.array(self.doors), center, half, yaw)) < 1.1:
            return False
        for other_center, other_half, _ in self.placed:
            if np.linalg.norm(center - other_center) < np.linalg.norm(half) + np.linalg.norm(other_half) + 0.15:
                return False
        return True

    def free_standing(self, rng, half) -> tuple[np.ndarray, float] | None:
        room = self.room
        for _ in range(300):
            yaw = float(rng.uniform(-math.pi, math.pi)) if rng.random() < 0.5 else 0.0
            center = np.array([rng.uniform(room.x0 + 0.3, room.x1 - 0.3), rng.uniform(room.y0 + 0.3, room.y1 - 0.3)])
            if self.fits(center, half, yaw):
                self.placed.append((center, np.asarray(half), yaw))
                return center, yaw
        return None

    def against_wall(self, rng, walls: list[_Wall], half_along: float, depth: float):
        for _ in range(300):
            wall = walls[int(rng.integers(len(walls)))]
            spans = [s for s in wall.solid_spans() if s[1] - s[0] > 2 * half_along + 0.2]
            if not spans:
                continue
            a_lo, a_hi = spans[int(rng.integers(len(spans)))]
            a = float(rng.uniform(a_lo + half_along + 0.05, a_hi - half_along - 0.05))
            center = wall.start + wall.along * a + wall.normal * (depth / 2 + 0.02)
            yaw = math.atan2(wall.normal[1], wall.normal[0])
            half = np.array([depth / 2, half_along])
            if self.fits(center, half, yaw):
                self.placed.append((center, half, yaw))
                return center, yaw, half
        return None


def _furnish_room(rng, room: Room, furnisher: _Furnisher, walls: list[_Wall], materials: _Materials) -> list[Quad]:
    quads: list[Quad] = []
    index = room.index
    kinds = ["crates", "table", "pillar", "shelf", "cabinet", "crates"]
    rng.shuffle(kinds)
    for kind in kinds[: int(rng.integers(4, 6))]:
        if kind == "crates":
            half = rng.uniform(0.25, 0.45, 2)
            height = float(rng.uniform(0.4, 0.9))
            spot = furnisher.free_standing(rng, half)
            if spot is None:
                continue
            center, yaw = spot
            layer = materials.crates[int(rng.integers(len(materials.crates)))]
            quads += box_quads(center, half, yaw, 0.0, height, layer, _tint(rng, 0.1), index)
            if rng.random() < 0.6:  # a smaller crate on top, turned
                top_half = half * rng.uniform(0.5, 0.8)
                layer = materials.crates[int(rng.integers(len(materials.crates)))]
                quads += box_quads(center, top_half, yaw + float(rng.uniform(-0.5, 0.5)), height,
                                   height + float(rng.uniform(0.3, 0.5)), layer, _tint(rng, 0.1), index)
        elif kind == "table":
            half = np.array([rng.uniform(0.5, 0.8), rng.uniform(0.35, 0.5)])
            spot = furnisher.free_standing(rng, half)
            if spot is None:
                continue
            center, yaw = spot
            top = materials.woods[int(rng.integers(len(materials.woods)))]
            quads += box_quads(center, half, yaw, 0.70, 0.76, top, _tint(rng, 0.1), index, repeat_m=1.0)
            c, s = math.cos(yaw), math.sin(yaw)
            for sx in (-1, 1):
                for sy in (-1, 1):
                    local = np.array([sx * (half[0] - 0.06), sy * (half[1] - 0.06)])
                    leg = center + np.array([c * local[0] - s * local[1], s * local[0] + c * local[1]])
                    quads += box_quads(leg, (0.03, 0.03), yaw, 0.0, 0.70, materials.metals[0], (0.6, 0.6, 0.6), index,
                                       repeat_m=0.5)
            # Something on the table: a small labelled box.
            layer = materials.crates[int(rng.integers(len(materials.crates)))]
            quads += box_quads(center, (0.15, 0.12), yaw + 0.3, 0.76, 0.98, layer, _tint(rng, 0.1), index)
        elif kind == "pillar":
            half = np.full(2, rng.uniform(0.18, 0.28))
            spot = furnisher.free_standing(rng, half)
            if spot is None:
                continue
            center, _ = spot
            layer = materials.brick if rng.random() < 0.5 else materials.walls[int(rng.integers(len(materials.walls)))]
            quads += box_quads(center, half, 0.0, 0.0, room.height, layer, _tint(rng), index, repeat_m=1.0)
        elif kind in ("shelf", "cabinet"):
            width = float(rng.uniform(0.8, 1.4))
            depth = float(rng.uniform(0.3, 0.45))
            spot = furnisher.against_wall(rng, walls, width / 2, depth)
            if spot is None:
                continue
            center, yaw, half = spot
            height = float(rng.uniform(1.5, 2.0)) if kind == "shelf" else float(rng.uniform(0.8, 1.1))
            body = materials.woods[0] if kind == "shelf" else materials.metals[int(rng.integers(len(materials.metals)))]
            quads += box_quads(center, half, yaw, 0.0, height, body, _tint(rng, 0.1), index, repeat_m=0.8)
            if kind == "shelf":  # books on the front face, just proud of it
                front = materials.books[int(rng.integers(len(materials.books)))]
                normal = np.array([math.cos(yaw), math.sin(yaw), 0.0])
                along = np.array([-math.sin(yaw), math.cos(yaw), 0.0])
                origin = np.array([*center, 0.0]) + normal * (half[0] + 0.005) - along * (half[1] - 0.04) + [0, 0, 0.05]
                quads.append(_quad(origin, along * (2 * half[1] - 0.08), [0, 0, height - 0.1], front, (0, 0),
                                   (1, 1), _tint(rng, 0.1), index))
    return quads


def build_scene(layout: Layout, seed: int, keep_out_xy: np.ndarray | None = None, clearance_m: float = 0.7) -> Scene:
    """Texture and furnish a layout. Objects stay `clearance_m` from every point in keep_out_xy [N x 2]."""
    kind = layout.kind
    keep_out_xy = np.zeros((0, 2)) if keep_out_xy is None else np.asarray(keep_out_xy, float).reshape(-1, 2)
    bank = TextureBank()
    materials = _make_materials(bank, kind, seed)
    quads: list[Quad] = []
    lamps = np.zeros((len(layout.rooms), 3))
    pool = "main" if kind == "main" else "foreign"
    for room in layout.rooms:
        rng = np.random.default_rng([seed, 303, 0 if kind == "main" else 1, room.index])
        walls = _room_walls(room, layout.doors)
        index = room.index
        height = room.height

        # Floor, ceiling, lamp.
        floor = materials.floors[(index + int(rng.integers(0, 2))) % len(materials.floors)]
        floor_repeat = 1.0 if floor != materials.floors[0] else 1.2
        size = np.array([room.x1 - room.x0, room.y1 - room.y0])
        floor_uv = rng.uniform(0, 1, 2)
        quads.append(_quad((room.x0, room.y0, 0.0), (size[0], 0, 0), (0, size[1], 0), floor,
                           floor_uv, floor_uv + size / floor_repeat, _tint(rng, 0.12), index))
        ceiling = materials.ceilings[int(rng.integers(len(materials.ceilings)))]
        quads.append(_quad((room.x0, room.y1, height), (size[0], 0, 0), (0, -size[1], 0), ceiling, (0, 0),
                           size / 1.2, _tint(rng, 0.08), index))
        lamp_xy = room.center + rng.uniform(-0.3, 0.3, 2) * room.half_size
        lamps[index] = (*lamp_xy, height - 0.3)
        quads.append(_quad((lamp_xy[0] - 0.35, lamp_xy[1] + 0.35, height - 0.01), (0.7, 0, 0), (0, -0.7, 0),
                           materials.lamp, (0, 0), (1, 1), (1, 1, 1), index, emissive=True))

        # Walls: one real-brick wall per room (the look-alike), the others drawn per room.
        brick_wall = int(rng.integers(4))
        for wall_index, wall in enumerate(walls):
            if wall_index == brick_wall:
                layer, repeat = materials.brick, float(rng.uniform(0.9, 1.3))
                tint = np.array([1.0, 0.75, 0.62]) * _tint(rng, 0.08) if rng.random() < 0.5 else _tint(rng, 0.08)
            else:
                layer = materials.walls[int(rng.integers(len(materials.walls)))]
                repeat, tint = float(rng.uniform(0.8, 1.6)), _tint(rng)
            quads += _wall_quads(wall, layer, tint, index, height, repeat, rng.uniform(0, 1, 2))
            if wall_index != brick_wall and rng.random() < 0.45:  # wainscot panelling on the lower wall
                panel = materials.wainscot[int(rng.integers(len(materials.wainscot)))]
                quads += _wall_quads(wall, panel, _tint(rng, 0.1), index, height, 0.9, rng.uniform(0, 1, 2),
                                     z0=0.0, z1=float(rng.uniform(0.8, 1.0)), offset=0.006)
            # Skirting board.
            quads += _wall_quads(wall, materials.woods[1], (0.55, 0.5, 0.45), index, height, 0.8, (0, 0),
                                 z0=0.0, z1=0.1, offset=0.012)

        # Posters: unique ones per room, plus the shared look-alike poster in every other room.
        poster_walls = [w for w in range(4) if w != brick_wall]
        rng.shuffle(poster_walls)
        posters_left = int(rng.integers(2, 4))
        shared_wall = poster_walls[0] if index % 2 == 0 else None
        for wall_index in poster_walls:
            wall = walls[wall_index]
            count = 2 if wall.length > 4.5 and posters_left > 1 else 1
            for a0, a1, z0, z1 in _poster_slots(rng, wall, count, height):
                if wall_index == shared_wall:
                    layer = materials.shared_poster
                    shared_wall = None
                    # Square, as its texture: the same poster must look the same in every room.
                    side = min(a1 - a0, height - 0.15 - z0)
                    a1, z1 = a0 + side, z0 + side
                elif posters_left > 0:
                    aspect = (a1 - a0) / (z1 - z0)
                    layer = bank.add(tex.poster(rng, materials.poster_photos, aspect))
                    posters_left -= 1
                else:
                    continue
                along3 = np.array([*wall.along, 0.0])
                quads.append(_quad(wall.point(a0, z0, 0.018), along3 * (a1 - a0), (0, 0, z1 - z0), layer,
                                   (0, 0), (1, 1), (1, 1, 1), index))

        # Door jambs, lintel soffit and threshold, drawn once per door by its first room.
        for door in layout.doors:
            if door.room_a != index:
                continue
            n3 = np.array([*door.normal, 0.0])
            m3 = np.array([*door.lateral, 0.0])
            c3 = np.array([*door.center, 0.0])
            back = c3 - n3 * WALL_THICKNESS / 2
            jamb = materials.woods[0]
            t, w, h = WALL_THICKNESS, door.width, door.height
            quads.append(_quad(back + m3 * w / 2, n3 * t, (0, 0, h), jamb, (0, 0), (t, h), (0.8, 0.8, 0.8), index))
            quads.append(_quad(back - m3 * w / 2 + n3 * t, -n3 * t, (0, 0, h), jamb, (0, 0), (t, h), (0.8, 0.8, 0.8),
                               index))
            # Soffit facing down, threshold facing up.
            quads.append(_quad(back + m3 * w / 2 + [0, 0, h], n3 * t, -m3 * w, jamb, (0, 0), (t, w), (0.8, 0.8, 0.8),
                               index))
            quads.append(_quad(back - m3 * w / 2, n3 * t, m3 * w, jamb, (0, 0), (t, w), (0.7, 0.7, 0.7), index))

        furnisher = _Furnisher(layout, room, keep_out_xy, clearance_m)
        quads += _furnish_room(rng, room, furnisher, walls, materials)

    textures = bank.textures
    used_pool = set(tex.PHOTO_POOLS[pool])
    stray = {name for t in textures for name in t.photos} - used_pool
    if stray:
        raise RuntimeError(f"{kind} scene uses photos outside its pool: {sorted(stray)}")
    return Scene(kind, seed, layout, quads, textures, lamps)
