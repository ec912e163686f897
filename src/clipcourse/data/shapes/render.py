"""Drawing Shapes-world images: signed distance fields, vectorised over the batch in NumPy.

Everything is deterministic for a seed, so tens of thousands of images per second
render on a single core.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence

import numpy as np
import torch

from clipcourse.data.shapes.vocabulary import (
    COLOUR_RGB,
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    ShapeAttributes,
)

__all__: list[str] = []  # internal: the world draws through these

# Geometry as fractions of the image side. Corner centres at 0.25/0.75 keep two large
# shapes in neighbouring corners apart even with jitter; sizes differ by a factor 1.6.
_POSITION_XY = np.array(
    [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75], [0.5, 0.5]], dtype=np.float32
)
_SIZE_RADIUS = np.array([0.11, 0.18], dtype=np.float32)
_POSITION_JITTER = 0.03  # ± fraction of the side
_SIZE_JITTER = 0.08  # ± relative
_COLOUR_JITTER = 0.03  # std per channel
_BACKGROUND_LEVEL = (0.05, 0.2)  # dark grey: every colour stands out in brightness, not just hue
_RGB = np.array([COLOUR_RGB[c] for c in COLOURS], dtype=np.float32)


def _sdf(shape: int, dx: np.ndarray, dy: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Approximate signed distance in pixels (negative inside) for a shape of scale ``r``.

    Each shape is scaled so that their areas are similar (2-2.6 r²): the network must
    tell them apart by outline, not by how many pixels they cover.
    """
    ax, ay = np.abs(dx), np.abs(dy)
    if shape == 0:  # circle
        return np.sqrt(dx * dx + dy * dy) - 0.9 * r
    if shape == 1:  # square
        return np.maximum(ax, ay) - 0.8 * r
    if shape == 2:  # upward triangle, circumradius 1.2 r, lowered by 0.3 r to sit centred
        y = dy - 0.3 * r
        return np.maximum(y - 0.6 * r, 0.866 * ax - 0.5 * y - 0.6 * r)
    if shape == 3:  # diamond
        return (ax + ay - 1.1 * r) * 0.7071
    # cross: union of two bars
    return np.minimum(np.maximum(ax - r, ay - 0.33 * r), np.maximum(ay - r, ax - 0.33 * r))


def _alpha(
    shape: np.ndarray, cx: np.ndarray, cy: np.ndarray, r: np.ndarray, size: int, grow: float = 0.0
) -> np.ndarray:
    """Anti-aliased coverage masks [n, size, size] in [0, 1], one shape type at a time."""
    coords = np.arange(size, dtype=np.float32) + 0.5
    out = np.zeros((len(shape), size, size), dtype=np.float32)
    for s in range(len(SHAPES)):
        idx = np.flatnonzero(shape == s)
        if idx.size:
            dx = coords[None, None, :] - cx[idx, None, None]
            dy = coords[None, :, None] - cy[idx, None, None]
            d = _sdf(s, dx, dy, r[idx, None, None])
            out[idx] = np.clip(0.5 + grow - d, 0.0, 1.0)
    return out


def _encode(objects: Sequence[ShapeAttributes]) -> np.ndarray:
    """Objects -> int array [n, 4] of (colour, shape, size, position) indices."""
    return np.array(
        [
            (
                COLOURS.index(o.colour),
                SHAPES.index(o.shape),
                SIZES.index(o.size),
                POSITIONS.index(o.position),
            )
            for o in objects
        ],
        dtype=np.int64,
    ).reshape(-1, 4)


def _decode(codes: np.ndarray) -> list[ShapeAttributes]:
    return [
        ShapeAttributes(COLOURS[c], SHAPES[s], SIZES[z], POSITIONS[p])
        for c, s, z, p in codes.tolist()
    ]


def _geometry(codes: np.ndarray, size: int, rng: np.random.Generator | None):
    """Centre and scale in pixels; ``rng=None`` gives the nominal (unjittered) geometry."""
    xy = _POSITION_XY[codes[:, 3]] * size
    r = _SIZE_RADIUS[codes[:, 2]] * size
    if rng is not None:
        xy = (
            xy
            + rng.uniform(-_POSITION_JITTER, _POSITION_JITTER, xy.shape).astype(np.float32) * size
        )
        r = r * rng.uniform(1 - _SIZE_JITTER, 1 + _SIZE_JITTER, r.shape).astype(np.float32)
    return xy[:, 0], xy[:, 1], r


def _upsample_matrix(low: int, size: int) -> np.ndarray:
    """[size, low] bilinear interpolation weights (align_corners=False), for U @ X @ U.T."""
    pos = np.clip((np.arange(size) + 0.5) * low / size - 0.5, 0, low - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, low - 1)
    w = (pos - lo).astype(np.float32)
    m = np.zeros((size, low), dtype=np.float32)
    m[np.arange(size), lo] += 1 - w
    m[np.arange(size), hi] += w
    return m


