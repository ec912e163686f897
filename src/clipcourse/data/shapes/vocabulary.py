"""Shapes world's vocabulary: colours, shapes, sizes, positions, their synonyms and the classes.

Also :class:`ShapeAttributes` (the ground truth of one drawn object) and the small
validation and seeding helpers every other part of the world uses.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["ALL_CLASSES", "ATTRIBUTES", "ATTRIBUTE_VALUES", "COLOURS", "COLOUR_RGB", "DEFAULT_HELD_OUT", "POSITIONS", "SHAPES", "SIZES", "SPLIT_SIZES", "SYNONYMS", "ShapeAttributes", "class_name"]

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
