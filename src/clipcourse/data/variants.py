"""Shapes-world variants that make one failure of CLIP happen on purpose, deterministic by seed.

Each function changes exactly one thing about the clean world, so a drop in a
metric can be pinned on it:

* bias: :func:`spurious_split` ties an attribute to the label in training data
  (most circles are red) and :func:`counter_split` breaks the tie at test time;
* domain shift: :func:`sketch` (outline-only shapes) and
  :func:`textured_background` redraw test images in a style never trained on;
* long tail: :func:`long_tail_counts` / :func:`long_tail_split` skew class frequencies;
* ambiguity: :func:`synonym_names` and :func:`vague_names` ask for a class in
  other words.

Adversarial perturbations depend on a model and live in
:mod:`clipcourse.adversarial`; the membership test in :mod:`clipcourse.privacy`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from clipcourse.data.shapes import (
    ALL_CLASSES,
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    SYNONYMS,
    ShapeAttributes,
    ShapesSplit,
    ShapesWorld,
    captions_for,
)
from clipcourse.data.shapes.vocabulary import _derived_rng

__all__ = [
    "counter_split",
    "foreground_mask",
    "long_tail_counts",
    "long_tail_split",
    "rewrite_vague",
    "sketch",
    "spurious_split",
    "synonym_names",
    "textured_background",
    "vague_names",
]


def _split(world: ShapesWorld, objects: list[ShapeAttributes], name: str, rng: np.random.Generator) -> ShapesSplit:
    images = world.render(objects, rng)
    captions = [captions_for(o, rng, n=world.n_captions) for o in objects]
    return ShapesSplit(images, [(o,) for o in objects], captions, name)


def _objects(pairs: Sequence[tuple[str, str]], rng: np.random.Generator) -> list[ShapeAttributes]:
    size = rng.integers(len(SIZES), size=len(pairs)).tolist()
    where = rng.integers(len(POSITIONS), size=len(pairs)).tolist()
    return [ShapeAttributes(c, s, SIZES[z], POSITIONS[p]) for (c, s), z, p in zip(pairs, size, where)]


# -- bias: a spurious correlation --------------------------------------------------------
def _partner(shape: str) -> str:
    """The colour that goes with ``shape`` in biased data: circle-red, square-green, ..."""
    return COLOURS[SHAPES.index(shape)]


def spurious_split(world: ShapesWorld, n: int, correlation: float = 0.95, seed: int = 0) -> ShapesSplit:
    """Single objects whose colour predicts their shape: with probability ``correlation`` each
    shape gets its partner colour (circle-red, square-green, triangle-blue, diamond-yellow,
    cross-purple), otherwise a uniformly random other colour.

    A classifier of *shape* trained on this split can score well by reading colour.
    """
    if not 0.0 <= correlation <= 1.0:
        raise ValueError(f"correlation must be in [0, 1], got {correlation}")
    rng = _derived_rng(seed, "spurious", n, int(correlation * 1e6))
    shapes = rng.integers(len(SHAPES), size=n)
    keep = rng.random(n) < correlation
    other = rng.integers(len(COLOURS) - 1, size=n)
    pairs = []
    for s, k, o in zip(shapes.tolist(), keep.tolist(), other.tolist()):
        partner = _partner(SHAPES[s])
        others = [c for c in COLOURS if c != partner]
        pairs.append((partner if k else others[o], SHAPES[s]))
    return _split(world, _objects(pairs, rng), f"spurious{correlation:g}", rng)


def counter_split(world: ShapesWorld, n: int, seed: int = 0) -> ShapesSplit:
    """Single objects that never have their shape's partner colour: where a shortcut fails."""
    rng = _derived_rng(seed, "counter", n)
    pairs = [(c, s) for c, s in ALL_CLASSES if c != _partner(s)]
    choice = rng.integers(len(pairs), size=n).tolist()
    return _split(world, _objects([pairs[i] for i in choice], rng), "counter", rng)


# -- long tail ------------------------------------------------------------------------
def long_tail_counts(num_classes: int, n_max: int, imbalance: float) -> list[int]:
    """Examples per class, decaying exponentially from ``n_max`` to ``n_max / imbalance``.

    The profile of CIFAR-LT (Cui et al. 2019): class k gets ``n_max * imbalance ** (-k / (C - 1))``.
    """
    if num_classes < 1 or n_max < 1 or imbalance < 1:
        raise ValueError(f"need num_classes >= 1, n_max >= 1, imbalance >= 1; got {num_classes}, {n_max}, {imbalance}")
    if num_classes == 1:
        return [n_max]
    return [max(1, round(n_max * imbalance ** (-k / (num_classes - 1)))) for k in range(num_classes)]


