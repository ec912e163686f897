"""Training a MiniCLIP: the reference step, the loop, the schedule, checkpoints.

The loop is deliberately plain (nanoGPT style): sample a batch of images, one
random caption for each, compute the symmetric CLIP loss, step AdamW, then
clamp the log temperature to [0, log 100] as open_clip does. On a GPU it uses
automatic mixed precision; on a CPU it is deterministic for a given seed.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from clipcourse.clip import clamp_logit_scale_, clip_loss
from clipcourse.device import cpu_threads, get_device, synchronize, torch_threads

__all__ = [
    "Batch",
    "History",
    "TrainConfig",
    "cosine_schedule",
    "load_checkpoint",
    "make_optimizer",
    "save_checkpoint",
    "shuffled_batches",
    "train_clip",
    "train_step",
]


@dataclass
class Batch:
    """One training batch as :func:`train_clip` draws it (what a custom ``loss_fn`` receives).

    ``index`` and ``caption`` say which training images and which of their captions the
    batch holds, so a loss can look up data per pair: chapter 4's cached teacher
    embeddings, chapter 7's hard-negative captions.
    """

    images: torch.Tensor  #: float ``[B, 3, H, W]`` (some possibly turned grey)
    input_ids: torch.Tensor  #: ``[B, T]``, all-padding columns dropped
    attention_mask: torch.Tensor  #: ``[B, T]``
    index: torch.Tensor  #: ``[B]`` rows of the training images (CPU)
    caption: torch.Tensor  #: ``[B]`` which of the K captions each image got (CPU)
    grey: torch.Tensor | None  #: ``[B]`` bool, which images were turned grey (None: none were)


#: A loss for :func:`train_clip` to use instead of CLIP's: ``(model, batch) -> scalar``.
BatchLoss = Callable[[nn.Module, Batch], torch.Tensor]


def train_step(
    model: nn.Module,
    images: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    *,
    scaler: torch.amp.GradScaler | None = None,
    loss_fn: Callable[[nn.Module], torch.Tensor] | None = None,
) -> float:
    """One optimisation step of CLIP on a batch of pairs; returns the loss as a float.

    The order matters: zero the old gradients, forward, loss, backward, step,
    and only then clamp the log scale (clamping before the step would let the
    step push it past the bound). This is the step chapter 2's exercise grades,
    and :func:`train_clip` calls it for every batch.

    ``scaler`` (an enabled ``GradScaler``, on CUDA) runs the forward pass in float16
    autocast and scales the loss so small gradients do not underflow; without it
    (the default, and always on a CPU) the step is plain float32.

    ``loss_fn(model)`` replaces CLIP's loss on the batch (chapter 4's distillation,
    chapter 7's hard negatives); the order of the step stays the same.
    """
    amp = scaler is not None and scaler.is_enabled()
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=images.device.type, dtype=torch.float16, enabled=amp):
        if loss_fn is None:
            logits_per_image, _ = model(images, input_ids, attention_mask)
            loss = clip_loss(logits_per_image.float() if amp else logits_per_image)
        else:
            loss = loss_fn(model).float()
    if amp:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    clamp_logit_scale_(model.logit_scale)
    return float(loss.detach())


@dataclass(frozen=True)
class TrainConfig:
    """How a MiniCLIP is trained on Shapes world; part of the cache key of trained weights."""

    steps: int = 400
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup_steps: int = 50
    seed: int = 0
    world_seed: int = 0  #: ShapesWorld(seed=...) the training images come from
    n_train: int = 5000  #: training images (each has 5 captions)
    num_threads: int = 2  #: at most this many CPU threads (the course assumes a 2-core laptop)
    #: Chance that an image is shown in grey with a caption that names no colour. It makes shape
    #: features colour-blind, which is what lets the model recognise unseen colour×shape pairs.
    grayscale_p: float = 1.0
    #: Share of training captions that end with a full stop. Shapes-world captions have none, so
    #: without this the "." token would stay untrained and prompts like "a photo of a {}." drift.
    full_stop_p: float = 0.5

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "n_train", "num_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        for name in ("grayscale_p", "full_stop_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class History:
    """Per-step records: loss, ``scale`` (the multiplier, ``exp`` of the ``logit_scale`` parameter), learning rate."""

    loss: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    train_s: float = 0.0  #: wall-clock seconds of the loop
    device: str = "cpu"
    threads: int = 0  #: CPU threads used (0: not recorded)
    #: What ``train_clip``'s ``evaluate`` returned during training: ``{"step": s, **results}`` rows.
    evals: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(values: dict) -> History:
        # A staticmethod, not a classmethod: clipcourse.grading.protect snapshots class members by
        # identity, and a classmethod gives a new bound object on every attribute access.
        values = dict(values)
        if "logit_scale" in values:  # checkpoints written before the field was renamed
            values["scale"] = values.pop("logit_scale")
        return History(**values)

    def __len__(self) -> int:
        return len(self.loss)


def cosine_schedule(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate multiplier: linear warm-up from 0, then cosine decay to 0."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with no weight decay on gains, biases and the temperature (as open_clip)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim < 2 or "logit_scale" in name or "norm" in name.lower() or "embeddings" in name:
            no_decay.append(p)
        else:
            decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)


def shuffled_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Index batches ``[batch_size]`` drawn without replacement, a fresh permutation each epoch.

    An epoch's last, incomplete batch is skipped, so every batch has the same size.
    Shared by :func:`train_clip` and :func:`clipcourse.simclr.train_simclr`.
    """
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be between 1 and the {n} items, got {batch_size}")
    order, cursor = torch.randperm(n, generator=generator), 0
    while True:
        if cursor + batch_size > n:
            order, cursor = torch.randperm(n, generator=generator), 0
        yield order[cursor : cursor + batch_size]
        cursor += batch_size


