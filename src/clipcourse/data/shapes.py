"""Shapes world: the course's embedded image–caption dataset.

Every chapter needs image–text pairs that are (1) available offline, (2) cheap
to generate on a laptop CPU, (3) learnable in about a minute, and (4) come with
exact ground truth. A procedurally drawn world gives all four: each image shows
one or more shapes with four attributes (colour, shape, size, position), and
each image has several captions written from templates and synonyms, like the
five captions per image in COCO.

Two ideas from the literature shape the design:

* **Held-out combinations** (as in ShapeWorld and CLEVR-CoGenT): some
  colour×shape pairs never occur in training images or captions, although each
  colour and each shape does. Zero-shot accuracy on them measures
  compositional generalisation, not memorisation.
* **Graded relevance**: a caption can mention only some attributes, and an image
  can match some of them. :func:`relevance` counts the matches, which gives
  retrieval metrics with several relevant items (and NDCG) honest ground truth.

Everything is deterministic for a seed and vectorised over the batch in NumPy,
so tens of thousands of images per second render on a single core.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import re
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

__all__ = [
    "ALL_CLASSES",
    "ATTRIBUTES",
    "ATTRIBUTE_VALUES",
    "COLOURS",
    "COLOUR_RGB",
    "DEFAULT_HELD_OUT",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "SPLIT_SIZES",
    "SYNONYMS",
    "Caption",
    "ShapeAttributes",
    "ShapesDataset",
    "ShapesSplit",
    "ShapesWorld",
    "captions_for",
    "class_name",
    "images_per_second",
    "matches_all",
    "relevance",
]

# --------------------------------------------------------------------------
# Vocabulary
# --------------------------------------------------------------------------

COLOURS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = ("top left", "top right", "bottom left", "bottom right", "centre")
ATTRIBUTES: tuple[str, ...] = ("colour", "shape", "size", "position")
ATTRIBUTE_VALUES: dict[str, tuple[str, ...]] = {
    "colour": COLOURS,
    "shape": SHAPES,
    "size": SIZES,
    "position": POSITIONS,
}

#: Mean RGB in [0, 1]; chosen so that every pair differs by >= 0.35 in some channel.
COLOUR_RGB: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.12, 0.12),
    "green": (0.15, 0.78, 0.20),
    "blue": (0.15, 0.32, 0.95),
    "yellow": (0.95, 0.90, 0.12),
    "purple": (0.62, 0.18, 0.82),
    "orange": (0.98, 0.52, 0.06),
}

#: One held-out pair per shape, with distinct colours, so every colour and every
#: shape still appears in training; only the *combination* is new at test time.
DEFAULT_HELD_OUT: tuple[tuple[str, str], ...] = (
    ("blue", "circle"),
    ("yellow", "square"),
    ("red", "triangle"),
    ("purple", "diamond"),
    ("green", "cross"),
)

#: All colour×shape classes in a fixed order (colour-major): labels index into this.
ALL_CLASSES: list[tuple[str, str]] = [(c, s) for c in COLOURS for s in SHAPES]

#: Words a caption may use for each value. The first word is the canonical one.
#: Synonyms are consistent (always the same meaning), so a text encoder can learn them.
SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "colour": {
        "red": ("red", "crimson", "scarlet"),
        "green": ("green", "emerald"),
        "blue": ("blue", "cobalt"),
        "yellow": ("yellow", "golden"),
        "purple": ("purple", "violet"),
        "orange": ("orange", "tangerine"),
    },
    "shape": {
        "circle": ("circle", "disc"),
        "square": ("square", "box", "block"),
        "triangle": ("triangle", "wedge"),
        "diamond": ("diamond", "rhombus"),
        "cross": ("cross", "plus sign"),
    },
    "size": {
        "small": ("small", "little", "tiny"),
        "large": ("large", "big", "huge"),
    },
    "position": {  # full phrases, so templates stay grammatical
        "top left": ("in the top left", "in the upper left corner", "at the top left"),
        "top right": ("in the top right", "in the upper right corner", "at the top right"),
        "bottom left": ("in the bottom left", "in the lower left corner", "at the bottom left"),
        "bottom right": ("in the bottom right", "in the lower right corner", "at the bottom right"),
        "centre": ("in the centre", "in the middle", "at the centre"),
    },
}

#: Default number of images per split (each generates in well under a second).
SPLIT_SIZES: dict[str, int] = {"train": 5000, "val": 1000, "test": 1000, "test_unseen": 500}

Combos = Literal["seen", "held_out", "all"]


def _check_value(attribute: str, value: object) -> None:
    if attribute not in ATTRIBUTE_VALUES:
        raise ValueError(f"unknown attribute {attribute!r}; expected one of {ATTRIBUTES}")
    if value not in ATTRIBUTE_VALUES[attribute]:
        raise ValueError(
            f"unknown {attribute} {value!r}; expected one of {ATTRIBUTE_VALUES[attribute]}"
        )


def _check_count(name: str, n: object) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"{name} must be a positive integer, got {n!r}")
    return int(n)


def _as_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _derived_rng(seed: int, *keys: str | int) -> np.random.Generator:
    """An independent stream per (seed, purpose): stable across runs and Python processes."""
    ints = [zlib.crc32(k.encode()) if isinstance(k, str) else int(k) for k in keys]
    return np.random.default_rng([int(seed), *ints])


def class_name(colour: str, shape: str) -> str:
    """The class's prompt-ready name, e.g. ``class_name("red", "circle") == "red circle"``."""
    _check_value("colour", colour)
    _check_value("shape", shape)
    return f"{colour} {shape}"


