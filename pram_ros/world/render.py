"""Offscreen rasteriser for the demo world (moderngl, headless EGL; Mesa llvmpipe on a CPU).

In: a `Scene` (quads, texture layers, lamps), a `Lighting`, pinhole intrinsics K and
a `world_from_cam` pose (OpenCV camera axes: x right, y down, z forward).
Out: an RGB uint8 image [H x W x 3] and a depth map float32 [H x W] in metres along
the camera z axis (0 where nothing was hit), both for the same pixel centres.

The projection is built from K directly, so that pixel (u, v) of the output is the
OpenCV pixel (u, v): its centre sees the ray K^-1 (u, v, 1). The image is rendered
upside down in GL terms, so that GL's first row (bottom) is image row 0 and no flip is
needed on read-back. Depth comes from a float colour attachment holding the
camera-frame z, not from the non-linear depth buffer.
"""

from __future__ import annotations

import numpy as np

from pram_ros.world.layout import MAX_ROOMS
from pram_ros.world.scene import VERTEX_FLOATS, Lighting, Scene

_VERTEX_SHADER = """
#version 330
uniform mat4 cam_from_world;
uniform vec4 clip_x;  // clip = (dot(clip_x, p_cam), dot(clip_y, p_cam), dot(clip_z, p_cam), z)
uniform vec4 clip_y;
uniform vec4 clip_z;
in vec3 in_position;
in vec3 in_normal;
in vec2 in_uv;
in float in_layer;
in vec3 in_tint;
in float in_room;
in float in_emissive;
out vec3 v_world;
out vec3 v_normal;
out vec3 v_uvl;
out vec3 v_tint;
out float v_z;
flat out int v_room;
flat out float v_emissive;
void main() {
    vec4 p_cam = cam_from_world * vec4(in_position, 1.0);
    v_world = in_position;
    v_normal = in_normal;
    v_uvl = vec3(in_uv, in_layer);
    v_tint = in_tint;
    v_z = p_cam.z;
    v_room = int(in_room + 0.5);
    v_emissive = in_emissive;
    gl_Position = vec4(dot(clip_x, p_cam), dot(clip_y, p_cam), dot(clip_z, p_cam), p_cam.z);
}
"""

_FRAGMENT_SHADER = f"""
#version 330
uniform sampler2DArray atlas;
uniform vec3 eye;
uniform vec3 ambient;
uniform vec3 sun_direction;
uniform vec3 sun_color;
uniform vec3 lamp_color;
uniform float lamp_falloff;
uniform float emissive_gain;
uniform vec3 lamps[{MAX_ROOMS}];
in vec3 v_world;
in vec3 v_normal;
in vec3 v_uvl;
in vec3 v_tint;
in float v_z;
flat in int v_room;
flat in float v_emissive;
layout(location = 0) out vec4 out_color;
layout(location = 1) out float out_depth;
void main() {{
    vec3 albedo = texture(atlas, v_uvl).rgb * v_tint;
    vec3 color;
    if (v_emissive > 0.5) {{
        color = albedo * emissive_gain;
    }} else {{
        // Two-sided: light the side that faces the camera.
        vec3 n = normalize(v_normal);
        if (dot(n, eye - v_world) < 0.0) n = -n;
        vec3 to_lamp = lamps[v_room] - v_world;
        float d2 = dot(to_lamp, to_lamp);
        float lamp = max(dot(n, to_lamp * inversesqrt(d2)), 0.0) / (1.0 + lamp_falloff * d2);
        float sun = max(dot(n, -sun_direction), 0.0);
        color = albedo * (ambient + sun * sun_color + lamp * lamp_color);
    }}
    out_color = vec4(clamp(color, 0.0, 1.0), 1.0);
    out_depth = v_z;
}}
"""


def create_context():
    """A headless OpenGL 3.3+ context: EGL first (no display needed), then the default backend."""
    import moderngl

    try:
        return moderngl.create_standalone_context(backend="egl")
    except Exception as egl_error:  # noqa: BLE001 - any EGL failure falls back
        try:
            return moderngl.create_standalone_context()
        except Exception as error:
            raise RuntimeError(
                "no headless OpenGL context: EGL failed with "
                f"{egl_error!r} and the default backend with {error!r}; install Mesa "
                "(Debian: libegl1 libegl-mesa0 libgl1-mesa-dri)"
            ) from error


