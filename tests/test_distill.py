"""Distillation losses (against independent formulations), the student, inheritance, the trainer."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from clipcourse.distill import (
    DistillConfig,
    clip_distillation_loss,
    feature_distillation_loss,
    inherit_weights,
    kd_loss,
    student_config,
    teacher_targets,
    train_distilled,
)
from clipcourse.models import MiniCLIP, MiniCLIPConfig
from clipcourse.train import TrainConfig


def _kl_by_hand(student, teacher, t):
    """KL(p ‖ q) row by row with explicit sums, p = softmax(teacher/t), q = softmax(student/t)."""
    p = torch.softmax(teacher / t, dim=1)
    q = torch.softmax(student / t, dim=1)
    return (p * (p.log() - q.log())).sum(1).mean()


@pytest.mark.parametrize("t", [1.0, 2.0, 4.5])
def test_kd_loss_matches_kl_div_and_hand_formula(t):
    g = torch.Generator().manual_seed(0)
    s, te = torch.randn(7, 5, generator=g), torch.randn(7, 5, generator=g)
    labels = torch.randint(0, 5, (7,), generator=g)
    kl = F.kl_div(F.log_softmax(s / t, 1), F.softmax(te / t, 1), reduction="batchmean")
    assert torch.allclose(kl, _kl_by_hand(s, te, t), atol=1e-6)
    assert torch.allclose(kd_loss(s, te, temperature=t), t * t * kl, atol=1e-6)
    want = 0.3 * t * t * kl + 0.7 * F.cross_entropy(s, labels)
    assert torch.allclose(kd_loss(s, te, labels, alpha=0.3, temperature=t), want, atol=1e-6)
    assert torch.allclose(kd_loss(s, te, labels, alpha=1.0, temperature=t), t * t * kl, atol=1e-6)


def test_kd_loss_zero_for_identical_logits_and_float64_gradients():
    x = torch.randn(4, 6, dtype=torch.float64)
    assert kd_loss(x, x.clone()).abs() < 1e-12
    s = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    te = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    out = kd_loss(s, te, torch.tensor([0, 1, 2, 3]))
    assert out.dtype == torch.float64 and out.dim() == 0
    out.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert torch.autograd.gradcheck(lambda a: kd_loss(a, te.detach(), temperature=3.0), (s.detach().requires_grad_(),))


def test_t_squared_keeps_gradient_scale():
    # For large T the soft-target gradient shrinks like 1/T²; multiplying by T² undoes it (Hinton 2015, §2.1).
    s = torch.randn(16, 10, requires_grad=True)
    te = torch.randn(16, 10)
    norms = []
    for t in (8.0, 32.0):
        s.grad = None
        kd_loss(s - s.mean(1, keepdim=True), te - te.mean(1, keepdim=True), temperature=t).backward()
        norms.append(s.grad.norm().item())
    assert norms[1] / norms[0] == pytest.approx(1.0, rel=0.05)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(student_logits=torch.zeros(3, 4), teacher_logits=torch.zeros(3, 5)), "different shapes"),
        (dict(student_logits=torch.zeros(3, 4), teacher_logits=torch.zeros(3, 4), temperature=0.0), "temperature"),
        (dict(student_logits=torch.zeros(3, 4), teacher_logits=torch.zeros(3, 4), temperature=-1.0), "temperature"),
        (dict(student_logits=torch.zeros(3, 4), teacher_logits=torch.zeros(3, 4), alpha=1.5), "alpha"),
        (dict(student_logits=torch.zeros(3, 4), teacher_logits=torch.zeros(3, 4), labels=torch.tensor([0, 1, 4])),
         "labels"),
        (dict(student_logits=torch.zeros(3, 4), teacher_logits=torch.zeros(3, 4), labels=torch.tensor([0, -1, 2])),
         "labels"),
    ],
)
def test_kd_loss_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kd_loss(**kwargs)


def test_clip_distillation_loss_is_mean_of_both_directions():
    g = torch.Generator().manual_seed(1)
    s, te = 3 * torch.randn(6, 6, generator=g), 3 * torch.randn(6, 6, generator=g)
    for t in (1.0, 2.0):
        want = t * t * (_kl_by_hand(s, te, t) + _kl_by_hand(s.T, te.T, t)) / 2
        assert torch.allclose(clip_distillation_loss(s, te, t), want, atol=1e-6)
    assert clip_distillation_loss(s, s.clone()).abs() < 1e-6
    with pytest.raises(ValueError, match="different shapes"):
        clip_distillation_loss(s, te[:5])
    with pytest.raises(ValueError, match="temperature"):
        clip_distillation_loss(s, te, 0.0)


def test_feature_distillation_loss():
    s = torch.tensor([[3.0, 4.0], [1.0, 0.0]], requires_grad=True)
    te = torch.tensor([[6.0, 8.0], [0.0, 2.0]])
    out = feature_distillation_loss(s, te)
    assert out.item() == pytest.approx((0.0 + 2.0) / 2)  # same direction: 0; orthogonal: |u - v|² = 2
    out.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    x = torch.randn(5, 8, dtype=torch.float64)
    assert feature_distillation_loss(x, 7 * x).abs() < 1e-12
    assert feature_distillation_loss(x, x).dtype == torch.float64
    with pytest.raises(ValueError, match="different shapes"):
        feature_distillation_loss(torch.zeros(2, 3), torch.zeros(2, 4))


def test_student_is_at_most_a_quarter_of_the_teacher():
    teacher = MiniCLIP(MiniCLIPConfig())
    student = MiniCLIP(student_config(teacher.config))
    assert student.num_parameters() * 4 <= teacher.num_parameters()
    assert student.config.embed_dim == teacher.config.embed_dim


def test_inherit_weights_copies_leading_slices():
    torch.manual_seed(0)
    teacher = MiniCLIP(MiniCLIPConfig())
    student = MiniCLIP(student_config(teacher.config))
    copied = inherit_weights(student, teacher)
    assert "logit_scale" in copied and "image_projection.weight" in copied
    assert not any(".layer.1." in name for name in copied)  # the student has one layer: the teacher's first
    proj = teacher.image_projection.weight
    assert torch.equal(student.image_projection.weight, proj[:, : student.image_projection.in_features])
    conv_t = teacher.image_encoder.features[0][0].weight
    conv_s = student.image_encoder.features[0][0].weight
    assert torch.equal(conv_s, conv_t[: conv_s.shape[0]])
    word_t = teacher.text_encoder.bert.embeddings.word_embeddings.weight
    assert torch.equal(student.text_encoder.bert.embeddings.word_embeddings.weight, word_t[:, :32])


def test_distillation_trainer_runs_and_uses_the_teacher():
    cfg = MiniCLIPConfig(vocab_size=32, context_length=8, embed_dim=8, image_width=8, text_width=16, text_layers=1)
    torch.manual_seed(0)
    teacher = MiniCLIP(cfg).eval()
    images = torch.rand(24, 3, 32, 32)
    ids = torch.randint(5, 32, (24, 2, 6))
    mask = torch.ones_like(ids)
    targets = teacher_targets(teacher, images, ids, mask)
    assert targets.text.shape == (24, 2, 8) and targets.image.shape == (24, 8)
    tc = TrainConfig(steps=3, batch_size=8, warmup_steps=1, n_train=24)
    student = MiniCLIP(student_config(cfg, image_width=4, text_width=8))
    before = [p.detach().clone() for p in teacher.parameters()]
    calls = []
    history = train_distilled(student, teacher, images, ids, mask, tc, DistillConfig(), progress=False,
                              evaluate=lambda m: calls.append(1) or {"x": 1.0}, eval_every=2)
    assert len(history) == 3 and all(math.isfinite(v) for v in history.loss)
    assert [e["step"] for e in history.evals] == [2, 3]
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))
    with pytest.raises(ValueError, match="teacher is None"):
        train_distilled(student, None, images, ids, mask, tc, DistillConfig(), progress=False)
    with pytest.raises(ValueError):
        DistillConfig(clip=0, affinity=0, feature=0)


def test_cached_model_trains_once_per_recipe(tmp_path):
    from clipcourse.course_model import cached_model
    from clipcourse.train import History

    cfg = MiniCLIPConfig(vocab_size=256, context_length=8, embed_dim=8, image_width=4, text_width=8, text_layers=1)
    tc = TrainConfig(steps=1, batch_size=2, n_train=4)
    calls = []

    def train(tokenizer):
        calls.append(1)
        torch.manual_seed(len(calls))
        return MiniCLIP(cfg).eval(), History(loss=[1.0], scale=[14.0], lr=[0.1], evals=[{"step": 1, "a": 0.5}])

    first = cached_model("toy", cfg, tc, train, extra={"recipe": 1}, cache_dir=tmp_path)
    again = cached_model("toy", cfg, tc, train, extra={"recipe": 1}, cache_dir=tmp_path)
    other = cached_model("toy", cfg, tc, train, extra={"recipe": 2}, cache_dir=tmp_path)
    assert len(calls) == 2 and not first.from_cache and again.from_cache and not other.from_cache
    assert again.history.evals == [{"step": 1, "a": 0.5}]
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), again.model.state_dict().values()))
    assert first.path != other.path and first.path.name.startswith("toy-")
