"""The demo world as the renderer takes it: textured quads, texture layers, lamps.

In: quads and texture layers (furnish.py makes them from a `Layout`).
Out: a `Scene` and its vertex array (`quads_to_vertices`), which `render.py` draws
under one of the `LIGHTINGS`. Coordinates are in the world frame of layout.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pram_ros.world import textures as tex
from pram_ros.world.layout import Layout

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


def make_quad(origin, u_edge, v_edge, layer, uv0, uv1, tint, room, emissive=False) -> Quad:
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
        quads.append(make_quad(origin, along * width, up * height, layer, (0, 0), uv1, tint, room))
    origin = center - axis_x * half_xy[0] - axis_y * half_xy[1] + up * z1
    uv1 = (2 * half_xy[0] / repeat_m, 2 * half_xy[1] / repeat_m) if repeat_m else (1.0, 1.0)
    quads.append(make_quad(origin, axis_x * 2 * half_xy[0], axis_y * 2 * half_xy[1], layer, (0, 0), uv1, tint, room))
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