class Renderer:
    """One GL context and framebuffer, reused for every scene and frame.

    Usage: `renderer.load(scene)`, `renderer.set_lighting(lighting, lamps)`, then
    `renderer.render(world_from_cam)` per frame.
    """

    def __init__(self, K: np.ndarray, width: int, height: int, near: float = 0.05, far: float = 100.0):
        self.width, self.height = int(width), int(height)
        self.ctx = create_context()
        self.program = self.ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER)
        size = (self.width, self.height)
        self.color = self.ctx.renderbuffer(size, components=4)
        self.depth = self.ctx.renderbuffer(size, components=1, dtype="f4")
        self.zbuffer = self.ctx.depth_renderbuffer(size)
        self.fbo = self.ctx.framebuffer(color_attachments=[self.color, self.depth], depth_attachment=self.zbuffer)
        self._set_projection(np.asarray(K, float), near, far)
        self.vao = None
        self.vbo = None
        self.atlas = None

    def _set_projection(self, K: np.ndarray, near: float, far: float) -> None:
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        w, h = self.width, self.height
        # NDC x = 2 (u + 0.5) / W - 1 and NDC y = 2 (v + 0.5) / H - 1 for u = fx X/Z + cx, v = fy Y/Z + cy.
        self.program["clip_x"].value = (2 * fx / w, 0.0, (2 * cx + 1) / w - 1, 0.0)
        self.program["clip_y"].value = (0.0, 2 * fy / h, (2 * cy + 1) / h - 1, 0.0)
        self.program["clip_z"].value = (0.0, 0.0, (far + near) / (far - near), -2 * far * near / (far - near))

    def load(self, scene: Scene) -> None:
        """Upload a scene's vertices and texture layers (replacing the previous scene)."""
        for resource in (self.vao, self.vbo, self.atlas):
            if resource is not None:
                resource.release()
        if len(scene.layout.rooms) > MAX_ROOMS:
            raise ValueError(f"scene has {len(scene.layout.rooms)} rooms, the renderer supports {MAX_ROOMS}")
        vertices = scene.vertices()
        assert vertices.shape[1] == VERTEX_FLOATS
        self.vbo = self.ctx.buffer(vertices.tobytes())
        self.vao = self.ctx.vertex_array(
            self.program,
            [(self.vbo, "3f 3f 2f 1f 3f 1f 1f", "in_position", "in_normal", "in_uv", "in_layer", "in_tint",
              "in_room", "in_emissive")],
        )
        images = [t.image for t in scene.textures]
        size = images[0].shape[0]
        # GL's texture row 0 is v = 0, the bottom of a quad: flip so that photos stand upright.
        rgba = np.empty((len(images), size, size, 4), np.uint8)
        for index, image in enumerate(images):
            rgba[index, :, :, :3] = image[::-1]
        rgba[..., 3] = 255
        self.atlas = self.ctx.texture_array((size, size, len(images)), 4, rgba.tobytes())
        self.atlas.build_mipmaps()
        self.atlas.filter = (self.ctx.LINEAR_MIPMAP_LINEAR, self.ctx.LINEAR)
        # No anisotropic filtering: llvmpipe took seconds per frame on surfaces seen edge-on.
        self.atlas.anisotropy = 1.0
        self.atlas.repeat_x = self.atlas.repeat_y = True
        self.atlas.use(location=0)
        self.program["atlas"].value = 0

    def set_lighting(self, lighting: Lighting, lamps: np.ndarray) -> None:
        """Set the light parameters; `lamps` [rooms x 3] are the lamp positions for this lighting."""
        padded = np.zeros((MAX_ROOMS, 3), np.float32)
        padded[: len(lamps)] = lamps
        self.program["lamps"].write(padded.tobytes())
        self.program["ambient"].value = lighting.ambient
        direction = np.asarray(lighting.sun_direction, float)
        self.program["sun_direction"].value = tuple(direction / np.linalg.norm(direction))
        self.program["sun_color"].value = lighting.sun_color
        self.program["lamp_color"].value = lighting.lamp_color
        self.program["lamp_falloff"].value = lighting.lamp_falloff
        self.program["emissive_gain"].value = lighting.emissive_gain

    def render(self, world_from_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(RGB uint8 [H x W x 3], depth float32 [H x W] metres along camera z, 0 = no hit)."""
        if self.vao is None:
            raise RuntimeError("Renderer.render called before Renderer.load(scene)")
        world_from_cam = np.asarray(world_from_cam, float)
        cam_from_world = np.eye(4)
        cam_from_world[:3, :3] = world_from_cam[:3, :3].T
        cam_from_world[:3, 3] = -world_from_cam[:3, :3].T @ world_from_cam[:3, 3]
        # GLSL matrices are column-major: write the transpose.
        self.program["cam_from_world"].write(cam_from_world.T.astype(np.float32).tobytes())
        self.program["eye"].value = tuple(world_from_cam[:3, 3])
        self.fbo.use()
        self.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self.ctx.enable(self.ctx.DEPTH_TEST)
        self.vao.render()
        rgb = np.frombuffer(self.fbo.read(components=3, attachment=0), np.uint8).reshape(self.height, self.width, 3)
        depth = np.frombuffer(self.fbo.read(components=1, attachment=1, dtype="f4"), np.float32)
        return rgb.copy(), depth.reshape(self.height, self.width).copy()

    def release(self) -> None:
        for resource in (self.vao, self.vbo, self.atlas, self.fbo, self.color, self.depth, self.zbuffer, self.program):
            if resource is not None:
                resource.release()
        self.ctx.release()