# --------------------------------------------------------------------------
# Attributes, captions, relevance
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ShapeAttributes:
    """The ground truth of one drawn object."""

    colour: str
    shape: str
    size: str
    position: str

    def __post_init__(self) -> None:
        for attribute in ATTRIBUTES:
            _check_value(attribute, getattr(self, attribute))

    def as_dict(self) -> dict[str, str]:
        return {a: getattr(self, a) for a in ATTRIBUTES}

    @property
    def combo(self) -> tuple[str, str]:
        """The (colour, shape) pair: the unit of held-out generalisation."""
        return (self.colour, self.shape)


@dataclass(frozen=True)
class Caption:
    """A caption and exactly which attribute values its text mentions.

    ``mentioned`` describes the first object the caption talks about. Scene
    captions ("a red circle and a blue square") also list every object's
    mentions in ``objects``; for single-object captions ``objects`` is
    ``(mentioned,)`` (or empty when built by hand, which means the same).
    """

    text: str
    mentioned: dict[str, str]
    objects: tuple[dict[str, str], ...] = field(default=())

    @property
    def mentions(self) -> tuple[dict[str, str], ...]:
        return self.objects or (self.mentioned,)


def _checked_mentions(mentioned: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(mentioned, Mapping):
        raise ValueError(f"caption attributes must be a mapping, got {type(mentioned).__name__}")
    for attribute, value in mentioned.items():
        _check_value(attribute, value)
    return dict(mentioned)


def _image_objects(
    image_attributes: ShapeAttributes | Mapping[str, str] | Sequence[ShapeAttributes],
) -> tuple[ShapeAttributes, ...]:
    if isinstance(image_attributes, ShapeAttributes):
        return (image_attributes,)
    if isinstance(image_attributes, Mapping):
        unknown = set(image_attributes) - set(ATTRIBUTES)
        missing = set(ATTRIBUTES) - set(image_attributes)
        if unknown or missing:
            raise ValueError(
                f"image attributes need exactly {ATTRIBUTES}; "
                f"unknown: {sorted(unknown)}, missing: {sorted(missing)}"
            )
        return (ShapeAttributes(**image_attributes),)
    objects = tuple(_image_objects(o)[0] for o in image_attributes)
    if not objects:
        raise ValueError("image has no objects")
    return objects


def _matches(mentioned: Mapping[str, str], obj: ShapeAttributes | None) -> int:
    if obj is None:
        return 0
    return sum(getattr(obj, a) == v for a, v in mentioned.items())


def relevance(
    caption_attributes: Mapping[str, str] | Caption,
    image_attributes: ShapeAttributes | Mapping[str, str] | Sequence[ShapeAttributes],
) -> int:
    """Graded relevance: how many of the caption's mentioned attributes the image has.

    For a multi-object image, a plain mapping is scored against its best-matching
    object. A :class:`Caption` that mentions several objects is scored by the best
    one-to-one assignment of its mentions to the image's objects (so "a red circle
    and a blue square" scores 4 on that scene but 2 on "a blue circle and a red
    square": attribute binding matters).
    """
    objects = _image_objects(image_attributes)
    if isinstance(caption_attributes, Caption):
        mentions = [_checked_mentions(m) for m in caption_attributes.mentions]
    else:
        mentions = [_checked_mentions(caption_attributes)]
    if len(mentions) == 1:
        return max(_matches(mentions[0], o) for o in objects)
    padded = list(objects) + [None] * max(0, len(mentions) - len(objects))
    return max(
        sum(_matches(m, o) for m, o in zip(mentions, assignment))
        for assignment in itertools.permutations(padded, len(mentions))
    )


def matches_all(
    caption_attributes: Mapping[str, str] | Caption,
    image_attributes: ShapeAttributes | Mapping[str, str] | Sequence[ShapeAttributes],
) -> bool:
    """True when the image has every attribute the caption mentions (a "correct" retrieval)."""
    if isinstance(caption_attributes, Caption):
        total = sum(len(m) for m in caption_attributes.mentions)
    else:
        total = len(_checked_mentions(caption_attributes))
    return relevance(caption_attributes, image_attributes) == total


# Templates name the attributes they mention; {where} is a full position phrase.
# Every template mentions colour or shape, so each caption identifies something drawable.
_TEMPLATES: tuple[str, ...] = (
    "a {size} {colour} {shape} {where}",
    "there is a {size} {colour} {shape} {where}",
    "a picture of a {size} {colour} {shape}",
    "a {colour} {shape} {where}",
    "a {colour} {shape}",
    "a photo of a {colour} {shape}",
    "a {shape} that is {colour}",
    "a {size} {shape} {where}",
    "something {colour} {where}",
    "a {size} {colour} shape",
    "a drawing of a {shape}",
)
_FIELDS = {"colour": "colour", "shape": "shape", "size": "size", "where": "position"}


def _mentions(template: str) -> tuple[str, ...]:
    return tuple(_FIELDS[f] for f in re.findall(r"{(\w+)}", template))


def _with_articles(template: str) -> str:
    """'a {colour}' -> '{a_colour}', filled with 'a red' or 'an orange' (cheaper than a regex per caption)."""
    return re.sub(r"\ba \{(\w+)\}", r"{a_\1}", template)


_TEMPLATE_MENTIONS = tuple(_mentions(t) for t in _TEMPLATES)
_TEMPLATES_A = tuple(_with_articles(t) for t in _TEMPLATES)
_SCENE_TEMPLATES: tuple[tuple[str, str], ...] = (
    # (phrase per object, sentence around the joined phrases)
    ("a {size} {colour} {shape} {where}", "{objects}"),
    ("a {colour} {shape}", "{objects}"),
    ("a {colour} {shape}", "a picture of {objects}"),
    ("a {colour} {shape}", "there is {objects}"),
    ("a {size} {colour} {shape}", "{objects}"),
    ("a {colour} {shape} {where}", "{objects}"),
)
_SCENE_MENTIONS = tuple(_mentions(p) for p, _ in _SCENE_TEMPLATES)
_SCENE_PHRASES_A = tuple(_with_articles(p) for p, _ in _SCENE_TEMPLATES)


_SLOTS = (
    ("colour", "colour", "a_colour"),
    ("shape", "shape", "a_shape"),
    ("size", "size", "a_size"),
    ("where", "position", "a_where"),
)
#: attribute -> value -> ((word, word with its article), ...), precomputed for speed.
_WORDS = {
    attribute: {
        value: tuple((w, ("an " if w[0] in "aeiou" else "a ") + w) for w in words)
        for value, words in by_value.items()
    }
    for attribute, by_value in SYNONYMS.items()
}


def _fill(template: str, values: Mapping[str, str], u: Sequence[float] | None) -> str:
    """Fill a template; ``u`` (4 uniforms) picks synonyms, ``None`` means canonical words."""
    words = {}
    for k, (slot, attribute, a_slot) in enumerate(_SLOTS):
        options = _WORDS[attribute][values[attribute]]
        words[slot], words[a_slot] = options[0] if u is None else options[int(u[k] * len(options))]
    return template.format_map(words)


def _join(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _captions_from_uniforms(
    objects: Sequence[ShapeAttributes], order: Sequence[int], u: Sequence[Sequence[float]]
) -> list[Caption]:
    """Captions for one image, from pre-drawn randomness (so splits can draw it in bulk).

    Caption 0 is always the full description in canonical words ("a small red circle in
    the top left"): a stable reference caption. Caption k > 0 uses template ``order[k-1]``
    (so an image's captions use distinct templates while there are enough) and ``u[k]``:
    4 uniforms per object pick synonyms, then one per object shuffles scene objects.
    """
    values = [o.as_dict() for o in objects]
    captions = []
    for k in range(len(u)):
        t = 0 if k == 0 else order[(k - 1) % len(order)]
        if len(objects) == 1:
            text = _fill(_TEMPLATES_A[t], values[0], None if k == 0 else u[k])
            mentions = ({a: values[0][a] for a in _TEMPLATE_MENTIONS[t]},)
        else:
            # Caption 0 lists objects in image order; others shuffle, so order carries no signal.
            m = len(objects)
            perm = range(m) if k == 0 else np.argsort(u[k][4 * m : 5 * m]).tolist()
            parts = [
                _fill(_SCENE_PHRASES_A[t], values[j], None if k == 0 else u[k][4 * j : 4 * j + 4])
                for j in perm
            ]
            text = _SCENE_TEMPLATES[t][1].format(objects=_join(parts))
            mentions = tuple({a: values[j][a] for a in _SCENE_MENTIONS[t]} for j in perm)
        captions.append(Caption(text, mentions[0], mentions))
    return captions


@contextlib.contextmanager
def _gc_paused():
    """Building ~10^5 small objects triggers many useless GC passes; pausing GC halves the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _template_orders(rng: np.random.Generator, n_images: int, n_objects: int) -> list[list[int]]:
    """A random ranking of the non-canonical templates per image."""
    n_templates = len(_TEMPLATES) if n_objects == 1 else len(_SCENE_TEMPLATES)
    return (1 + np.argsort(rng.random((n_images, n_templates - 1)), axis=1)).tolist()


def captions_for(
    attrs: ShapeAttributes | Sequence[ShapeAttributes],
    rng: np.random.Generator | int | None = None,
    n: int = 5,
) -> list[Caption]:
    """``n`` captions for one image (one object, or a sequence of objects for a scene).

    Caption 0 is the canonical full description; the others use distinct templates
    (while there are enough) with random synonyms and may mention only some attributes.
    """
    n = _check_count("n", n)
    objects = _image_objects(attrs)
    rng = _as_rng(rng)
    order = _template_orders(rng, 1, len(objects))[0]
    return _captions_from_uniforms(objects, order, rng.random((n, 5 * len(objects))).tolist())


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# The world
# --------------------------------------------------------------------------


@dataclass
class ShapesSplit:
    """A generated split: images plus the ground truth needed by every chapter."""

    images: torch.Tensor  # uint8 [N, 3, H, W]
    attributes: list[tuple[ShapeAttributes, ...]]  # objects per image
    captions: list[list[Caption]]  # n_captions per image
    name: str

    def __len__(self) -> int:
        return len(self.attributes)

    def float_images(self) -> torch.Tensor:
        """float32 in [0, 1], the form models take."""
        return self.images.float().div_(255)

    def labels(self, classes: Sequence[tuple[str, str]] = ALL_CLASSES) -> torch.Tensor:
        """int64 index into ``classes`` of each image's first object's (colour, shape)."""
        lookup = {tuple(c): i for i, c in enumerate(classes)}
        missing = sorted({objs[0].combo for objs in self.attributes} - set(lookup))
        if missing:
            raise ValueError(f"classes do not include {missing} (present in split {self.name!r})")
        return torch.tensor([lookup[objs[0].combo] for objs in self.attributes], dtype=torch.int64)

    def texts(self, k: int = 0) -> list[str]:
        """The k-th caption's text of every image (k=0: the canonical full description)."""
        return [caps[k].text for caps in self.captions]

    def subset(self, indices: Sequence[int] | torch.Tensor) -> ShapesSplit:
        idx = [int(i) for i in indices]
        return ShapesSplit(
            self.images[idx],
            [self.attributes[i] for i in idx],
            [self.captions[i] for i in idx],
            self.name,
        )


class ShapesWorld:
    """A deterministic generator of Shapes-world images, captions and splits.

    >>> world = ShapesWorld(seed=0)
    >>> train = world.split("train")          # seen colour×shape combinations only
    >>> unseen = world.split("test_unseen")   # held-out combinations only
    """

    def __init__(
        self,
        seed: int = 0,
        image_size: int = 32,
        held_out: Sequence[tuple[str, str]] | int | None = None,
        noise: float = 0.05,
        n_captions: int = 5,
    ) -> None:
        if (
            isinstance(image_size, bool)
            or not isinstance(image_size, (int, np.integer))
            or image_size < 8
        ):
            raise ValueError(
                f"image_size must be an integer of at least 8 pixels, got {image_size!r}"
            )
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if not (isinstance(noise, (int, float)) and 0 <= noise < 1):
            raise ValueError(f"noise must be a number in [0, 1), got {noise!r}")
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.noise = float(noise)
        self.n_captions = _check_count("n_captions", n_captions)
        self.held_out: tuple[tuple[str, str], ...] = self._held_out(held_out)
        held = set(self.held_out)
        self.seen: tuple[tuple[str, str], ...] = tuple(c for c in ALL_CLASSES if c not in held)
        if not self.seen:
            raise ValueError(
                "held_out covers every colour×shape combination: training would be empty"
            )

    def __repr__(self) -> str:
        return (
            f"ShapesWorld(seed={self.seed}, image_size={self.image_size}, "
            f"held_out={self.held_out}, noise={self.noise}, n_captions={self.n_captions})"
        )

    def _held_out(self, held_out) -> tuple[tuple[str, str], ...]:
        if held_out is None:
            return DEFAULT_HELD_OUT
        if isinstance(held_out, (int, np.integer)) and not isinstance(held_out, bool):
            n = int(held_out)
            if not 0 <= n <= len(ALL_CLASSES):
                raise ValueError(
                    f"held_out={n}: must be between 0 and {len(ALL_CLASSES)} combinations"
                )
            return self._choose_held_out(n)
        pairs = []
        for pair in held_out:
            if isinstance(pair, str) or len(pair) != 2:
                raise ValueError(f"held-out entries must be (colour, shape) pairs, got {pair!r}")
            colour, shape = pair
            _check_value("colour", colour)
            _check_value("shape", shape)
            if (colour, shape) in pairs:
                raise ValueError(f"held-out pair {(colour, shape)} is listed twice")
            pairs.append((colour, shape))
        return tuple(pairs)

    def _choose_held_out(self, n: int) -> tuple[tuple[str, str], ...]:
        """n pairs from the seed, preferring unused colours and shapes so each stays in training."""
        order = [
            ALL_CLASSES[i]
            for i in _derived_rng(self.seed, "held_out").permutation(len(ALL_CLASSES))
        ]
        chosen: list[tuple[str, str]] = []
        while len(chosen) < n:
            colours, shapes = {c for c, _ in chosen}, {s for _, s in chosen}
            fresh = [
                p for p in order if p not in chosen and p[0] not in colours and p[1] not in shapes
            ]
            rest = [p for p in order if p not in chosen]
            chosen.append((fresh or rest)[0])
        return tuple(chosen)

    def is_held_out(self, attrs: ShapeAttributes) -> bool:
        return attrs.combo in self.held_out

    def _combos(self, combos: str) -> tuple[tuple[str, str], ...]:
        pools = {"seen": self.seen, "held_out": self.held_out, "all": tuple(ALL_CLASSES)}
        if combos not in pools:
            raise ValueError(f"combos must be one of {tuple(pools)}, got {combos!r}")
        if not pools[combos]:
            raise ValueError(f"no {combos!r} colour×shape combinations in this world")
        return pools[combos]

    def sample_attributes(
        self, n: int, rng: np.random.Generator | int | None = None, *, combos: Combos = "seen"
    ) -> list[ShapeAttributes]:
        """n objects: a uniform (colour, shape) pair from ``combos``, uniform size and position."""
        n = _check_count("n", n)
        pool = self._combos(combos)
        rng = _as_rng(rng)
        pair = rng.integers(len(pool), size=n)
        size = rng.integers(len(SIZES), size=n)
        position = rng.integers(len(POSITIONS), size=n)
        return [
            ShapeAttributes(pool[p][0], pool[p][1], SIZES[z], POSITIONS[q])
            for p, z, q in zip(pair.tolist(), size.tolist(), position.tolist())
        ]

    def render(
        self,
        attrs: Sequence[ShapeAttributes] | Sequence[Sequence[ShapeAttributes]],
        rng: np.random.Generator | int | None = None,
    ) -> torch.Tensor:
        """Draw images, uint8 [N, 3, H, W]. An entry that is a sequence of objects draws a scene.

        Objects of one image must be at different positions; their jitter is redrawn where
        they would touch (scene_split only composes objects that fit side by side).
        """
        scenes = [(a,) if isinstance(a, ShapeAttributes) else tuple(a) for a in attrs]
        if not scenes:
            raise ValueError("nothing to render: attrs is empty")
        for s in scenes:
            if not s or not all(isinstance(o, ShapeAttributes) for o in s):
                raise ValueError(f"each image needs one or more ShapeAttributes, got {s!r}")
            if len({o.position for o in s}) < len(s):
                raise ValueError(f"objects of one image must have different positions: {s}")
        return _render(scenes, self.image_size, self.noise, _as_rng(rng))

    def _make_split(
        self, name: str, scenes: list[tuple[ShapeAttributes, ...]], rng: np.random.Generator
    ) -> ShapesSplit:
        images = self.render(scenes, rng)
        m = max(len(s) for s in scenes)
        orders = _template_orders(rng, len(scenes), m)
        uniforms = rng.random((len(scenes), self.n_captions, 5 * m)).tolist()
        with _gc_paused():
            captions = [
                _captions_from_uniforms(s, o, u) for s, o, u in zip(scenes, orders, uniforms)
            ]
        return ShapesSplit(images, scenes, captions, name)

    def split(self, name: str, n: int | None = None) -> ShapesSplit:
        """A named split, identical whatever was generated before (its own rng from seed and name).

        train/val: seen combinations only; test: all; test_unseen: held-out only.
        """
        combos = {"train": "seen", "val": "seen", "test": "all", "test_unseen": "held_out"}
        if name not in combos:
            raise ValueError(f"unknown split {name!r}; expected one of {tuple(combos)}")
        n = SPLIT_SIZES[name] if n is None else _check_count("n", n)
        if not self._combos_available(combos[name]):
            raise ValueError(
                f"split {name!r} would be empty: this world has no held-out combinations"
            )
        rng = _derived_rng(self.seed, "split", name)
        objects = self.sample_attributes(n, rng, combos=combos[name])
        return self._make_split(name, [(o,) for o in objects], rng)

    def _combos_available(self, combos: str) -> bool:
        return bool({"seen": self.seen, "held_out": self.held_out, "all": ALL_CLASSES}[combos])

    @functools.cached_property
    def _apart(self) -> np.ndarray:
        """apart[i, j]: objects with (shape, size, position) codes i and j never touch nominally."""
        grid = np.array(
            list(itertools.product(range(len(SHAPES)), range(len(SIZES)), range(len(POSITIONS))))
        )
        codes = np.column_stack([np.zeros(len(grid), dtype=np.int64), grid])
        masks = (
            _alpha(codes[:, 1], *_geometry(codes, self.image_size, None), self.image_size, grow=1.0)
            > 0
        )
        flat = masks.reshape(len(grid), -1).astype(np.float32)
        return (flat @ flat.T) == 0

    def scene_split(
        self, n: int, n_objects: int = 2, seed_offset: int = 0, *, combos: Combos = "seen"
    ) -> ShapesSplit:
        """Multi-object images for attribute binding, e.g. "a red circle and a blue square".

        Objects in one scene have distinct colours, shapes and positions and never overlap;
        every object's (colour, shape) comes from ``combos`` (default: seen, safe to train on).
        """
        n = _check_count("n", n)
        n_objects = _check_count("n_objects", n_objects)
        if n_objects > len(POSITIONS):
            raise ValueError(f"n_objects must be at most {len(POSITIONS)} (one per position)")
        if isinstance(seed_offset, bool) or not isinstance(seed_offset, int) or seed_offset < 0:
            raise ValueError(f"seed_offset must be a non-negative integer, got {seed_offset!r}")
        allowed = set(self._combos(combos))
        rng = _derived_rng(self.seed, "scene", n_objects, seed_offset, combos)
        codes = np.zeros((n, n_objects, 4), dtype=np.int64)
        todo = np.arange(n)
        for _ in range(1000):
            m = len(todo)
            for a, k in enumerate((len(COLOURS), len(SHAPES), None, len(POSITIONS))):
                if k is None:
                    codes[todo, :, a] = rng.integers(len(SIZES), size=(m, n_objects))
                else:  # distinct values per scene: the first n_objects of a random permutation
                    codes[todo, :, a] = np.argsort(rng.random((m, k)), axis=1)[:, :n_objects]
            ok = np.ones(m, dtype=bool)
            sub = codes[todo]
            for j in range(n_objects):
                ok &= np.array([(COLOURS[c], SHAPES[s]) in allowed for c, s in sub[:, j, :2]])
            key = (sub[..., 1] * len(SIZES) + sub[..., 2]) * len(POSITIONS) + sub[..., 3]
            for a, b in itertools.combinations(range(n_objects), 2):
                ok &= self._apart[key[:, a], key[:, b]]
            todo = todo[~ok]
            if not len(todo):
                break
        else:
            raise ValueError(f"could not compose {n_objects}-object scenes from combos {combos!r}")
        scenes = [tuple(_decode(c)) for c in codes]
        return self._make_split(f"scenes{n_objects}", scenes, rng)


# --------------------------------------------------------------------------
# Dataset and benchmark
# --------------------------------------------------------------------------


def _mix(*values: int) -> int:
    """A tiny stable integer hash (splitmix64 steps): cheap per-item randomness for datasets."""
    x = 0x9E3779B97F4A7C15
    for v in values:
        x = (x ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 29
    return x


class ShapesDataset(torch.utils.data.Dataset):
    """Image–caption pairs for a DataLoader: dict(image, caption, index, label).

    ``caption="random"`` picks one of the image's captions from (seed, index, epoch), so
    each epoch shows different phrasings yet runs are reproducible; call
    :meth:`set_epoch` at the start of every epoch. ``"first"`` or an int picks a fixed one.
    """

    def __init__(
        self,
        split: ShapesSplit,
        transform=None,
        caption: Literal["random", "first"] | int = "random",
        seed: int = 0,
    ) -> None:
        if caption == "first":
            caption = 0
        if caption != "random":
            n_caps = min(len(c) for c in split.captions)
            if (
                isinstance(caption, bool)
                or not isinstance(caption, int)
                or not 0 <= caption < n_caps
            ):
                raise ValueError(
                    f"caption must be 'random', 'first' or an index in [0, {n_caps}), got {caption!r}"
                )
        self.split = split
        self.transform = transform
        self.caption = caption
        self.seed = int(seed)
        self.epoch = 0
        self._labels = split.labels().tolist()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.split)

    def caption_index(self, i: int) -> int:
        n_caps = len(self.split.captions[i])
        if self.caption == "random":
            return _mix(self.seed, i, self.epoch) % n_caps
        return int(self.caption)

    def __getitem__(self, i: int) -> dict:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} images")
        i = int(i) % len(self)
        image = self.split.images[i].float().div_(255)
        if self.transform is not None:
            image = self.transform(image)
        return {
            "image": image,
            "caption": self.split.captions[i][self.caption_index(i)].text,
            "index": i,
            "label": self._labels[i],
        }


def images_per_second(n: int = 5000, image_size: int = 32, repeats: int = 3) -> float:
    """Rendering throughput on one CPU thread (best of ``repeats``), for the benchmarks."""
    n = _check_count("n", n)
    world = ShapesWorld(seed=0, image_size=image_size)
    attrs = world.sample_attributes(n, 0, combos="all")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        best = float("inf")
        for r in range(repeats):
            start = time.perf_counter()
            world.render(attrs, np.random.default_rng(r))
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return n / best
