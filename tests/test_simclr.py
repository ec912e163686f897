"""The SimCLR training helper: it trains, is reproducible, honours its limits and rejects bad input."""

from __future__ import annotations

import pytest
import torch

from clipcourse.models import SmallCNN
from clipcourse.simclr import train_simclr


def tiny_images(n=24, size=16, seed=0):
    return torch.randint(
        0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
    )


def make_encoder(seed=0):
    torch.manual_seed(seed)
    return SmallCNN(out_dim=8, width=8)


def test_train_simclr_updates_the_encoder_and_returns_one_loss_per_step():
    encoder = make_encoder()
    before = [p.detach().clone() for p in encoder.parameters()]
    history = train_simclr(
        encoder, tiny_images(), steps=3, batch_size=8, temperature=0.5, progress=False
    )
    assert len(history) == 3 and all(isinstance(v, float) for v in history)
    assert all(0 < v < 100 for v in history)
    assert any(not torch.equal(a, b) for a, b in zip(before, encoder.parameters()))
    assert not encoder.training


def test_train_simclr_is_reproducible_for_a_seed():
    images = tiny_images()
    runs = [
        train_simclr(
            make_encoder(), images, steps=2, batch_size=6, temperature=0.2, seed=3, progress=False
        )
        for _ in range(2)
    ]
    assert runs[0] == pytest.approx(runs[1], rel=1e-5)


def test_train_simclr_loss_falls_with_identical_views():
    """With an identity augmentation the task is easy: the loss must go down."""
    history = train_simclr(
        make_encoder(),
        tiny_images(n=16),
        steps=12,
        batch_size=16,
        temperature=0.5,
        transform=lambda image: image,
        lr=1e-2,
        progress=False,
    )
    assert sum(history[-3:]) / 3 < history[0]


def test_train_simclr_stops_at_the_time_limit():
    history = train_simclr(
        make_encoder(),
        tiny_images(),
        steps=50,
        batch_size=4,
        temperature=0.5,
        max_seconds=0.0,
        progress=False,
    )
    assert len(history) == 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(images=torch.rand(3, 16, 16)), "N, 3, H, W"),
        (dict(images=torch.ones(4, 3, 8, 8, dtype=torch.long)), "uint8 or float"),
        (dict(steps=0), "steps"),
        (dict(batch_size=1), "batch_size"),
        (dict(batch_size=100), "batch_size"),
        (dict(temperature=0.0), "temperature"),
    ],
)
def test_train_simclr_rejects_bad_arguments(kwargs, match):
    args = dict(images=tiny_images(), steps=1, batch_size=4, temperature=0.5, progress=False)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        train_simclr(make_encoder(), **args)
