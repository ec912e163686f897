"""The functional pieces of CLIP: masked mean pooling, scaled cosine logits, the symmetric loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from clipcourse.clip import (
    INIT_LOGIT_SCALE,
    MAX_LOGIT_SCALE,
    clip_logits,
    clip_loss,
    masked_mean_pool,
)


def test_masked_mean_pool_ignores_padding():
    torch.manual_seed(0)
    h = torch.randn(3, 5, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    out = masked_mean_pool(h, mask)
    assert out.shape == (3, 4)
    torch.testing.assert_close(out[0], h[0, :3].mean(0))
    torch.testing.assert_close(out[1], h[1, 0])  # a single real token
    torch.testing.assert_close(out[2], h[2].mean(0))
    # Changing what sits under the padding changes nothing.
    h2 = h.clone()
    h2[0, 3:] = 1e3
    torch.testing.assert_close(masked_mean_pool(h2, mask), out)


def test_masked_mean_pool_empty_row_is_zero_not_nan():
    out = masked_mean_pool(torch.randn(2, 3, 4), torch.tensor([[0, 0, 0], [1, 1, 0]]))
    assert torch.isfinite(out).all() and (out[0] == 0).all()


def test_masked_mean_pool_rejects_bad_shapes():
    with pytest.raises(ValueError, match="attention_mask"):
        masked_mean_pool(torch.randn(2, 3, 4), torch.ones(2, 4))
    with pytest.raises(ValueError, match="hidden_states"):
        masked_mean_pool(torch.randn(2, 3), torch.ones(2, 3))


def test_clip_logits_are_scaled_cosines_and_transposed():
    torch.manual_seed(0)
    img, txt = torch.randn(4, 8), torch.randn(6, 8)
    lpi, lpt = clip_logits(img, txt, torch.tensor(math.log(10.0)))
    expected = 10.0 * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    torch.testing.assert_close(lpi, expected)
    torch.testing.assert_close(lpt, expected.T)
    # Scaling the raw features changes nothing: both sides are normalised.
    torch.testing.assert_close(clip_logits(3 * img, 0.1 * txt, torch.tensor(math.log(10.0)))[0], expected)


def test_clip_logits_scale_is_clamped_at_100_and_keeps_gradient():
    img, txt = torch.eye(3), torch.eye(3)
    scale = torch.tensor(math.log(1000.0), requires_grad=True)
    lpi, _ = clip_logits(img, txt, scale)
    assert lpi.max().item() == pytest.approx(MAX_LOGIT_SCALE)
    s = torch.tensor(INIT_LOGIT_SCALE, requires_grad=True)
    clip_loss(clip_logits(torch.randn(4, 3), torch.randn(4, 3), s)[0]).backward()
    assert s.grad is not None and s.grad.abs() > 0
    assert math.exp(INIT_LOGIT_SCALE) == pytest.approx(1 / 0.07)


def test_clip_loss_is_symmetric_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(5, 5)
    labels = torch.arange(5)
    expected = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    torch.testing.assert_close(clip_loss(logits), expected)
    # Not the same as one direction when the matrix is not symmetric.
    assert abs(clip_loss(logits) - F.cross_entropy(logits, labels)) > 1e-3


def test_clip_loss_perfect_and_chance():
    assert clip_loss(100 * torch.eye(4)).item() < 1e-6
    assert clip_loss(torch.zeros(8, 8)).item() == pytest.approx(math.log(8))


def test_clip_loss_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        clip_loss(torch.randn(3, 4))
