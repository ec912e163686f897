"""Hard negatives: captions that differ from the true one only in how words are bound.

A contrastive batch of random pairs almost never holds "a blue circle and a red
square" next to "a red circle and a blue square", so nothing in CLIP's loss asks
the model to tell them apart, and a bag of words is enough to win (Yuksekgonul et
al., ICLR 2023). NegCLIP's remedy is to *write* such captions: perturb each true
caption (swap its attributes between objects, replace one attribute) and add the
result as an extra, wrong candidate in the image→text direction.

This module holds the perturbations (:func:`swap_colours` and friends), the
NegCLIP loss (:func:`negclip_loss`) and a ``loss_fn``
that plugs both into the chapter-2 training loop. Fine-tuning with it lives
in :mod:`clipcourse.binding`.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from clipcourse.clip import MAX_LOGIT_SCALE
from clipcourse.data.shapes import SYNONYMS
from clipcourse.train import Batch

__all__ = [
    "COLOUR_WORDS",
    "SHAPE_WORDS",
    "hard_negative",
    "hard_negative_tokens",
    "negclip_batch_loss",
    "negclip_loss",
    "replace_word",
    "swap_colours",
    "swap_words",
]

#: Every word Shapes-world captions use for a colour or for a shape (synonyms included).
COLOUR_WORDS: frozenset[str] = frozenset(w for ws in SYNONYMS["colour"].values() for w in ws)
SHAPE_WORDS: frozenset[str] = frozenset(w for ws in SYNONYMS["shape"].values() for w in ws if " " not in w)
_WORD = re.compile(r"\w+")


def _check_words(caption: str, words: Collection[str], what: str) -> None:
    if not isinstance(caption, str):
        raise ValueError(f"caption must be a string, got {type(caption).__name__}")
    if isinstance(words, str) or not all(isinstance(w, str) for w in words):
        raise ValueError(f"{what} must be a collection of words such as {{'red', 'blue'}}, got {words!r}")


def swap_words(caption: str, words: Collection[str]) -> str:
    """Exchange the first two words of ``caption`` that are in ``words``; keep every other character.

    Words are maximal runs of letters, digits and underscores, matched exactly (case-sensitive).
    Raises ``ValueError`` when the caption holds fewer than two such words.
    """
    _check_words(caption, words, "words")
    hits = [m for m in _WORD.finditer(caption) if m.group() in words]
    if len(hits) < 2:
        raise ValueError(f"need two words from {sorted(words)} to swap in {caption!r}, found {len(hits)}")
    a, b = hits[0], hits[1]
    return caption[: a.start()] + b.group() + caption[a.end() : b.start()] + a.group() + caption[b.end() :]


def swap_colours(caption: str, colours: Collection[str]) -> str:
    """"a red circle and a blue square" -> "a blue circle and a red square" (the graded contract).

    Exchanges the first two words of ``caption`` found in ``colours``; spacing,
    punctuation and every other word stay as they are. Fewer than two colour
    words raises ``ValueError``.
    """
    _check_words(caption, colours, "colours")
    return swap_words(caption, colours)


def replace_word(caption: str, words: Collection[str], rng: np.random.Generator | int | None = None) -> str:
    """Replace the first word of ``caption`` found in ``words`` by a different one of ``words`` (seeded).

    "a red circle" -> "a green circle": the single-object hard negative. Synonyms of the
    original count as different words here, so pass one word per meaning (e.g. the
    canonical colours) when that matters. Raises ``ValueError`` when no word is found.
    """
    _check_words(caption, words, "words")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    hit = next((m for m in _WORD.finditer(caption) if m.group() in words), None)
    if hit is None:
        raise ValueError(f"no word from {sorted(words)} in {caption!r}")
    choices = sorted(set(words) - {hit.group()})
    if not choices:
        raise ValueError(f"words must offer an alternative to {hit.group()!r}")
    return caption[: hit.start()] + choices[int(rng.integers(len(choices)))] + caption[hit.end() :]


def _meaning(word: str, attribute: str) -> str:
    return next(v for v, ws in SYNONYMS[attribute].items() if word in ws)


def hard_negative(caption: str, rng: np.random.Generator | int | None = None) -> str:
    """The hardest wrong caption we can write for a Shapes-world caption.

    Two colours that mean different things: swap them (attribute binding). Otherwise
    replace the first colour by another colour, else the first shape by another shape.
    A caption with neither comes back unchanged (its "negative" is then harmless: the
    same text as the positive).
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    colours = [m.group() for m in _WORD.finditer(caption) if m.group() in COLOUR_WORDS]
    if len(colours) >= 2 and _meaning(colours[0], "colour") != _meaning(colours[1], "colour"):
        return swap_colours(caption, COLOUR_WORDS)
    for attribute in ("colour", "shape"):
        # Longest phrases first, so "plus sign" is found as one shape.
        phrases = sorted((w for ws in SYNONYMS[attribute].values() for w in ws), key=len, reverse=True)
        hit = re.search(r"\b(" + "|".join(map(re.escape, phrases)) + r")\b", caption)
        if hit is not None:
            others = [v for v in SYNONYMS[attribute] if v != _meaning(hit.group(), attribute)]
            new = others[int(rng.integers(len(others)))]
            return caption[: hit.start()] + new + caption[hit.end() :]
    return caption


