"""ShapesWorld: the world, its held-out colour×shape combinations and its splits.

Some colour×shape pairs never occur in training images or captions, although
each colour and each shape does (as in ShapeWorld and CLEVR-CoGenT), so zero-shot
accuracy on them measures compositional generalisation, not memorisation. The
design of the whole world is described in :mod:`clipcourse.data.shapes`.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from clipcourse.data.shapes.captions import (
    Caption,
    _captions_from_uniforms,
    _gc_paused,
    _template_orders,
)
from clipcourse.data.shapes.render import _alpha, _decode, _geometry, _render
from clipcourse.data.shapes.vocabulary import (
    ALL_CLASSES,
    COLOURS,
    DEFAULT_HELD_OUT,
    POSITIONS,
    SHAPES,
    SIZES,
    SPLIT_SIZES,
    Combos,
    ShapeAttributes,
    _as_rng,
    _check_count,
    _check_value,
    _derived_rng,
)

__all__ = ["ShapesSplit", "ShapesWorld"]

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
