"""Evaluation helpers: bootstrap intervals, relevance definitions, both directions, diversity, search closure."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from clipcourse import evaluation as E
from clipcourse.data import ShapesWorld, relevance
from clipcourse.retrieval import SplitEmbeddings


def test_bootstrap_interval_contains_mean_and_narrows_with_more_queries():
    g = torch.Generator().manual_seed(0)
    small = E.bootstrap_interval((torch.rand(50, generator=g) < 0.6).double(), seed=1)
    large = E.bootstrap_interval((torch.rand(5000, generator=g) < 0.6).double(), seed=1)
    for iv in (small, large):
        assert iv.low <= iv.mean <= iv.high
    assert large.high - large.low < (small.high - small.low) / 3
    assert abs((large.high - large.low) - 2 * 1.96 * (0.24 / 5000) ** 0.5) < 0.01  # normal approximation


def test_bootstrap_groups_widen_the_interval_for_correlated_queries():
    per_image = (torch.rand(200, generator=torch.Generator().manual_seed(2)) < 0.5).double()
    values = per_image.repeat_interleave(5)  # five identical captions per image
    groups = torch.arange(200).repeat_interleave(5)
    naive = E.bootstrap_interval(values, seed=0)
    grouped = E.bootstrap_interval(values, groups=groups, seed=0)
    assert grouped.high - grouped.low > 1.8 * (naive.high - naive.low)
    assert grouped.mean == pytest.approx(naive.mean)


@pytest.mark.parametrize("bad", [dict(values=torch.tensor([])), dict(values=torch.tensor([1.0, float("nan")])),
                                 dict(values=torch.ones(3), level=1.0), dict(values=torch.ones(3), groups=torch.ones(2))])
def test_bootstrap_bad_input(bad):
    with pytest.raises(ValueError):
        E.bootstrap_interval(**bad)


def test_graded_relevance_matches_the_world_function():
    split = ShapesWorld(seed=0).split("test", n=30)
    captions = [c for caps in split.captions for c in caps]
    graded = E.graded_relevance(captions, split.attributes)
    assert graded.shape == (150, 30)
    for q in range(0, 150, 7):
        for n in range(0, 30, 3):
            assert graded[q, n] == relevance(captions[q], split.attributes[n])


def _fake_embeddings(split, noise=0.0):
    n = len(split)
    g = torch.Generator().manual_seed(0)
    images = F.normalize(torch.randn(n, 16, generator=g), dim=-1)
    owner = torch.tensor([i for i, caps in enumerate(split.captions) for _ in caps])
    texts = F.normalize(images[owner] + noise * torch.randn(len(owner), 16, generator=g), dim=-1)
    return SplitEmbeddings(images, texts, owner, [c for caps in split.captions for c in caps])


def test_both_directions_perfect_model_and_recall_vs_hit_rate():
    split = ShapesWorld(seed=0).split("test", n=40)
    tasks = E.retrieval_tasks(_fake_embeddings(split), split)
    t2i, i2t = tasks["text→image"], tasks["image→text"]
    assert t2i.scores.shape == (200, 40) and i2t.scores.shape == (40, 200)
    assert i2t.pair.sum(dim=1).tolist() == [5] * 40
    card = {name: E.evaluate_task(task, ks=(1, 5), n_resamples=50) for name, task in tasks.items()}
    assert card["text→image"]["pair"]["HR@1"].mean == 1.0
    assert card["text→image"]["pair"]["R@1"].mean == 1.0  # one relevant item: recall = hit rate
    assert card["image→text"]["pair"]["HR@1"].mean == 1.0
    assert card["image→text"]["pair"]["R@1"].mean == pytest.approx(0.2)  # five relevant captions
    assert card["image→text"]["pair"]["R@5"].mean == 1.0
    assert set(card["text→image"]["graded"]) == {"nDCG@1", "nDCG@5"}


def test_diversity_measures():
    scores = torch.tensor([[3.0, 2.0, 1.0, 0.0], [0.0, 1.0, 2.0, 3.0]])
    feats = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]), dim=-1)
    assert E.intra_list_diversity(scores, feats, k=2).tolist() == pytest.approx([0.0, 0.0])
    assert E.intra_list_diversity(scores, feats, k=3).tolist() == pytest.approx([2 / 3, 2 / 3])
    labels = torch.tensor([7, 7, 8, 9])
    assert E.distinct_in_top_k(scores, labels, k=3).tolist() == [2, 3]
    with pytest.raises(ValueError, match="2 <= k"):
        E.intra_list_diversity(scores, feats, k=1)


def test_search_call_returns_top_k_for_a_batch():
    gallery = F.normalize(torch.randn(20, 8), dim=-1)
    call = E.search_call(lambda texts: gallery[: len(texts)], ["a", "b", "c"], gallery, batch_size=5, k=4)
    out = call()
    assert out.shape == (5, 4)
    assert out[:, 0].tolist() == [0, 1, 2, 3, 4]