def hard_negative_tokens(
    texts: Sequence[Sequence[str]], tokenizer, context_length: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and masks ``[N, K, T]`` of :func:`hard_negative` of each of N images' K captions."""
    from clipcourse.text import tokenize

    if not texts or len({len(t) for t in texts}) != 1:
        raise ValueError("texts must be a non-empty list of N lists with the same number K of captions")
    rng = np.random.default_rng(seed)
    flat = [hard_negative(t, rng) for caps in texts for t in caps]
    enc = tokenize(flat, context_length=context_length, tokenizer=tokenizer)
    n, k = len(texts), len(texts[0])
    return enc["input_ids"].view(n, k, -1), enc["attention_mask"].view(n, k, -1)


def negclip_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    hard_negative_features: torch.Tensor,
    logit_scale: torch.Tensor | float,
) -> torch.Tensor:
    """NegCLIP's loss: CLIP's symmetric loss with hard negatives added as image→text candidates.

    All three inputs are ``[B, D]``; row i of ``hard_negative_features`` is a wrong caption
    written for image i. Image→text logits ``scale · images @ [texts; negatives]ᵀ`` are
    ``[B, 2B]`` (target i); text→image logits ``scale · texts @ imagesᵀ`` are ``[B, B]``
    (target i): a negative caption has no image, so it cannot be a row there.
    ``logit_scale`` is the log of the scale; the scale is capped at 100. Returns the mean
    of the two cross-entropies (a scalar).
    """
    shapes = [tuple(x.shape) for x in (image_features, text_features, hard_negative_features)]
    if any(len(s) != 2 for s in shapes) or len(set(shapes)) != 1:
        raise ValueError(f"image, text and hard negative features must all be [B, D], got {shapes}")
    images = F.normalize(image_features, dim=-1)
    texts = F.normalize(text_features, dim=-1)
    negatives = F.normalize(hard_negative_features, dim=-1)
    scale = torch.as_tensor(logit_scale, dtype=images.dtype, device=images.device).exp()
    scale = scale.clamp(max=MAX_LOGIT_SCALE)
    targets = torch.arange(images.shape[0], device=images.device)
    image_to_text = scale * images @ torch.cat([texts, negatives]).t()
    text_to_image = scale * texts @ images.t()
    return (F.cross_entropy(image_to_text, targets) + F.cross_entropy(text_to_image, targets)) / 2


def negclip_batch_loss(hard_negative_ids: torch.Tensor, hard_negative_mask: torch.Tensor):
    """A ``loss_fn`` for :func:`~clipcourse.train.train_clip`: :func:`negclip_loss` with precomputed negatives.

    ``hard_negative_ids``/``hard_negative_mask`` are ``[N, K, T]``, aligned with the training
    captions (from :func:`hard_negative_tokens`); the hook picks the batch's rows by the image
    and caption indices of the :class:`~clipcourse.train.Batch` the loop passes it.
    """
    if hard_negative_ids.dim() != 3 or hard_negative_mask.shape != hard_negative_ids.shape:
        raise ValueError(
            f"hard negative ids and mask must be [N, K, T], got {tuple(hard_negative_ids.shape)} "
            f"and {tuple(hard_negative_mask.shape)}"
        )

    def loss(model: nn.Module, batch: Batch) -> torch.Tensor:
        ids = hard_negative_ids[batch.index, batch.caption].to(batch.input_ids.device)
        mask = hard_negative_mask[batch.index, batch.caption].to(batch.input_ids.device)
        width = max(int(mask.sum(1).max()), 1)
        image_features = model.encode_image(batch.images).float()
        text_features = model.encode_text(batch.input_ids, batch.attention_mask).float()
        negative_features = model.encode_text(ids[:, :width], mask[:, :width]).float()
        return negclip_loss(image_features, text_features, negative_features, model.logit_scale.float())

    return loss