def _background(n: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Dark-ish grey [n, size, size] with a random gradient and soft blotches.

    Drawn on a 4×4 grid and upsampled (a gradient survives bilinear upsampling), so the
    background is never a constant a model could subtract, at almost no cost.
    """
    t = np.linspace(-0.5, 0.5, 4, dtype=np.float32)
    level = rng.uniform(*_BACKGROUND_LEVEL, (n, 1, 1)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi, (n, 1, 1)).astype(np.float32)
    slope = rng.uniform(0.0, 0.15, (n, 1, 1)).astype(np.float32)
    low = level + slope * (np.cos(angle) * t[None, None, :] + np.sin(angle) * t[None, :, None])
    low += 0.04 * rng.standard_normal((n, 4, 4), dtype=np.float32)
    up = _upsample_matrix(4, size)
    return up @ low @ up.T


def _jittered_colours(codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    rgb = _RGB[codes[:, 0]] * rng.uniform(0.9, 1.1, (len(codes), 1)).astype(np.float32)
    rgb += rng.normal(0, _COLOUR_JITTER, rgb.shape).astype(np.float32)
    return np.clip(rgb, 0.0, 1.0)


@functools.lru_cache(maxsize=4)
def _noise_bank(scale: float) -> np.ndarray:
    """A fixed standard-normal bank (4 MB, same seed everywhere), pre-multiplied by ``scale``."""
    bank = np.random.default_rng(20240607).standard_normal(1 << 20, dtype=np.float32)
    return bank * np.float32(scale)


def _noise(n: int, numel: int, rng: np.random.Generator, scale: float) -> np.ndarray:
    """Gaussian pixel noise [n, numel] with std ``scale``: a random window of a fixed bank.

    Drawing fresh Gaussians for every pixel would take most of the rendering time; a random
    offset into the bank is ~30× cheaper and still gives reproducible, independent-looking
    noise per image.
    """
    bank = _noise_bank(float(scale))
    if numel > len(bank) // 4:  # very large images: just draw
        return scale * rng.standard_normal((n, numel), dtype=np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(bank, numel)
    return windows[rng.integers(0, len(windows), n)]


def _render(
    scenes: list[tuple[ShapeAttributes, ...]], size: int, noise: float, rng: np.random.Generator
) -> torch.Tensor:
    """Draw scenes (tuples of objects) into a uint8 tensor [N, 3, size, size].

    Works in 0..255 units with a +0.5 offset that alpha blending preserves, so the final
    cast rounds without extra passes over the (memory-bound) canvas.
    """
    n = len(scenes)
    tint = 255 * rng.uniform(-0.02, 0.02, (n, 3, 1, 1)).astype(np.float32)
    canvas = (255 * _background(n, size, rng) + 0.5)[:, None] + tint  # [n, 3, size, size]
    n_slots = max(len(s) for s in scenes)
    slot_rows, slot_codes, slot_geom = [], [], []
    for k in range(n_slots):
        rows = np.array([i for i, s in enumerate(scenes) if len(s) > k], dtype=np.int64)
        codes = _encode([scenes[i][k] for i in rows])
        slot_rows.append(rows)
        slot_codes.append(codes)
        slot_geom.append(list(_geometry(codes, size, rng)))
    alphas = [_alpha(c[:, 1], *g, size) for c, g in zip(slot_codes, slot_geom)]
    if n_slots > 1:
        _separate(scenes, size, rng, slot_rows, slot_codes, slot_geom, alphas)
    for rows, codes, a in zip(slot_rows, slot_codes, alphas):
        rgb = (255 * _jittered_colours(codes, rng) + 0.5)[:, :, None, None]
        if len(rows) == n:  # alpha blending, in place: canvas += a * (rgb - canvas)
            blend = rgb - canvas
            blend *= a[:, None]
            canvas += blend
        else:
            canvas[rows] += a[:, None] * (rgb - canvas[rows])
    if noise > 0:
        canvas += _noise(n, canvas[0].size, rng, 255 * noise).reshape(canvas.shape)
    np.clip(canvas, 0, 255, out=canvas)
    return torch.from_numpy(canvas.astype(np.uint8))


def _separate(scenes, size, rng, slot_rows, slot_codes, slot_geom, alphas, tries: int = 10):
    """Re-draw the jitter of objects that touch another object; fall back to no jitter.

    :meth:`ShapesWorld.scene_split` only composes objects that are apart at their nominal
    geometry (with a 1-pixel margin), so the fallback always separates them.
    """
    index = [dict(zip(rows.tolist(), range(len(rows)))) for rows in slot_rows]

    def touching() -> list[int]:
        bad = []
        for i, s in enumerate(scenes):
            masks = [alphas[k][index[k][i]] for k in range(len(s))]
            if any(
                (masks[a] * masks[b]).max() > 0 for a, b in itertools.combinations(range(len(s)), 2)
            ):
                bad.append(i)
        return bad

    bad = touching()
    for attempt in range(tries + 1):
        if not bad:
            return
        for k in range(len(slot_rows)):
            local = np.array([index[k][i] for i in bad if i in index[k]], dtype=np.int64)
            if local.size == 0:
                continue
            codes = slot_codes[k][local]
            cx, cy, r = _geometry(codes, size, None if attempt == tries else rng)
            for g, new in zip(slot_geom[k], (cx, cy, r)):
                g[local] = new
            alphas[k][local] = _alpha(codes[:, 1], cx, cy, r, size)
        bad = touching()
