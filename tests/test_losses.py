"""The chapter 1 reference losses against independent formulas, properties and bad inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from clipcourse.losses import (
    alignment_uniformity,
    cosine_similarity_matrix,
    info_nce_loss,
    nt_xent_loss,
)


def randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# -- independent (loop) versions ----------------------------------------------------------


def loop_cosine(a, b):
    out = torch.empty(len(a), len(b), dtype=torch.float64)
    for i in range(len(a)):
        for j in range(len(b)):
            out[i, j] = F.cosine_similarity(a[i], b[j], dim=0)
    return out


def loop_info_nce(q, k, temperature):
    total = 0.0
    for i in range(len(q)):
        sims = [F.cosine_similarity(q[i], k[j], dim=0).item() / temperature for j in range(len(k))]
        total += -sims[i] + math.log(sum(math.exp(s) for s in sims))
    return total / len(q)


def loop_nt_xent(z1, z2, temperature):
    z = torch.cat([z1, z2])
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        positive = (i + n2 // 2) % n2
        sims = {
            j: F.cosine_similarity(z[i], z[j], dim=0).item() / temperature
            for j in range(n2)
            if j != i
        }
        total += -sims[positive] + math.log(sum(math.exp(s) for s in sims.values()))
    return total / n2


def loop_alignment_uniformity(z1, z2, t):
    u1 = [v / v.norm() for v in z1]
    u2 = [v / v.norm() for v in z2]
    n = len(u1)
    alignment = sum(((u1[i] - u2[i]) ** 2).sum().item() for i in range(n)) / n
    pairs = [
        math.exp(-t * ((u1[i] - u1[j]) ** 2).sum().item())
        for i in range(n)
        for j in range(n)
        if i != j
    ]
    return alignment, math.log(sum(pairs) / len(pairs))


# -- cosine_similarity_matrix --------------------------------------------------------------


def test_cosine_matches_pairwise_loop():
    a, b = randn(5, 7, seed=1), randn(3, 7, seed=2)
    out = cosine_similarity_matrix(a, b)
    assert out.shape == (5, 3)
    torch.testing.assert_close(out, loop_cosine(a, b))


def test_cosine_hand_computed_values():
    a = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, -1.0], [6.0, 8.0]])
    expected = torch.tensor([[0.6, -0.8, 1.0], [0.0, -1.0, 0.8]])
    torch.testing.assert_close(cosine_similarity_matrix(a, b), expected)


def test_cosine_properties():
    a, b = randn(6, 4, seed=3), randn(4, 4, seed=4)
    out = cosine_similarity_matrix(a, b)
    assert out.abs().max() <= 1 + 1e-12
    torch.testing.assert_close(cosine_similarity_matrix(b, a), out.T)  # swapping transposes
    torch.testing.assert_close(cosine_similarity_matrix(3.0 * a, 0.5 * b), out)  # scale-invariant
    torch.testing.assert_close(
        torch.diagonal(cosine_similarity_matrix(a, a)), torch.ones(6, dtype=a.dtype)
    )


def test_cosine_keeps_dtype_and_accepts_non_contiguous():
    a = randn(7, 5, seed=5).T  # [5, 7], not contiguous
    assert not a.is_contiguous()
    out = cosine_similarity_matrix(a, a.contiguous().float())
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, loop_cosine(a, a))


def test_cosine_zero_vector_has_zero_similarity():
    a = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    out = cosine_similarity_matrix(a, a)
    assert torch.isfinite(out).all()
    assert out[0].abs().sum() == 0


# -- info_nce_loss ---------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.05, 0.1, 1.0])
def test_info_nce_matches_loop(temperature):
    q, k = randn(6, 8, seed=6), randn(6, 8, seed=7)
    assert info_nce_loss(q, k, temperature).item() == pytest.approx(
        loop_info_nce(q, k, temperature), rel=1e-9
    )


def test_info_nce_matches_cross_entropy_formula():
    q, k = randn(9, 4, seed=8), randn(9, 4, seed=9)
    logits = F.cosine_similarity(q[:, None, :], k[None, :, :], dim=-1) / 0.2
    expected = F.cross_entropy(logits, torch.arange(9))
    out = info_nce_loss(q, k, 0.2)
    assert out.dim() == 0
    torch.testing.assert_close(out, expected)


def test_info_nce_is_one_directional_and_scale_invariant():
    q, k = randn(5, 3, seed=10), randn(5, 3, seed=11)
    out = info_nce_loss(q, k, 0.5)
    torch.testing.assert_close(info_nce_loss(4.0 * q, 0.1 * k, 0.5), out)
    assert not torch.isclose(info_nce_loss(k, q, 0.5), out)  # q->k differs from k->q
    # permuting the pairs together changes nothing
    perm = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(info_nce_loss(q[perm], k[perm], 0.5), out)


def test_info_nce_temperature_limits():
    n = 8
    q = randn(n, 16, seed=12)
    # perfect positives: the loss goes to 0 as the temperature falls
    assert info_nce_loss(q, q, 0.01).item() < 1e-6
    # a huge temperature flattens every softmax to uniform: log N
    assert info_nce_loss(q, randn(n, 16, seed=13), 1e6).item() == pytest.approx(
        math.log(n), rel=1e-5
    )


def test_info_nce_single_pair_is_zero():
    q, k = randn(1, 4, seed=14), randn(1, 4, seed=15)
    assert info_nce_loss(q, k, 0.1).item() == 0.0


def test_info_nce_gradient_reaches_a_learned_temperature():
    q, k = randn(4, 3, seed=16), randn(4, 3, seed=17)
    temperature = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    info_nce_loss(q, k, temperature).backward()
    assert temperature.grad is not None and torch.isfinite(temperature.grad)


# -- nt_xent_loss ------------------------------------------------------------------------------


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nt_xent_matches_loop(temperature):
    z1, z2 = randn(5, 6, seed=18), randn(5, 6, seed=19)
    assert nt_xent_loss(z1, z2, temperature).item() == pytest.approx(
        loop_nt_xent(z1, z2, temperature), rel=1e-9
    )


def test_nt_xent_symmetric_in_views_and_scale_invariant():
    z1, z2 = randn(4, 6, seed=20), randn(4, 6, seed=21)
    out = nt_xent_loss(z1, z2, 0.2)
    torch.testing.assert_close(nt_xent_loss(z2, z1, 0.2), out)
    torch.testing.assert_close(nt_xent_loss(7.0 * z1, 0.3 * z2, 0.2), out)


def test_nt_xent_masks_self_similarity_with_minus_infinity():
    """At a huge temperature every remaining candidate is equally likely: log(2N - 1) with the self
    removed (zeroing the self-similarity instead would leave 2N candidates: log 2N)."""
    n = 6
    z1 = randn(n, 8, seed=22)
    assert nt_xent_loss(z1, randn(n, 8, seed=23), 1e6).item() == pytest.approx(
        math.log(2 * n - 1), rel=1e-5
    )
    # identical views and a low temperature: each anchor is sure of its positive
    assert nt_xent_loss(z1, z1, 0.01).item() < 1e-6


def test_nt_xent_single_pair_is_zero():
    assert nt_xent_loss(randn(1, 3, seed=24), randn(1, 3, seed=25), 0.5).item() == 0.0


def test_nt_xent_float32_and_non_contiguous():
    z1 = randn(6, 4, seed=26, dtype=torch.float32).T  # [4, 6] non-contiguous
    z2 = randn(4, 6, seed=27, dtype=torch.float32)
    out = nt_xent_loss(z1, z2, 0.1)
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(loop_nt_xent(z1.double(), z2.double(), 0.1), rel=1e-5)


def test_nt_xent_gradients_are_finite():
    z1 = randn(4, 5, seed=28).requires_grad_()
    z2 = randn(4, 5, seed=29).requires_grad_()
    nt_xent_loss(z1, z2, 0.1).backward()
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()


# -- alignment_uniformity -------------------------------------------------------------------


@pytest.mark.parametrize("t", [0.5, 2.0, 10.0])
def test_alignment_uniformity_matches_loop(t):
    z1, z2 = randn(7, 5, seed=30), randn(7, 5, seed=31)
    alignment, uniformity = alignment_uniformity(z1, z2, t)
    want_a, want_u = loop_alignment_uniformity(z1, z2, t)
    assert alignment.dim() == 0 and uniformity.dim() == 0
    assert alignment.item() == pytest.approx(want_a, rel=1e-9)
    assert uniformity.item() == pytest.approx(want_u, rel=1e-9)


def test_alignment_uniformity_matches_paper_code():
    z1, z2 = randn(12, 4, seed=32), randn(12, 4, seed=33)
    x, y = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    alignment, uniformity = alignment_uniformity(z1, z2)
    torch.testing.assert_close(alignment, (x - y).norm(p=2, dim=1).pow(2).mean())
    torch.testing.assert_close(uniformity, torch.pdist(x, p=2).pow(2).mul(-2.0).exp().mean().log())


def test_alignment_uniformity_properties():
    z = randn(10, 3, seed=34)
    alignment, uniformity = alignment_uniformity(z, 5.0 * z)
    assert alignment.item() == pytest.approx(0.0, abs=1e-12)  # scale-invariant, perfect positives
    assert alignment_uniformity(z, -z)[0].item() == pytest.approx(4.0)  # antipodal positives
    # all embeddings identical: no spread at all, uniformity is log(1) = 0, its maximum
    same = torch.ones(5, 3, dtype=torch.float64)
    assert alignment_uniformity(same, same)[1].item() == pytest.approx(0.0, abs=1e-12)
    # spread-out points are more uniform (lower) than clustered ones
    spread = torch.eye(3, dtype=torch.float64)
    clustered = spread * 0.1 + 1.0
    assert alignment_uniformity(spread, spread)[1] < alignment_uniformity(clustered, clustered)[1]
    # uniformity ignores z2
    torch.testing.assert_close(alignment_uniformity(z, randn(10, 3, seed=35))[1], uniformity)


def test_uniformity_large_t_does_not_underflow():
    z = torch.eye(4, dtype=torch.float32)  # every pair at squared distance 2
    _, uniformity = alignment_uniformity(z, z, t=200.0)
    assert uniformity.item() == pytest.approx(-400.0, rel=1e-5)


def test_alignment_uniformity_single_pair():
    alignment, uniformity = alignment_uniformity(
        torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    )
    assert alignment.item() == pytest.approx(2.0)
    assert math.isnan(uniformity.item())


def test_alignment_uniformity_gradients_are_finite():
    z1 = randn(5, 3, seed=36).requires_grad_()
    z2 = randn(5, 3, seed=37).requires_grad_()
    alignment, uniformity = alignment_uniformity(z1, z2)
    (alignment + uniformity).backward()
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()


# -- errors -------------------------------------------------------------------------------------

GOOD = torch.ones(3, 4)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: cosine_similarity_matrix(torch.ones(4), GOOD), "a must be 2-D"),
        (lambda: cosine_similarity_matrix(GOOD, torch.ones(3, 5)), "same embedding width"),
        (lambda: cosine_similarity_matrix(torch.ones(0, 4), GOOD), "empty batch"),
        (
            lambda: cosine_similarity_matrix(GOOD, torch.ones(3, 4, dtype=torch.long)),
            "floating-point",
        ),
        (lambda: cosine_similarity_matrix([[1.0]], GOOD), "torch.Tensor"),
        (lambda: info_nce_loss(GOOD, torch.ones(2, 4), 0.1), "same number of rows"),
        (lambda: info_nce_loss(GOOD, GOOD, 0.0), "temperature must be a positive"),
        (lambda: info_nce_loss(GOOD, GOOD, -1.0), "temperature must be a positive"),
        (lambda: info_nce_loss(GOOD, GOOD, float("nan")), "temperature must be a positive"),
        (lambda: info_nce_loss(torch.ones(4), torch.ones(4), 0.1), "queries must be 2-D"),
        (lambda: nt_xent_loss(GOOD, torch.ones(4, 4), 0.1), "same number of rows"),
        (lambda: nt_xent_loss(GOOD, GOOD, 0), "temperature must be a positive"),
        (lambda: nt_xent_loss(torch.ones(0, 4), torch.ones(0, 4), 0.1), "empty batch"),
        (lambda: alignment_uniformity(GOOD, torch.ones(3, 2)), "same embedding width"),
        (lambda: alignment_uniformity(GOOD, GOOD, t=0.0), "t must be a positive"),
        (lambda: alignment_uniformity(torch.ones(3), torch.ones(3)), "z1 must be 2-D"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
