"""Shapes world as a ``torch.utils.data.Dataset``, and the rendering-speed benchmark."""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import torch

from clipcourse.data.shapes.vocabulary import _check_count
from clipcourse.data.shapes.world import ShapesSplit, ShapesWorld
from clipcourse.device import torch_threads

__all__ = ["ShapesDataset", "images_per_second"]

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
    best = float("inf")
    with torch_threads(1):
        for r in range(repeats):
            start = time.perf_counter()
            world.render(attrs, np.random.default_rng(r))
            best = min(best, time.perf_counter() - start)
    return n / best