def long_tail_split(
    world: ShapesWorld, classes: Sequence[tuple[str, str]], n_max: int = 200, imbalance: float = 100.0, seed: int = 0
) -> ShapesSplit:
    """Single objects of ``classes`` with :func:`long_tail_counts` examples each (head first), shuffled."""
    counts = long_tail_counts(len(classes), n_max, imbalance)
    rng = _derived_rng(seed, "long_tail", n_max, int(imbalance * 1000))
    pairs = [tuple(c) for c, k in zip(classes, counts) for _ in range(k)]
    order = rng.permutation(len(pairs)).tolist()
    return _split(world, _objects([pairs[i] for i in order], rng), "long_tail", rng)


# -- domain shift --------------------------------------------------------------------
def foreground_mask(images: torch.Tensor, threshold: float = 0.3) -> torch.Tensor:
    """Bool ``[N, H, W]``: pixels that belong to a shape (saturated colour; the background is grey)."""
    x = _as_float(images)
    return (x.amax(1) - x.amin(1)) > threshold


def _as_float(images: torch.Tensor) -> torch.Tensor:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [N, 3, H, W], got {tuple(images.shape)}")
    return images.float() / 255 if images.dtype == torch.uint8 else images.float()


def _like(x: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8) if images.dtype == torch.uint8 else x.clamp(0, 1)


def sketch(images: torch.Tensor, width: int = 1) -> torch.Tensor:
    """Outline-only versions: each shape keeps a ``width``-pixel coloured border, its inside
    becomes background. Same dtype and shape as ``images`` (uint8 or float in [0, 1])."""
    x = _as_float(images)
    mask = foreground_mask(x).float()[:, None]
    k = 2 * width + 1
    inner = -F.max_pool2d(-mask, k, stride=1, padding=width)  # erosion
    outline = (mask - inner).clamp(0, 1)
    background = (x * (1 - mask)).sum((2, 3), keepdim=True) / (1 - mask).sum((2, 3), keepdim=True).clamp(min=1)
    inside = mask - outline
    return _like(x * (1 - inside) + background * inside, images)


def textured_background(images: torch.Tensor, strength: float = 0.35, period: int = 4, seed: int = 0) -> torch.Tensor:
    """Images whose background carries grey stripes at a random angle and phase (seeded).

    The shapes are untouched; only pixels outside :func:`foreground_mask` change.
    """
    x = _as_float(images)
    n, _, h, w = x.shape
    g = torch.Generator().manual_seed(seed)
    angle = torch.rand(n, 1, 1, generator=g) * torch.pi
    phase = torch.rand(n, 1, 1, generator=g) * 2 * torch.pi
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    t = xx * torch.cos(angle) + yy * torch.sin(angle)
    stripes = strength * (torch.sin(2 * torch.pi * t / period + phase) > 0).float()  # [N, H, W]
    mask = foreground_mask(x)
    out = x + (stripes * (~mask).float())[:, None]
    return _like(out, images)


# -- ambiguity -----------------------------------------------------------------------
def synonym_names(classes: Sequence[tuple[str, str]] = ALL_CLASSES, which: int = -1) -> list[str]:
    """Class names in other words: the ``which``-th synonym of colour and shape ("scarlet wedge")."""
    return [f"{SYNONYMS['colour'][c][which]} {SYNONYMS['shape'][s][which]}" for c, s in classes]


#: Vaguer words for each colour and shape: what a person might type, and not what captions say.
VAGUE: dict[str, str] = {
    "red": "reddish", "green": "greenish", "blue": "bluish", "yellow": "yellowish",
    "purple": "mauve", "orange": "orangey",
    "circle": "round one", "square": "boxy one", "triangle": "pointy one",
    "diamond": "tilted one", "cross": "plus one",
}  # fmt: skip


def rewrite_vague(query: str) -> str:
    """Replace every vague word of :data:`VAGUE` in ``query`` by its canonical word (a tiny thesaurus)."""
    for word, vague in sorted(VAGUE.items(), key=lambda kv: -len(kv[1])):
        query = query.replace(vague, word)
    return query


def vague_names(classes: Sequence[tuple[str, str]] = ALL_CLASSES) -> list[str]:
    """Class names in vague words the captions never use ("reddish round one")."""
    return [f"{VAGUE[c]} {VAGUE[s]}" for c, s in classes]
