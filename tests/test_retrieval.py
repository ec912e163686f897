"""Retrieval helpers: ranking, hit@K/P@K, pair and attribute relevance (checked against matches_all)."""

from __future__ import annotations

import pytest
import torch

from clipcourse.data import ShapesWorld, matches_all
from clipcourse.retrieval import (
    SplitEmbeddings,
    attribute_relevance,
    encode_split,
    hit_rate_and_precision,
    pair_relevance,
    rank,
    text_to_image_metrics,
)


def test_rank_orders_by_similarity_and_caps_k():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    items = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.7, 0.7]])
    assert rank(q, items, 2).tolist() == [[1, 2], [0, 2]]
    assert rank(q, items, 10).shape == (2, 3)
    with pytest.raises(ValueError):
        rank(q, items, 0)


def test_metrics_by_hand():
    ranking = torch.tensor([[2, 0, 1], [0, 1, 2]])
    relevant = torch.tensor([[True, False, False], [False, True, True]])
    m = hit_rate_and_precision(ranking, relevant, ks=(1, 2, 3))
    assert m["hit@1"] == 0.0 and m["hit@2"] == 1.0  # both queries have a hit within 2
    assert m["P@1"] == 0.0 and m["P@2"] == pytest.approx((0.5 + 0.5) / 2)
    assert m["P@3"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="exceeds"):
        hit_rate_and_precision(ranking, relevant, ks=(4,))


def test_attribute_relevance_matches_matches_all():
    split = ShapesWorld(seed=0).split("test", n=30)
    captions = [c for caps in split.captions for c in caps]
    fast = attribute_relevance(captions, split.attributes)
    slow = torch.tensor([[matches_all(c, objs) for objs in split.attributes] for c in captions])
    assert torch.equal(fast, slow)
    # Every caption is relevant to its own image.
    owner = torch.arange(30).repeat_interleave(5)
    assert fast[torch.arange(len(captions)), owner].all()
    assert torch.equal(pair_relevance(owner, 30), torch.nn.functional.one_hot(owner, 30).bool())


def test_scene_captions_fall_back_to_matches_all():
    split = ShapesWorld(seed=0).scene_split(4)
    captions = [c for caps in split.captions for c in caps]
    rel = attribute_relevance(captions, split.attributes)
    assert rel.shape == (20, 4) and rel[torch.arange(20), torch.arange(4).repeat_interleave(5)].all()


def test_encode_split_shapes_and_normalisation():
    from clipcourse.models import MiniCLIP, MiniCLIPConfig
    from clipcourse.text import shapes_tokenizer

    split = ShapesWorld(seed=0).split("test", n=6)
    torch.manual_seed(0)
    model = MiniCLIP(MiniCLIPConfig.tiny()).train()
    emb = encode_split(model, shapes_tokenizer(), split)
    assert emb.image_features.shape == (6, 8) and emb.text_features.shape == (30, 8)
    torch.testing.assert_close(emb.text_features.norm(dim=-1), torch.ones(30))
    assert emb.caption_image.tolist() == [i for i in range(6) for _ in range(5)]
    assert model.training  # the mode is restored


def test_metrics_of_a_perfect_embedding():
    split = ShapesWorld(seed=0).split("test", n=8)
    images = torch.nn.functional.one_hot(torch.arange(8), 8).float()
    owner = torch.arange(8).repeat_interleave(5)
    captions = [c for caps in split.captions for c in caps]
    emb = SplitEmbeddings(images, images[owner], owner, captions)
    m = text_to_image_metrics(emb, split, ks=(1, 5))
    assert m["pair"]["hit@1"] == 1.0 and m["pair"]["P@1"] == 1.0 and m["attribute"]["P@1"] == 1.0
    assert m["pair"]["P@5"] == pytest.approx(0.2) and m["pair"]["hit@5"] == 1.0
