"""Text→image retrieval on a Shapes-world split: embeddings, rankings, hit@K and P@K.

Two notions of "the right image" for a caption:

* **exact pair**: only the image the caption was written for (the usual
  benchmark convention, as in CLIP's Flickr/COCO numbers);
* **attribute**: any image that has every attribute the caption mentions
  (:func:`clipcourse.data.matches_all`). "a red circle" is a correct answer
  for every red circle, whatever its size or position.

``hit@K`` is the hit rate: a query counts when *any* relevant image is in its
top K (what the CLIP papers call R@K; it is not recall, which counts the share
of *all* relevant images found). P@K is the fraction of the top K that is
relevant. The metrics chapter builds the full set (true recall, MRR, mAP, NDCG)
on top.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from clipcourse.encoding import as_float_images, encode_normalized

__all__ = [
    "SplitEmbeddings",
    "attribute_relevance",
    "encode_images",
    "encode_split",
    "encode_texts",
    "pair_relevance",
    "rank",
    "hit_rate_and_precision",
    "text_to_image_metrics",
]


@dataclass
class SplitEmbeddings:
    """L2-normalised embeddings of a split: every image, and every caption of every image."""

    image_features: torch.Tensor  #: [N, D]
    text_features: torch.Tensor  #: [N * K, D], captions of image 0 first
    caption_image: torch.Tensor  #: [N * K] index of each caption's own image
    captions: list  #: the Caption objects, in the same order as text_features


@torch.no_grad()
def encode_images(model, images: torch.Tensor, batch_size: int = 500, device=None) -> torch.Tensor:
    """Normalised image embeddings ``[N, D]``; uint8 images are scaled to [0, 1] first."""
    device = device or next(model.parameters()).device
    return encode_normalized(lambda batch: model.encode_image(as_float_images(batch).to(device)), images, batch_size)


@torch.no_grad()
def encode_texts(model, tokenizer, texts: Sequence[str], batch_size: int = 1000, device=None) -> torch.Tensor:
    """Normalised text embeddings ``[M, D]`` of ``texts`` (tokenized to the model's context length)."""
    from clipcourse.text import tokenize

    device = device or next(model.parameters()).device
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: nothing to encode")

    def encode(batch: list[str]) -> torch.Tensor:
        enc = tokenize(batch, context_length=model.config.context_length, tokenizer=tokenizer)
        return model.encode_text(enc["input_ids"].to(device), enc["attention_mask"].to(device))

    return encode_normalized(encode, texts, batch_size)


def encode_split(model, tokenizer, split, *, batch_size: int = 500, device=None) -> SplitEmbeddings:
    """Embed every image and every caption of a :class:`~clipcourse.data.ShapesSplit`."""
    was_training = model.training
    model.eval()
    try:
        images = encode_images(model, split.images, batch_size, device)
        captions = [c for caps in split.captions for c in caps]
        texts = encode_texts(model, tokenizer, [c.text for c in captions], 2 * batch_size, device)
    finally:
        model.train(was_training)
    owner = torch.tensor([i for i, caps in enumerate(split.captions) for _ in caps], dtype=torch.long)
    return SplitEmbeddings(images, texts, owner, captions)


def rank(query_features: torch.Tensor, item_features: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """Indices of the ``k`` most similar items for every query, best first: ``[Q, k]``.

    ``k`` larger than the number of items is capped (``torch.topk`` would raise).
    """
    k = item_features.shape[0] if k is None else min(int(k), item_features.shape[0])
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return (query_features @ item_features.t()).topk(k, dim=1).indices


def pair_relevance(caption_image: torch.Tensor, n_images: int) -> torch.Tensor:
    """Boolean ``[Q, N]``: True only at each caption's own image."""
    return F.one_hot(caption_image, n_images).bool()


def attribute_relevance(captions: Sequence, attributes: Sequence) -> torch.Tensor:
    """Boolean ``[Q, N]``: image n has every attribute caption q mentions (``matches_all``).

    Vectorised for one-object images; multi-object scenes fall back to calling
    :func:`clipcourse.data.matches_all` on every pair.
    """
    from clipcourse.data import ATTRIBUTE_VALUES, ATTRIBUTES, matches_all

    if all(len(objs) == 1 for objs in attributes) and all(len(c.mentions) == 1 for c in captions):
        def code(values: dict) -> list[int]:
            return [ATTRIBUTE_VALUES[a].index(values[a]) if a in values else -1 for a in ATTRIBUTES]

        image_codes = torch.tensor([code(objs[0].as_dict()) for objs in attributes])  # [N, 4]
        caption_codes = torch.tensor([code(c.mentioned) for c in captions])  # [Q, 4]
        same = caption_codes[:, None, :] == image_codes[None, :, :]
        return (same | (caption_codes[:, None, :] < 0)).all(dim=-1)
    return torch.tensor([[matches_all(c, objs) for objs in attributes] for c in captions])


def hit_rate_and_precision(
    ranking: torch.Tensor, relevant: torch.Tensor, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, float]:
    """``hit@K`` (share of queries with any relevant item in the top K) and ``P@K`` (relevant share of the top K).

    ``ranking``: ``[Q, >= max(ks)]`` item indices, best first; ``relevant``: boolean ``[Q, N]``.
    """
    hits = relevant.gather(1, ranking)  # [Q, k] relevance of each ranked item
    out = {}
    for k in ks:
        if k > hits.shape[1]:
            raise ValueError(f"k={k} exceeds the {hits.shape[1]} ranked items")
        out[f"hit@{k}"] = hits[:, :k].any(dim=1).float().mean().item()
        out[f"P@{k}"] = hits[:, :k].float().mean(dim=1).mean().item()
    return out


def text_to_image_metrics(
    embeddings: SplitEmbeddings, split, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, dict[str, float]]:
    """Text→image hit@K and P@K under both relevance definitions: ``{"pair": {...}, "attribute": {...}}``."""
    ranking = rank(embeddings.text_features, embeddings.image_features, max(ks))
    n = embeddings.image_features.shape[0]
    return {
        "pair": hit_rate_and_precision(ranking, pair_relevance(embeddings.caption_image, n), ks),
        "attribute": hit_rate_and_precision(ranking, attribute_relevance(embeddings.captions, split.attributes), ks),
    }