def _check_training_data(
    images: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    colour_free: torch.Tensor | None,
    batch_size: int,
) -> None:
    if images.dim() != 4 or not images.is_floating_point():
        raise ValueError(f"images must be float [N, 3, H, W], got {images.dtype} {tuple(images.shape)}")
    if input_ids.dim() != 3 or input_ids.shape[0] != images.shape[0] or attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"input_ids and attention_mask must be [N, K, T] with N={images.shape[0]} images, got "
            f"{tuple(input_ids.shape)} and {tuple(attention_mask.shape)}"
        )
    n, k = input_ids.shape[:2]
    if colour_free is not None and colour_free.shape != (n, k):
        raise ValueError(f"colour_free must be [N, K] = {(n, k)}, got {tuple(colour_free.shape)}")
    if batch_size > n:
        raise ValueError(f"batch_size={batch_size} exceeds the {n} training images")


def _draw_batch(
    images: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    idx: torch.Tensor,
    generator: torch.Generator,
    grayscale_p: float,
    free: tuple[torch.Tensor, torch.Tensor] | None,
) -> Batch:
    """Images ``idx`` with one random caption each (ids and mask ``[B, T']``).

    With ``free`` (count and sampling weights of each image's colour-free captions), an
    image is shown in grey with one of its colour-free captions with chance ``grayscale_p``.
    Columns that are padding in every row are dropped (exact, with a masked mean).
    """
    device = images.device
    caption = torch.randint(input_ids.shape[1], (len(idx),), generator=generator)
    batch_images = images[idx.to(device)]
    to_grey = None
    if free is not None:
        free_count, free_weights = free
        to_grey = (torch.rand(len(idx), generator=generator) < grayscale_p) & (free_count[idx] > 0)
        free_caption = torch.multinomial(free_weights[idx], 1, generator=generator).squeeze(1)
        caption = torch.where(to_grey, free_caption, caption)
        g = to_grey.to(device)[:, None, None, None]
        batch_images = torch.where(g, batch_images.mean(1, keepdim=True).expand_as(batch_images), batch_images)
    ids = input_ids[idx.to(device), caption.to(device)]
    mask = attention_mask[idx.to(device), caption.to(device)]
    width = max(int(mask.sum(1).max()), 1)
    return Batch(batch_images, ids[:, :width], mask[:, :width], idx, caption, to_grey)


