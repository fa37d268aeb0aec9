"""Textures of the demo world: real photos from scikit-image, cropped, tiled and recoloured.

In: a photo pool name ("main" or "foreign") and a seeded numpy Generator.
Out: square RGB uint8 images of TEXTURE_SIZE pixels (row 0 at the top), one per
material or poster, each with a name that says where it came from.

The photos ship inside scikit-image, so nothing is downloaded. They are split into
two disjoint pools: the main world uses one, the foreign world the other, so that no
texture of the foreign world can match the main world's map. Procedural detail
(filtered noise, grout, planks) is drawn from the caller's Generator, so every texture
is a pure function of (pool, seed).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

TEXTURE_SIZE = 512

# Disjoint photo pools. "cat" is the same photo as "chelsea", so only one is listed.
MAIN_PHOTOS = (
    "astronaut",
    "brick",
    "camera",
    "chelsea",
    "clock",
    "coffee",
    "coins",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "logo",
    "moon",
    "page",
    "rocket",
    "text",
)
FOREIGN_PHOTOS = (
    "cell",
    "colorwheel",
    "immunohistochemistry",
    "microaneurysms",
    "motorcycle",
    "retina",
    "shepp_logan_phantom",
)
PHOTO_POOLS = {"main": MAIN_PHOTOS, "foreign": FOREIGN_PHOTOS}


@dataclass(frozen=True)
class Texture:
    """One texture layer: an RGB uint8 image [S x S x 3] and its provenance."""

    name: str
    image: np.ndarray
    photos: tuple[str, ...]


@functools.lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray:
    """A scikit-image sample photo as float32 RGB in [0, 1], shape [H x W x 3]."""
    import skimage.data

    if name == "motorcycle":
        image = skimage.data.stereo_motorcycle()[0]
    elif name == "shepp_logan_phantom":
        image = skimage.data.shepp_logan_phantom()
    else:
        image = getattr(skimage.data, name)()
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.float32)
    elif image.dtype == np.uint8:
        image = image.astype(np.float32) / 255.0
    else:
        image = image.astype(np.float32)
        image = (image - image.min()) / max(float(image.max() - image.min()), 1e-6)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        # Logo with alpha: composite on mid grey so its transparent parts are not black.
        alpha = image[:, :, 3:4]
        image = image[:, :, :3] * alpha + 0.5 * (1.0 - alpha)
    image = np.ascontiguousarray(image[:, :, :3])
    image.setflags(write=False)
    return image


# --- small image operations (float32 RGB in [0, 1]) ---------------------------------


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    shrinking = width < image.shape[1] or height < image.shape[0]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(image, (width, height), interpolation=interpolation)


def _crop(rng: np.random.Generator, image: np.ndarray, fraction: float, aspect: float = 1.0) -> np.ndarray:
    """A random crop covering about `fraction` of the shorter side, width/height = aspect."""
    height, width = image.shape[:2]
    crop_h = int(min(height, width / aspect) * fraction)
    crop_w = int(crop_h * aspect)
    crop_h, crop_w = max(crop_h, 8), max(crop_w, 8)
    y = int(rng.integers(0, height - crop_h + 1))
    x = int(rng.integers(0, width - crop_w + 1))
    return image[y : y + crop_h, x : x + crop_w]


@functools.lru_cache(maxsize=32)
def _noise_gain(height: int, width: int, beta: float, cutoff: float) -> np.ndarray:
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    radius[0, 0] = 1.0
    gain = (radius ** (-beta / 2.0)) * (radius < cutoff * 0.5)
    gain[0, 0] = 0.0
    return gain.astype(np.float32)


def _periodic_noise(
    rng: np.random.Generator, size: int | tuple[int, int], beta: float, cutoff: float = 1.0
) -> np.ndarray:
    """Tileable 1/f^beta noise [H x W], zero mean, unit std (white noise filtered in Fourier space)."""
    height, width = (size, size) if isinstance(size, int) else size
    white = rng.standard_normal((height, width), dtype=np.float32)
    spectrum = np.fft.rfft2(white) * _noise_gain(height, width, float(beta), float(cutoff))
    noise = np.fft.irfft2(spectrum, s=(height, width)).astype(np.float32)
    return noise / max(float(noise.std()), 1e-6)


def _band_noise(rng: np.random.Generator, size: int, finest_px: float = 5.0, coarsest_px: float = 64.0) -> np.ndarray:
    """Tileable noise with structure between finest_px and coarsest_px texels (unit std).

    This is the scale keypoints see once the texture is minified onto the screen.
    """
    white = rng.standard_normal((size, size), dtype=np.float32)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    gain = ((radius >= 1.0 / coarsest_px) & (radius <= 1.0 / finest_px)) / np.sqrt(np.maximum(radius, 1e-6))
    noise = np.fft.irfft2(np.fft.rfft2(white) * gain.astype(np.float32), s=(size, size)).astype(np.float32)
    return noise / max(float(noise.std()), 1e-6)


def _recolor(rng: np.random.Generator, image: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Random colour mixing, gain and gamma: one photo becomes many distinct-looking ones."""
    mix = np.eye(3, dtype=np.float32) + strength * rng.uniform(-0.45, 0.45, (3, 3)).astype(np.float32)
    mix /= np.maximum(mix.sum(axis=1, keepdims=True), 0.3)
    out = image @ mix.T
    out = out * rng.uniform(0.8, 1.15) + rng.uniform(-0.08, 0.08, 3).astype(np.float32)
    out = np.clip(out, 0.0, 1.0) ** rng.uniform(0.75, 1.3)
    return out.astype(np.float32)


