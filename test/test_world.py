"""The demo world: determinism, exact ground truth, disjoint foreign textures, file layout.

Renders a tiny world (small images, few frames, no bags) once per module on the CPU.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("moderngl")

from pram_ros.io.camera import load_camera_yaml  # noqa: E402
from pram_ros.io.images import load_depth, load_image  # noqa: E402
from pram_ros.io.tum import load_tum  # noqa: E402
from pram_ros.world import textures as tex  # noqa: E402
from pram_ros.world.generate import SEQUENCES, WorldConfig, build_world, generate_world, plan_paths  # noqa: E402
from pram_ros.world.layout import Layout, Room, make_layout  # noqa: E402
from pram_ros.world.render import Renderer  # noqa: E402
from pram_ros.world.scene import LIGHTINGS, Quad, Scene  # noqa: E402

TINY = dict(frames=60, query_frames=14, foreign_frames=8, width=256, height=192, write_bags=False)


def _digest(folder: Path) -> dict[str, str]:
    """sha256 of poses.tum, every image and every depth map, per sequence."""
    digests = {}
    for path in sorted(folder.glob("*/poses.tum")) + sorted(folder.glob("*/images/*.png")) + sorted(
        folder.glob("*/depth/*.png")
    ):
        digests[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "seed0"
    generate_world(out, WorldConfig(seed=0, **TINY))
    return out


def _sequence(world: Path, name: str):
    folder = world / name
    stamps_ns, world_from_cam = load_tum(folder / "poses.tum")
    K, width, height = load_camera_yaml(folder / "camera.yaml")
    meta = yaml.safe_load((folder / "sequence.yaml").read_text())
    return folder, stamps_ns, world_from_cam, K, width, height, meta


def test_sequences_exist_with_counts(world):
    config = WorldConfig(**TINY)
    summary = yaml.safe_load((world / "world.yaml").read_text())
    assert set(summary["sequences"]) == set(SEQUENCES)
    for name in SEQUENCES:
        folder, stamps_ns, world_from_cam, K, width, height, meta = _sequence(world, name)
        frames = config.frame_count(name)
        assert len(list((folder / "images").glob("*.png"))) == frames
        assert len(list((folder / "depth").glob("*.png"))) == frames
        assert (folder / "images" / "000000.png").exists()
        assert (folder / "images" / f"{frames - 1:06d}.png").exists()
        assert len(stamps_ns) == frames and world_from_cam.shape == (frames, 4, 4)
        assert meta["frames"] == frames and meta["depth_scale"] == 1000
        assert meta["scene"] == ("foreign" if name == "foreign" else "main")
        assert (width, height) == (config.width, config.height)
        np.testing.assert_allclose(K, config.K())
        assert np.all(np.diff(stamps_ns) == meta["period_ns"]) and stamps_ns[0] == meta["t0_ns"]
        image = load_image(folder / "images" / "000000.png")
        assert image.shape == (height, width, 3) and image.dtype == np.uint8
    starts = [_sequence(world, name)[1] for name in SEQUENCES]
    for earlier, later in zip(starts[:-1], starts[1:]):
        assert later[0] > earlier[-1], "sequences must not overlap in time"


def test_tum_lines_are_exact(world):
    line = (world / "mapping" / "poses.tum").read_text().splitlines()[1]
    fields = line.split()
    assert fields[0] == "1700000000.100000000"
    assert float(fields[7]) >= 0.0  # qw >= 0
    stamps_ns, _ = load_tum(world / "mapping" / "poses.tum")
    assert stamps_ns.dtype == np.int64 and stamps_ns[1] == 1_700_000_000_100_000_000


def test_same_seed_same_bytes_other_seed_other_images(world, tmp_path):
    again = tmp_path / "again"
    generate_world(again, WorldConfig(seed=0, **TINY))
    assert _digest(world) == _digest(again)

    other = tmp_path / "other"
    generate_world(other, WorldConfig(seed=1, sequences=("mapping",), **TINY))
    first = (world / "mapping" / "images" / "000000.png").read_bytes()
    assert first != (other / "mapping" / "images" / "000000.png").read_bytes()
    assert (world / "mapping" / "poses.tum").read_bytes() != (other / "mapping" / "poses.tum").read_bytes()


def _reprojection_errors(folder: Path, a: int, b: int, K, world_from_cam, stride: int = 3):
    """Pixels of frame a, through depth and poses into frame b and back: errors in pixels.

    Only points seen by both frames count: b's depth at the projected pixel must match
    the point's depth in b.
    """
    depth_a = load_depth(folder / "depth" / f"{a:06d}.png")
    depth_b = load_depth(folder / "depth" / f"{b:06d}.png")
    height, width = depth_a.shape
    K_inv = np.linalg.inv(K)
    v, u = np.mgrid[0:height:stride, 0:width:stride]
    u, v = u.ravel().astype(float), v.ravel().astype(float)
    z_a = depth_a[v.astype(int), u.astype(int)].astype(float)
    keep = z_a > 0
    u, v, z_a = u[keep], v[keep], z_a[keep]

    def to_world(pose, uu, vv, zz):
        rays = K_inv @ np.stack([uu, vv, np.ones_like(uu)])
        return (pose[:3, :3] @ (rays * zz) + pose[:3, 3:4]).T

    def project(pose, points):
        cam = (pose[:3, :3].T @ (points.T - pose[:3, 3:4]))
        pixels = K @ cam
        return pixels[:2] / pixels[2], cam[2]

    points = to_world(world_from_cam[a], u, v, z_a)
    (u_b, v_b), z_b = project(world_from_cam[b], points)
    ui, vi = np.rint(u_b).astype(int), np.rint(v_b).astype(int)
    inside = (z_b > 0.1) & (ui >= 0) & (ui < width) & (vi >= 0) & (vi < height)
    ui, vi, z_b = ui[inside], vi[inside], z_b[inside]
    u, v = u[inside], v[inside]
    seen = depth_b[vi, ui]
    visible = (seen > 0) & (np.abs(seen - z_b) < 0.02 + 0.01 * z_b)
    back = to_world(world_from_cam[b], ui[visible].astype(float), vi[visible].astype(float), seen[visible])
    (u_a, v_a), _ = project(world_from_cam[a], back)
    return np.hypot(u_a - u[visible], v_a - v[visible]), visible.mean()


@pytest.mark.parametrize("name, pairs", [("mapping", [(0, 1), (20, 21), (41, 42), (58, 59)]),
                                         ("query_lighting", [(5, 6)])])
def test_depth_and_poses_agree_between_frames(world, name, pairs):
    folder, _, world_from_cam, K, _, _, _ = _sequence(world, name)
    for a, b in pairs:
        errors, visible_fraction = _reprojection_errors(folder, a, b, K, world_from_cam)
        assert len(errors) > 500, f"{name} {a}->{b}: only {len(errors)} mutually visible points"
        assert visible_fraction > 0.2
        assert np.median(errors) < 1.0, f"{name} {a}->{b}: median {np.median(errors):.2f} px"
        assert np.percentile(errors, 95) < 2.0, f"{name} {a}->{b}: p95 {np.percentile(errors, 95):.2f} px"


def test_pixel_centres_follow_opencv(tmp_path):
    """A square whose edges fall between pixel centres covers exactly the centres inside it."""
    K = np.array([[200.0, 0.0, 79.5], [0.0, 200.0, 59.5], [0.0, 0.0, 1.0]])
    depth = 2.0
    u0, u1, v0, v1 = 40.4, 70.6, 30.4, 50.6  # 0.2 px from pixel centres, more than GROW_M adds
    x0, x1 = ((u0 - K[0, 2]) * depth / K[0, 0], (u1 - K[0, 2]) * depth / K[0, 0])
    y0, y1 = ((v0 - K[1, 2]) * depth / K[1, 1], (v1 - K[1, 2]) * depth / K[1, 1])
    # Camera at the origin looking along world +x: cam (x, y, z) = world (-y, -z, x).
    quad = Quad((depth, -x0, -y1), (0.0, -(x1 - x0), 0.0), (0.0, 0.0, y1 - y0), 0, (0, 0), (1, 1), (1, 1, 1), 0)
    layout = Layout("main", (Room(0, 0, 0, -5, -5, 5, 5, 3),), ())
    texture = tex.Texture("white", np.full((tex.TEXTURE_SIZE, tex.TEXTURE_SIZE, 3), 255, np.uint8), ())
    scene = Scene("main", 0, layout, [quad], [texture], np.zeros((1, 3)))
    renderer = Renderer(K, 160, 120)
    try:
        renderer.load(scene)
        renderer.set_lighting(LIGHTINGS["default"], scene.lamp_positions)
        world_from_cam = np.eye(4)
        world_from_cam[:3, :3] = [[0, 0, 1], [-1, 0, 0], [0, -1, 0]]
        _, depth_map = renderer.render(world_from_cam)
    finally:
        renderer.release()
    rows, cols = np.nonzero(depth_map > 0)
    assert (cols.min(), cols.max(), rows.min(), rows.max()) == (41, 70, 31, 50)
    np.testing.assert_allclose(depth_map[rows, cols], depth, atol=1e-5)


def test_images_textured_and_cameras_clear_of_walls(world):
    for name in SEQUENCES:
        folder, _, _, _, _, _, meta = _sequence(world, name)
        # The changed lighting is dimmer (below), so its contrast is lower too.
        min_std = 12 if meta["lighting"] == "changed" else 15
        for path in sorted((folder / "images").glob("*.png")):
            gray = load_image(path).mean(axis=2)
            assert gray.std() > min_std, f"{path}: too flat (std {gray.std():.1f})"
            assert 30 < gray.mean() < 225, f"{path}: too dark or bright (mean {gray.mean():.0f})"
            # Texture everywhere: most 16 px blocks have some contrast.
            h, w = gray.shape
            blocks = gray[: h // 16 * 16, : w // 16 * 16].reshape(h // 16, 16, w // 16, 16).std(axis=(1, 3))
            assert (blocks > 3).mean() > 0.8, f"{path}: large untextured areas"
            depth = load_depth(path.parent.parent / "depth" / path.name)
            assert (depth > 0).all(), f"{path}: the world is closed, every pixel must hit something"
            assert (depth > 0.3).mean() > 0.95, f"{path}: camera too close to a surface"
            assert np.median(depth) > 0.5, f"{path}: camera stares at a surface"


def test_queries_leave_the_mapping_path(world):
    for name in ("query_offpath", "query_lighting"):
        meta = _sequence(world, name)[-1]
        assert meta["offpath_median_m"] >= 0.3


def test_lighting_changes_only_in_the_lighting_sequences(world):
    assert _sequence(world, "query_lighting")[-1]["lighting"] == "changed"
    assert _sequence(world, "mapping_lighting")[-1]["lighting"] == "changed"
    assert _sequence(world, "mapping")[-1]["lighting"] == "default"
    # The second mapping session walks the mapping path again, end to end.
    mapping_poses, lighting_poses = _sequence(world, "mapping")[2], _sequence(world, "mapping_lighting")[2]
    np.testing.assert_allclose(lighting_poses[[0, -1]], mapping_poses[[0, -1]], atol=1e-9)
    assert _sequence(world, "query_offpath")[-1]["lighting"] == "default"
    lit = np.mean([load_image(p).mean() for p in sorted((world / "query_offpath" / "images").glob("*.png"))])
    dim = np.mean([load_image(p).mean() for p in sorted((world / "query_lighting" / "images").glob("*.png"))])
    assert dim < 0.85 * lit


def test_foreign_shares_no_texture_with_main():
    assert not set(tex.MAIN_PHOTOS) & set(tex.FOREIGN_PHOTOS)
    scenes, _ = build_world(WorldConfig(seed=0, **TINY))
    main, foreign = scenes["main"], scenes["foreign"]
    assert main.photo_names and foreign.photo_names
    assert main.photo_names <= set(tex.MAIN_PHOTOS)
    assert foreign.photo_names <= set(tex.FOREIGN_PHOTOS)
    main_hashes = {hashlib.sha256(t.image.tobytes()).hexdigest() for t in main.textures}
    foreign_hashes = {hashlib.sha256(t.image.tobytes()).hexdigest() for t in foreign.textures}
    # The unlit lamp panel is the one texture both share: plain white, no photo, no features.
    assert len(main_hashes & foreign_hashes) <= 1


def test_default_mapping_path_fits_300_frames_at_5cm_5deg():
    layout = make_layout(0, WorldConfig().rooms, "main")
    assert plan_paths(layout, 0)["mapping"].natural_frames() <= 300


def _room_of(layout, xy: np.ndarray) -> np.ndarray:
    """Index [N] of the room each point [N x 2] lies deepest inside."""
    return np.argmax(np.stack([room.margin(xy) for room in layout.rooms], axis=1), axis=1)


@pytest.mark.parametrize("style", ["spin", "orbit"])
@pytest.mark.parametrize("rooms", [1, 2, 5, 16])
def test_layouts_of_other_sizes_plan_valid_paths(rooms, style):
    layout = make_layout(3, rooms, "main")
    paths = plan_paths(layout, 3, style)  # raises if a path comes within 0.3 m of a wall

    def visited(path):
        return set(_room_of(layout, path.xyz[::10, :2]).tolist())

    assert visited(paths["mapping"]) == set(range(rooms))
    span = min(max(2, -(-rooms // 4)), rooms)  # rooms a query passes through
    assert len(visited(paths["query_offpath"])) == len(visited(paths["query_lighting"])) == span
    if rooms == 16:
        assert layout.floor_area_m2 > 250


def _sideways_baselines_m(layout, path) -> list[float]:
    """Per room, the least sideways travel (across the gaze) over the headings it looks in,
    in 45 deg sectors: the baseline SfM without poses gets for a wall seen that way."""
    room_of = _room_of(layout, path.xyz[:, :2])
    sector = ((path.yaw % (2 * np.pi)) // (np.pi / 4)).astype(int)
    least = []
    for room in range(len(layout.rooms)):
        spans = []
        for k in np.unique(sector[room_of == room]):
            heading = (k + 0.5) * np.pi / 4
            across = path.xyz[(room_of == room) & (sector == k), :2] @ np.array([-np.sin(heading), np.cos(heading)])
            spans.append(np.ptp(across))
        least.append(float(min(spans)))
    return least


@pytest.mark.parametrize("seed, rooms", [(0, 3), (3, 5)])
def test_orbit_mapping_path_sees_every_heading_from_a_sideways_baseline(seed, rooms):
    layout = make_layout(seed, rooms, "main")
    orbit = _sideways_baselines_m(layout, plan_paths(layout, seed, "orbit")["mapping"])
    spin = _sideways_baselines_m(layout, plan_paths(layout, seed, "spin")["mapping"])
    assert min(orbit) >= 0.35, orbit
    assert min(spin) < 0.1, spin  # why SfM without poses fails on the spin path


def test_unknown_mapping_path_style_is_refused():
    with pytest.raises(ValueError, match="mapping_path"):
        WorldConfig(mapping_path="zigzag").validate()


def test_output_folder_must_be_empty(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(FileExistsError):
        generate_world(tmp_path / "busy", WorldConfig(**TINY))
