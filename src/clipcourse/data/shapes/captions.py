"""Shapes world's captions and their relevance to images.

Captions are written from templates and synonyms, several per image, like the
five captions per image in COCO. A caption can mention only some attributes, and
an image can match some of them: :func:`relevance` counts the matches, which gives
retrieval metrics with several relevant items (and NDCG) honest ground truth.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from clipcourse.data.shapes.vocabulary import (
    ATTRIBUTES,
    SYNONYMS,
    ShapeAttributes,
    _as_rng,
    _check_count,
    _check_value,
)

__all__ = ["Caption", "captions_for", "matches_all", "relevance"]

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