def train_clip(
    model: nn.Module,
    images: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    config: TrainConfig | None = None,
    *,
    colour_free: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
    loss_fn: BatchLoss | None = None,
    desc: str = "training MiniCLIP",
    evaluate: Callable[[nn.Module], dict] | None = None,
    eval_every: int = 0,
) -> History:
    """Train ``model`` in place on ``images`` with several captions each; returns the history.

    ``images``: float ``[N, 3, H, W]``; ``input_ids``/``attention_mask``: ``[N, K, T]``
    (K tokenized captions per image). Every step draws a batch of images without
    replacement (a fresh permutation each epoch) and one of each image's K captions
    at random, so the model sees every phrasing of every image.

    ``colour_free`` (bool ``[N, K]``, optional) marks captions that name no colour; with
    ``config.grayscale_p > 0`` such a caption is sometimes paired with a grey version of
    its image, so shape features cannot lean on colour.

    ``loss_fn(model, batch)`` replaces the CLIP loss (see :class:`Batch`); the sampling,
    optimiser, schedule and temperature clamp stay exactly chapter 2's. Pass an already
    trained model to fine-tune it. ``evaluate(model)`` (in eval mode, without gradients)
    runs every ``eval_every`` steps and after the last; its results go to
    ``History.evals`` and its time is not counted in ``History.train_s``.
    """
    from clipcourse.progress import tqdm

    config = config or TrainConfig()
    device = torch.device(device) if device is not None else get_device()
    _check_training_data(images, input_ids, attention_mask, colour_free, config.batch_size)
    n = images.shape[0]
    free = None
    if colour_free is not None and config.grayscale_p > 0:
        free_count = colour_free.sum(1)
        # Sampling weights over each image's colour-free captions (uniform; zeros elsewhere).
        free = (free_count, colour_free.float() + (free_count == 0).float()[:, None])

    threads = cpu_threads(config.num_threads) if device.type == "cpu" else torch.get_num_threads()
    generator = torch.Generator().manual_seed(config.seed)
    model.to(device).train()
    optimizer = make_optimizer(model, config.lr, config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_schedule(s, config.steps, config.warmup_steps)
    )
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    images, input_ids, attention_mask = images.to(device), input_ids.to(device), attention_mask.to(device)

    history = History(device=str(device), threads=threads if device.type == "cpu" else 0)
    batches = shuffled_batches(n, config.batch_size, generator)
    start = time.perf_counter()
    bar = tqdm(range(config.steps), desc=desc, disable=not progress, mininterval=0.5)
    with torch_threads(threads):
        for _ in bar:
            idx = next(batches)
            batch = _draw_batch(images, input_ids, attention_mask, idx, generator, config.grayscale_p, free)
            history.lr.append(optimizer.param_groups[0]["lr"])
            custom = None if loss_fn is None else (lambda m, b=batch: loss_fn(m, b))
            history.loss.append(
                train_step(model, batch.images, batch.input_ids, batch.attention_mask, optimizer,
                           scaler=scaler, loss_fn=custom)
            )  # fmt: skip
            scheduler.step()
            history.scale.append(float(model.logit_scale.detach().exp()))
            if evaluate is not None and eval_every > 0 and (len(history) % eval_every == 0 or len(history) == config.steps):
                paused = time.perf_counter()
                model.eval()
                with torch.no_grad():
                    history.evals.append({"step": len(history), **evaluate(model)})
                model.train()
                start += time.perf_counter() - paused
            if progress and len(history) % 10 == 0:
                bar.set_postfix(loss=f"{history.loss[-1]:.3f}", scale=f"{history.scale[-1]:.1f}")
    synchronize(device)
    history.train_s = time.perf_counter() - start
    model.eval()
    return history


def save_checkpoint(path: str | Path, model: nn.Module, history: History | None = None, **extra) -> None:
    """Save weights, the model's config and the history in one file (loadable with ``weights_only=True``)."""
    config = getattr(model, "config", None)
    payload = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "config": config.to_dict() if config is not None else None,
        "history": history.to_dict() if history is not None else None,
        "extra": json.loads(json.dumps(extra)),  # plain types only
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"):
    """Rebuild a :class:`~clipcourse.models.MiniCLIP` from :func:`save_checkpoint`'s file.

    Returns ``(model, history, extra)``. Uses ``torch.load(weights_only=True)``:
    a checkpoint cannot run code when it is loaded.
    """
    from clipcourse.models import MiniCLIP, MiniCLIPConfig

    payload = torch.load(Path(path), map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or "state_dict" not in payload or not payload.get("config"):
        raise ValueError(f"{path} is not a MiniCLIP checkpoint written by save_checkpoint")
    model = MiniCLIP(MiniCLIPConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["state_dict"])
    model.eval()
    history = History.from_dict(payload["history"]) if payload.get("history") else None
    return model, history, payload.get("extra") or {}