def _tint(image: np.ndarray, color: tuple[float, float, float] | np.ndarray) -> np.ndarray:
    return image * np.asarray(color, dtype=np.float32)[None, None, :]


def _normalize_contrast(image: np.ndarray, low: float = 0.08, high: float = 0.92) -> np.ndarray:
    """Stretch the 1st..99th percentiles to [low, high]: keeps every texture feature-rich."""
    lo, hi = np.percentile(image, [1, 99])
    out = (image - lo) / max(float(hi - lo), 1e-3)
    return np.clip(low + (high - low) * out, 0.0, 1.0).astype(np.float32)


def _mirror_tile(tile: np.ndarray, repeats: int) -> np.ndarray:
    """Tile seamlessly by mirroring, `repeats` x `repeats` copies (repeats even)."""
    block = np.concatenate([tile, tile[:, ::-1]], axis=1)
    block = np.concatenate([block, block[::-1]], axis=0)
    return np.tile(block, (repeats // 2, repeats // 2, 1))


def _to_uint8(image: np.ndarray) -> np.ndarray:
    image = _resize(image, TEXTURE_SIZE, TEXTURE_SIZE) if image.shape[0] != TEXTURE_SIZE else image
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def _detail(rng: np.random.Generator, image: np.ndarray, amount: float) -> np.ndarray:
    """Add tileable grime at keypoint scale, so that flat regions still give keypoints."""
    size = image.shape[0]
    coarse = _periodic_noise(rng, size, beta=3.0)
    band = np.tanh(1.5 * _band_noise(rng, size))
    shade = 1.0 + amount * (0.4 * coarse + 0.9 * band)
    return np.clip(image * shade[:, :, None], 0.0, 1.0)


# --- materials: tileable, meant to repeat over walls, floors, ceilings ---------------


def photo_wall(rng: np.random.Generator, name: str, mirror: bool = True) -> Texture:
    """A real photo (bricks, gravel, grass) as a repeating wall or floor surface, lightly recoloured.

    mirror: a crop mirror-tiled 2 x 2 (seamless, for stochastic surfaces); otherwise the
    whole photo once (for regular ones such as bricks, where mirroring would show).
    """
    photo = load_photo(name)
    if mirror:
        tile = _resize(_crop(rng, photo, rng.uniform(0.6, 1.0)), TEXTURE_SIZE // 2, TEXTURE_SIZE // 2)
        image = _mirror_tile(tile, 2)
    else:
        image = _resize(photo, TEXTURE_SIZE, TEXTURE_SIZE)
    image = _normalize_contrast(_recolor(rng, image, 0.3), 0.12, 0.95)
    image = _detail(rng, image, 0.12)
    return Texture(f"wall:{name}", _to_uint8(image), (name,))


def wallpaper(rng: np.random.Generator, name: str) -> Texture:
    """A small photo crop, duotoned and mirror-tiled: a repetitive wallpaper pattern."""
    photo = load_photo(name)
    repeats = int(rng.choice([2, 4]))
    tile = _resize(_crop(rng, photo, rng.uniform(0.25, 0.6)), TEXTURE_SIZE // repeats, TEXTURE_SIZE // repeats)
    gray = tile.mean(axis=2, keepdims=True)
    dark = rng.uniform(0.05, 0.45, 3).astype(np.float32)
    light = rng.uniform(0.55, 1.0, 3).astype(np.float32)
    duotone = dark + (light - dark) * _normalize_contrast(gray, 0.0, 1.0)
    image = _detail(rng, _mirror_tile(duotone, repeats), 0.2)
    return Texture(f"wallpaper:{name}", _to_uint8(image), (name,))


def plaster(rng: np.random.Generator) -> Texture:
    """Procedural painted plaster with stains and speckles (no photo)."""
    size = TEXTURE_SIZE
    base = rng.uniform(0.45, 0.85, 3).astype(np.float32)
    stains = _periodic_noise(rng, size, beta=2.6)
    stucco = np.tanh(1.5 * _band_noise(rng, size, finest_px=4.0, coarsest_px=48.0))
    shade = 1.0 + 0.12 * stains + 0.3 * stucco
    image = np.clip(base[None, None, :] * shade[:, :, None], 0.0, 1.0)
    return Texture("plaster", _to_uint8(image), ())


def procedural_bricks(rng: np.random.Generator) -> Texture:
    """Procedural bricks with per-brick colour and mortar lines (no photo)."""
    size = TEXTURE_SIZE
    rows, cols = 8, 4
    brick_h, brick_w = size // rows, size // cols
    mortar = 5
    base = rng.uniform(0.35, 0.75, 3).astype(np.float32)
    image = np.empty((size, size, 3), np.float32)
    image[:] = base * 0.55
    for row in range(rows):
        shift = (brick_w // 2) * (row % 2)
        for col in range(cols + 1):
            color = np.clip(base * rng.uniform(0.75, 1.25, 3), 0, 1)
            y0, x0 = row * brick_h + mortar // 2, col * brick_w - shift + mortar // 2
            xs = np.arange(x0, x0 + brick_w - mortar) % size
            image[y0 : y0 + brick_h - mortar, xs] = color
    image = _detail(rng, image, 0.25)
    return Texture("bricks", _to_uint8(image), ())


def floor_tiles(rng: np.random.Generator, name: str | None) -> Texture:
    """Square floor tiles with grout, each tile filled from a photo crop or noise."""
    size = TEXTURE_SIZE
    count = 2
    tile_px = size // count
    grout = 6
    grout_color = rng.uniform(0.15, 0.4, 3).astype(np.float32)
    image = np.empty((size, size, 3), np.float32)
    image[:] = grout_color
    photo = load_photo(name) if name else None
    base = rng.uniform(0.4, 0.85, 3).astype(np.float32)
    for row in range(count):
        for col in range(count):
            inner = tile_px - grout
            if photo is not None:
                patch = _resize(_crop(rng, photo, rng.uniform(0.3, 0.6)), inner, inner)
                patch = _normalize_contrast(patch, 0.2, 0.9) * base * rng.uniform(0.85, 1.15)
            else:
                noise = _periodic_noise(rng, inner, beta=1.8)
                patch = base * (1.0 + 0.3 * noise[:, :, None])
            y0, x0 = row * tile_px + grout // 2, col * tile_px + grout // 2
            image[y0 : y0 + inner, x0 : x0 + inner] = np.clip(patch, 0, 1)
    image = _detail(rng, image, 0.08)
    return Texture(f"floor_tiles:{name or 'noise'}", _to_uint8(image), (name,) if name else ())


def wood(rng: np.random.Generator, planks: int = 4) -> Texture:
    """Wooden planks with stretched-noise grain, knots and gaps (no photo)."""
    size = TEXTURE_SIZE
    woods = [[0.55, 0.36, 0.2], [0.7, 0.55, 0.35], [0.4, 0.25, 0.15], [0.62, 0.5, 0.42]]
    base = np.array(woods[int(rng.integers(len(woods)))], np.float32)
    image = np.empty((size, size, 3), np.float32)
    edges = np.linspace(0, size, planks + 1).astype(int)
    for index in range(planks):
        plank_h = int(edges[index + 1] - edges[index])
        grain = _periodic_noise(rng, (32, size), beta=2.2)
        grain = cv2.resize(grain, (size, plank_h), interpolation=cv2.INTER_CUBIC)
        rings = np.sin(grain * rng.uniform(3.0, 6.0)) * 0.5 + 0.5
        color = base * rng.uniform(0.8, 1.2)
        plank = color[None, None, :] * (0.75 + 0.35 * rings[:, :, None])
        plank[:3] *= 0.45
        image[edges[index] : edges[index + 1]] = plank
    image = _detail(rng, np.clip(image, 0, 1), 0.12)
    return Texture("wood", _to_uint8(image), ())


def ceiling_tiles(rng: np.random.Generator) -> Texture:
    """Acoustic ceiling tiles: a grid with perforation speckle and stains (no photo)."""
    size = TEXTURE_SIZE
    base = rng.uniform(0.75, 0.95) * np.array([1.0, 0.98, 0.94], np.float32)
    speckle = _periodic_noise(rng, size, beta=0.2)
    stains = _periodic_noise(rng, size, beta=2.8)
    fissures = np.tanh(1.5 * _band_noise(rng, size, finest_px=3.0, coarsest_px=24.0))
    shade = 1.0 + 0.06 * stains + 0.15 * fissures - 0.3 * (speckle > 1.6)
    image = base[None, None, :] * shade[:, :, None]
    grid = np.zeros(size, bool)
    for k in range(2):
        grid[k * size // 2 : k * size // 2 + 5] = True
    image[grid, :] *= 0.45
    image[:, grid] *= 0.45
    return Texture("ceiling_tiles", _to_uint8(np.clip(image, 0, 1)), ())


def metal(rng: np.random.Generator) -> Texture:
    """Brushed, dented painted metal with rivets (no photo)."""
    size = TEXTURE_SIZE
    base = rng.uniform(0.3, 0.8, 3).astype(np.float32)
    streaks = cv2.resize(_periodic_noise(rng, (8, size), beta=1.0), (size, size), interpolation=cv2.INTER_LINEAR)
    dents = _periodic_noise(rng, size, beta=2.5)
    image = base[None, None, :] * (1.0 + 0.1 * streaks + 0.15 * dents)[:, :, None]
    for y in range(24, size, size // 4):
        for x in range(24, size, size // 4):
            cv2.circle(image, (x, y), 7, tuple(float(c) * 0.4 for c in base), -1)
            cv2.circle(image, (x - 2, y - 2), 3, tuple(min(float(c) * 1.6, 1.0) for c in base), -1)
    return Texture("metal", _to_uint8(np.clip(image, 0, 1)), ())


# --- unique content: posters, pictures, labels ---------------------------------------


def poster(rng: np.random.Generator, names: tuple[str, ...], aspect: float) -> Texture:
    """A framed picture from a photo crop, recoloured, optionally with a second photo inset.

    `aspect` is the poster's width/height in the world; the texture is stretched to a
    square layer and unstretched again by the quad it is put on.
    """
    main_name = str(rng.choice(names))
    crop = _crop(rng, load_photo(main_name), rng.uniform(0.45, 0.95), aspect)
    height = TEXTURE_SIZE
    width = int(round(TEXTURE_SIZE * aspect))
    image = _normalize_contrast(_recolor(rng, _resize(crop, width, height), rng.uniform(0.0, 0.8)), 0.03, 0.97)
    used = [main_name]
    if rng.random() < 0.5:
        other = str(rng.choice([n for n in names if n != main_name]))
        inset = _normalize_contrast(_crop(rng, load_photo(other), rng.uniform(0.3, 0.7)), 0.05, 0.95)
        side = int(min(width, height) * rng.uniform(0.25, 0.4))
        inset = _resize(inset, side, side)
        y = int(rng.integers(10, height - side - 10))
        x = int(rng.integers(10, width - side - 10))
        image[y : y + side, x : x + side] = inset
        used.append(other)
    frame = max(int(0.04 * min(width, height)), 4)
    frame_color = rng.choice([[0.05, 0.05, 0.05], [0.95, 0.95, 0.92], [0.5, 0.3, 0.15]]).astype(np.float32)
    image[:frame], image[-frame:], image[:, :frame], image[:, -frame:] = (frame_color,) * 4
    image = _resize(image, TEXTURE_SIZE, TEXTURE_SIZE)
    return Texture(f"poster:{'+'.join(used)}", _to_uint8(image), tuple(used))


def books(rng: np.random.Generator) -> Texture:
    """A shelf front: rows of book spines in random colours and widths (no photo)."""
    size = TEXTURE_SIZE
    image = np.empty((size, size, 3), np.float32)
    image[:] = (0.35, 0.22, 0.12)
    rows = 4
    row_h = size // rows
    board = 10
    for row in range(rows):
        x = 4
        top = row * row_h + board
        while x < size - 8:
            width = int(rng.integers(8, 30))
            height = int(rng.integers(row_h // 2, row_h - board - 2))
            color = rng.uniform(0.1, 0.9, 3).astype(np.float32)
            image[top + (row_h - board - height) : top + row_h - board, x : x + width] = color
            band = top + row_h - board - int(height * rng.uniform(0.3, 0.8))
            image[band : band + 4, x : x + width] = 1.0 - color
            x += width + int(rng.integers(0, 4))
    image = _detail(rng, image, 0.1)
    return Texture("books", _to_uint8(np.clip(image, 0, 1)), ())


def crate(rng: np.random.Generator, names: tuple[str, ...]) -> Texture:
    """Wooden crate faces with a printed photo label."""
    planks = wood(rng, planks=int(rng.integers(3, 6))).image.astype(np.float32) / 255.0
    name = str(rng.choice(names))
    side = int(TEXTURE_SIZE * rng.uniform(0.35, 0.55))
    label = _normalize_contrast(_recolor(rng, _resize(_crop(rng, load_photo(name), 0.6), side, side), 0.5))
    y = int(rng.integers(20, TEXTURE_SIZE - side - 20))
    x = int(rng.integers(20, TEXTURE_SIZE - side - 20))
    planks[y : y + side, x : x + side] = label
    border = 6
    for edge in (np.s_[:border], np.s_[-border:], np.s_[:, :border], np.s_[:, -border:]):
        planks[edge] *= 0.4
    return Texture(f"crate:{name}", _to_uint8(planks), (name,))


def lamp_panel() -> Texture:
    """A bright diffuser panel for ceiling lamps (rendered unlit)."""
    size = TEXTURE_SIZE
    image = np.full((size, size, 3), 0.97, np.float32)
    image[:16], image[-16:], image[:, :16], image[:, -16:] = (0.55,) * 4
    image[size // 2 - 4 : size // 2 + 4] = 0.75
    image[:, size // 2 - 4 : size // 2 + 4] = 0.75
    return Texture("lamp", _to_uint8(image), ())
