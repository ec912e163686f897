"""The reference train_step, the schedule, the training loop (determinism, clamp) and checkpoints."""

from __future__ import annotations

import math

import pytest
import torch

from clipcourse.clip import clip_loss
from clipcourse.models import MiniCLIP, MiniCLIPConfig
from clipcourse.train import (
    History,
    TrainConfig,
    cosine_schedule,
    load_checkpoint,
    make_optimizer,
    save_checkpoint,
    train_clip,
    train_step,
)

TINY = MiniCLIPConfig.tiny(vocab_size=40, context_length=6)


def _data(n=24, k=2, t=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 32, 32, generator=g)
    ids = torch.randint(5, 40, (n, k, t), generator=g)
    mask = torch.ones(n, k, t, dtype=torch.long)
    mask[:, :, 4:] = 0
    return images, ids * mask, mask


def test_cosine_schedule_warms_up_then_decays_to_zero():
    lrs = [cosine_schedule(s, 100, 10) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in zip(lrs[:10], lrs[1:10]))
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert cosine_schedule(100, 100, 10) == pytest.approx(0.0)
    assert cosine_schedule(0, 10, 0) == pytest.approx(1.0)


def test_train_step_zeroes_steps_and_clamps():
    torch.manual_seed(0)
    model = MiniCLIP(TINY)
    images, ids, mask = _data(4, 1)
    ids, mask = ids[:, 0], mask[:, 0]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for p in model.parameters():  # stale gradients that a correct step must discard
        p.grad = torch.full_like(p, 1e3)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(100) + 0.5)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        expected = clip_loss(model(images, ids, mask)[0]).item()
    loss = train_step(model, images, ids, mask, opt)
    assert isinstance(loss, float) and loss == pytest.approx(expected, rel=1e-5)
    # Stale gradients of 1e3 with lr 0.1 would move weights by 100: a zeroed step moves them far less.
    moved = (model.image_projection.weight - before["image_projection.weight"]).abs().max().item()
    assert 0 < moved < 10
    assert model.logit_scale.item() <= math.log(100) + 1e-6


def test_optimizer_skips_decay_on_temperature_and_gains():
    model = MiniCLIP(TINY)
    opt = make_optimizer(model, 1e-3, 0.1)
    no_decay = {id(p) for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    assert id(model.logit_scale) in no_decay
    assert id(model.image_projection.weight) not in no_decay


def test_train_clip_records_history_and_is_deterministic():
    images, ids, mask = _data()
    cfg = TrainConfig(steps=6, batch_size=8, n_train=24, warmup_steps=2, lr=1e-2, num_threads=1)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = MiniCLIP(TINY)
        history = train_clip(model, images, ids, mask, cfg, device="cpu", progress=False)
        runs.append((history, model))
    h = runs[0][0]
    assert len(h) == len(h.lr) == len(h.scale) == 6
    assert h.lr[0] == pytest.approx(cfg.lr / 2) and h.lr[1] == pytest.approx(cfg.lr)
    assert h.scale[0] != pytest.approx(1 / 0.07)  # the temperature is learned
    assert all(1.0 <= s <= 100.0 for s in h.scale)
    assert h.loss == runs[1][0].loss
    for a, b in zip(runs[0][1].parameters(), runs[1][1].parameters()):
        assert torch.equal(a, b)
    assert not runs[0][1].training  # returned in eval mode


def test_train_clip_learns_a_tiny_task():
    """Loss on a fixed set of 8 pairs falls clearly below chance (log 8) in 40 steps."""
    images, ids, mask = _data(8, 1)
    torch.manual_seed(0)
    model = MiniCLIP(TINY)
    cfg = TrainConfig(steps=40, batch_size=8, n_train=8, warmup_steps=2, lr=1e-2, num_threads=1)
    h = train_clip(model, images, ids, mask, cfg, device="cpu", progress=False)
    assert sum(h.loss[-5:]) / 5 < 0.8 * math.log(8)


def test_grayscale_uses_colour_free_captions():
    images, ids, mask = _data()
    cfg = TrainConfig(steps=2, batch_size=8, n_train=24, grayscale_p=1.0, num_threads=1)
    free = torch.zeros(24, 2, dtype=torch.bool)
    free[:, 1] = True
    train_clip(MiniCLIP(TINY), images, ids, mask, cfg, colour_free=free, device="cpu", progress=False)
    with pytest.raises(ValueError, match="colour_free"):
        train_clip(MiniCLIP(TINY), images, ids, mask, cfg, colour_free=free[:, :1], device="cpu", progress=False)


def test_bad_inputs():
    images, ids, mask = _data()
    with pytest.raises(ValueError, match="batch_size"):
        train_clip(MiniCLIP(TINY), images, ids, mask, TrainConfig(batch_size=64), device="cpu", progress=False)
    with pytest.raises(ValueError, match="float"):
        train_clip(MiniCLIP(TINY), (images * 255).byte(), ids, mask, device="cpu", progress=False)
    with pytest.raises(ValueError, match="input_ids"):
        train_clip(MiniCLIP(TINY), images, ids[:3], mask[:3], device="cpu", progress=False)
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = MiniCLIP(TINY)
    history = History(loss=[1.0, 0.5], scale=[14.0, 15.0], lr=[1e-3, 2e-3], train_s=1.5)
    save_checkpoint(tmp_path / "ck.pt", model, history, note="x")
    again, h2, extra = load_checkpoint(tmp_path / "ck.pt")
    assert again.config == TINY and h2 == history and extra == {"note": "x"}
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a MiniCLIP checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_cpu_threads_back_off_on_a_busy_machine(monkeypatch):
    from clipcourse import device

    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    for idle, want in [(1.95, 2), (1.6, 2), (1.1, 1), (0.2, 1)]:
        monkeypatch.setattr(device, "idle_cores", lambda idle=idle: idle)
        assert device.cpu_threads(2) == want, idle
    assert device.cpu_threads(1) == 1
    with pytest.raises(ValueError, match="limit"):
        device.cpu_threads(0)


def test_idle_cores_and_torch_threads():
    import psutil

    from clipcourse import device

    assert 0.0 <= device.idle_cores(0.05) <= psutil.cpu_count() + 1e-6
    before = torch.get_num_threads()
    with device.torch_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_train_clip_calls_the_graded_train_step(monkeypatch):
    """The loop and chapter 2's exercise share one step: train_clip goes through train_step."""
    import clipcourse.train as train_module

    calls = []
    real = train_module.train_step

    def spy(*args, **kwargs):
        calls.append(len(args))
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_step", spy)
    images, ids, mask = _data()
    cfg = TrainConfig(steps=3, batch_size=8, n_train=24, warmup_steps=1, num_threads=1)
    train_clip(MiniCLIP(TINY), images, ids, mask, cfg, device="cpu", progress=False)
    assert calls == [5, 5, 5]


def test_history_reads_checkpoints_written_with_the_old_field_name():
    old = {"loss": [1.0], "logit_scale": [14.0], "lr": [1e-3], "train_s": 1.0}
    assert History.from_dict(old).scale == [14.0]
