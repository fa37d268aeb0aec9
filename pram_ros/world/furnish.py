"""Texturing and furnishing a layout into a `Scene`: floors, walls, posters, lamps, furniture.

In: a `Layout`, a seed, and the camera path points that objects must keep clear of.
Out: a `Scene` (quads, texture layers, default lamp places), the same for the same seed.

Look-alikes on purpose: every room has one real-brick wall, floors repeat one of a
few tiled materials, and one poster appears in every other room. Unique per room:
its other wall materials and tints, 2-3 posters and its furniture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pram_ros.world import textures as tex
from pram_ros.world.layout import DOOR_HEIGHT, WALL_THICKNESS, Layout, Room, Wall, room_walls
from pram_ros.world.scene import Quad, Scene, TextureBank, box_quads, make_quad


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


def _tint(rng: np.random.Generator, spread: float = 0.18) -> np.ndarray:
    return np.clip(1.0 + rng.uniform(-spread, spread, 3), 0.6, 1.2)


def _wall_quads(wall: Wall, layer: int, tint, room: int, height: float, repeat_m: float, uv_offset,
                z0: float = 0.0, z1: float | None = None, offset: float = 0.0) -> list[Quad]:
    """Quads of a wall band [z0, z1] minus its door openings, texture continuous along the wall."""
    z1 = height if z1 is None else z1
    up = np.array([0.0, 0.0, 1.0])
    along3 = np.array([*wall.along, 0.0])

    def band(a0, a1, b0, b1):
        uv0 = (uv_offset[0] + a0 / repeat_m, uv_offset[1] + b0 / repeat_m)
        uv1 = (uv_offset[0] + a1 / repeat_m, uv_offset[1] + b1 / repeat_m)
        return make_quad(wall.point(a0, b0, offset), along3 * (a1 - a0), up * (b1 - b0), layer, uv0, uv1, tint, room)

    quads = [band(a0, a1, z0, z1) for a0, a1 in wall.solid_spans()]
    for a0, a1 in wall.openings:
        if z1 > DOOR_HEIGHT:
            quads.append(band(a0, a1, max(z0, DOOR_HEIGHT), z1))
    return quads


def _poster_slots(rng: np.random.Generator, wall: Wall, count: int,
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

    def against_wall(self, rng, walls: list[Wall], half_along: float, depth: float):
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


def _furnish_room(rng, room: Room, furnisher: _Furnisher, walls: list[Wall], materials: _Materials) -> list[Quad]:
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
                quads.append(make_quad(origin, along * (2 * half[1] - 0.08), [0, 0, height - 0.1], front, (0, 0),
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
        walls = room_walls(room, layout.doors)
        index = room.index
        height = room.height

        # Floor, ceiling, lamp.
        floor = materials.floors[(index + int(rng.integers(0, 2))) % len(materials.floors)]
        floor_repeat = 1.0 if floor != materials.floors[0] else 1.2
        size = np.array([room.x1 - room.x0, room.y1 - room.y0])
        floor_uv = rng.uniform(0, 1, 2)
        quads.append(make_quad((room.x0, room.y0, 0.0), (size[0], 0, 0), (0, size[1], 0), floor,
                           floor_uv, floor_uv + size / floor_repeat, _tint(rng, 0.12), index))
        ceiling = materials.ceilings[int(rng.integers(len(materials.ceilings)))]
        quads.append(make_quad((room.x0, room.y1, height), (size[0], 0, 0), (0, -size[1], 0), ceiling, (0, 0),
                           size / 1.2, _tint(rng, 0.08), index))
        lamp_xy = room.center + rng.uniform(-0.3, 0.3, 2) * room.half_size
        lamps[index] = (*lamp_xy, height - 0.3)
        quads.append(make_quad((lamp_xy[0] - 0.35, lamp_xy[1] + 0.35, height - 0.01), (0.7, 0, 0), (0, -0.7, 0),
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
                quads.append(make_quad(wall.point(a0, z0, 0.018), along3 * (a1 - a0), (0, 0, z1 - z0), layer,
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
            quads.append(make_quad(back + m3 * w / 2, n3 * t, (0, 0, h), jamb, (0, 0), (t, h), (0.8, 0.8, 0.8), index))
            quads.append(make_quad(back - m3 * w / 2 + n3 * t, -n3 * t, (0, 0, h), jamb, (0, 0), (t, h), (0.8, 0.8, 0.8),
                               index))
            # Soffit facing down, threshold facing up.
            quads.append(make_quad(back + m3 * w / 2 + [0, 0, h], n3 * t, -m3 * w, jamb, (0, 0), (t, w), (0.8, 0.8, 0.8),
                               index))
            quads.append(make_quad(back - m3 * w / 2, n3 * t, m3 * w, jamb, (0, 0), (t, w), (0.7, 0.7, 0.7), index))

        furnisher = _Furnisher(layout, room, keep_out_xy, clearance_m)
        quads += _furnish_room(rng, room, furnisher, walls, materials)

    textures = bank.textures
    used_pool = set(tex.PHOTO_POOLS[pool])
    stray = {name for t in textures for name in t.photos} - used_pool
    if stray:
        raise RuntimeError(f"{kind} scene uses photos outside its pool: {sorted(stray)}")
    return Scene(kind, seed, layout, quads, textures, lamps)
