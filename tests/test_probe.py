"""Linear probes and k-shot sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from clipcourse.probe import extract_features, k_shot_indices, linear_probe


def blobs(n_per_class=30, classes=3, dim=5, spread=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(classes, dim, generator=g)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    return centres[labels] + spread * torch.randn(len(labels), dim, generator=g), labels


def test_linear_probe_separable_blobs_is_perfect():
    x, y = blobs(seed=1)
    x_test, y_test = blobs(seed=1, n_per_class=10)
    assert linear_probe(x, y, x_test, y_test) == 1.0


def test_linear_probe_on_noise_is_near_chance():
    g = torch.Generator().manual_seed(2)
    x, x_test = torch.randn(300, 8, generator=g), torch.randn(600, 8, generator=g)
    y, y_test = torch.randint(0, 4, (300,), generator=g), torch.randint(0, 4, (600,), generator=g)
    assert 0.15 < linear_probe(x, y, x_test, y_test) < 0.35


def test_linear_probe_accepts_numpy_and_lists():
    x, y = blobs(seed=3)
    assert linear_probe(x.numpy(), y.tolist(), x.numpy(), y.numpy()) == 1.0


def test_one_shot_probe_works():
    x, y = blobs(seed=4, spread=0.1)
    idx = k_shot_indices(y, 1, seed=0)
    assert linear_probe(x[idx], y[idx], x, y) > 0.9


@pytest.mark.parametrize(
    "args, match",
    [
        (
            (torch.ones(4, 2), torch.tensor([0, 1, 0]), torch.ones(2, 2), torch.tensor([0, 1])),
            "4 rows",
        ),
        (
            (torch.ones(4, 2), torch.tensor([0, 1, 0, 1]), torch.ones(2, 3), torch.tensor([0, 1])),
            "width",
        ),
        ((torch.ones(4, 2), torch.zeros(4), torch.ones(2, 2), torch.tensor([0, 1])), "two classes"),
        (
            (torch.ones(4), torch.tensor([0, 1, 0, 1]), torch.ones(2, 2), torch.tensor([0, 1])),
            "2-D",
        ),
        ((torch.ones(4, 2), torch.ones(4, 1), torch.ones(2, 2), torch.tensor([0, 1])), "1-D"),
    ],
)
def test_linear_probe_errors(args, match):
    with pytest.raises(ValueError, match=match):
        linear_probe(*args)


def test_k_shot_indices():
    labels = torch.tensor([0, 1, 2] * 10 + [3] * 4)
    idx = k_shot_indices(labels, 3, seed=5)
    assert idx.dtype == torch.long and len(idx) == 12
    assert torch.equal(idx, idx.sort().values) and len(set(idx.tolist())) == 12
    assert np.bincount(labels[idx].numpy()).tolist() == [3, 3, 3, 3]
    assert torch.equal(idx, k_shot_indices(labels, 3, seed=5))  # deterministic
    assert not torch.equal(idx, k_shot_indices(labels, 3, seed=6))
    with pytest.raises(ValueError, match="class 3 has only 4"):
        k_shot_indices(labels, 5)
    with pytest.raises(ValueError, match="positive integer"):
        k_shot_indices(labels, 0)


class Counter(nn.Module):
    """Records the mode and batch sizes it was called with."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.calls = []

    def forward(self, x):
        self.calls.append((self.training, len(x), x.dtype))
        return self.linear(x.mean(dim=(2, 3)))


def test_extract_features_batches_evaluates_and_restores_mode():
    encoder = Counter().train()
    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    feats = extract_features(encoder, images, batch_size=4)
    assert feats.shape == (10, 2) and not feats.requires_grad and feats.dtype == torch.float32
    assert [c[1] for c in encoder.calls] == [4, 4, 2]
    assert all(not c[0] and c[2] == torch.float32 for c in encoder.calls)  # eval mode, float input
    assert encoder.training  # restored
    expected = encoder.linear(images.float().div(255).mean(dim=(2, 3)))
    torch.testing.assert_close(feats, expected.detach())


def test_extract_features_accepts_a_plain_function_and_rejects_bad_images():
    feats = extract_features(lambda x: x.flatten(1), torch.rand(3, 3, 2, 2))
    assert feats.shape == (3, 12)
    with pytest.raises(ValueError, match="N, 3, H, W"):
        extract_features(lambda x: x, torch.rand(3, 4))
    with pytest.raises(ValueError, match="uint8 or float"):
        extract_features(lambda x: x, torch.ones(2, 3, 2, 2, dtype=torch.long))
