"""Training a MiniCLIP: the reference step, the loop, the schedule, checkpoints.

The loop is deliberately plain (nanoGPT style): sample a batch of images, one
random caption for each, compute the symmetric CLIP loss, step AdamW, then
clamp the log temperature to [0, log 100] as open_clip does. On a GPU it uses
automatic mixed precision; on a CPU it is deterministic for a given seed.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from clipcourse.clip import MAX_LOGIT_SCALE, clip_loss

__all__ = [
    "BatchLoss",
    "History",
    "TrainConfig",
    "cosine_schedule",
    "cpu_threads",
    "load_checkpoint",
    "make_optimizer",
    "save_checkpoint",
    "train_clip",
    "train_step",
]


#: A training-loss hook: ``(model, images [B, 3, H, W], input_ids [B, T], attention_mask [B, T],
#: image_index [B], caption_index [B]) -> scalar loss``. The indices say which training images and
#: which of their captions the batch holds, so a hook can look up extra data per pair (chapter 7's
#: hard negative captions). ``None`` means CLIP's symmetric loss on ``model(images, ...)``.
BatchLoss = Callable[
    [nn.Module, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor
]


def train_step(
    model: nn.Module,
    images: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    optimizer: torch.optim.Optimizer,
) -> float:
    """One optimisation step of CLIP on a batch of pairs; returns the loss as a float.

    The order matters: zero the old gradients, forward, loss, backward, step,
    and only then clamp the log scale (clamping before the step would let the
    step push it past the bound).
    """
    optimizer.zero_grad(set_to_none=True)
    logits_per_image, _ = model(images, input_ids, attention_mask)
    loss = clip_loss(logits_per_image)
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0.0, math.log(MAX_LOGIT_SCALE))
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
    """Per-step records: loss, logit scale (the scale itself, exp of the parameter), learning rate."""

    loss: list[float] = field(default_factory=list)
    logit_scale: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    train_s: float = 0.0  #: wall-clock seconds of the loop
    device: str = "cpu"
    threads: int = 0  #: CPU threads used (0: not recorded)
    #: Evaluations made during training by a hook: name -> [[step, value], ...] (chapter 7's binding curve).
    metrics: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(values: dict) -> History:
        # A staticmethod, not a classmethod: clipcourse.grading.protect snapshots class members by
        # identity, and a classmethod gives a new bound object on every attribute access.
        return History(**values)

    def __len__(self) -> int:
        return len(self.loss)


def _idle_cores(window: float = 0.2) -> float | None:
    """How many cores are idle right now (from /proc/stat over ``window`` seconds); None if unknown."""
    def read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return values[3] + values[4], sum(values[:8])  # idle + iowait, total (without guest time)

    try:
        idle0, total0 = read()
        time.sleep(window)
        idle1, total1 = read()
    except (OSError, ValueError, IndexError):
        return None
    if total1 <= total0:
        return None
    return (os.cpu_count() or 1) * (idle1 - idle0) / (total1 - total0)


def cpu_threads(limit: int = 2) -> int:
    """Threads for CPU training: at most ``limit``, fewer when other processes keep the cores busy.

    Two threads on two cores that another process is using are far slower than one
    (each waits for the other at every parallel region), so we look at how many cores
    are idle right now (Linux), or at the load average elsewhere. The result changes
    the speed, not the trained weights.
    """
    free = _idle_cores()
    if free is None:
        try:
            free = (os.cpu_count() or 1) - os.getloadavg()[0]
        except (AttributeError, OSError):  # no load average (Windows)
            free = float(limit)
    return max(1, min(limit, torch.get_num_threads(), int(free + 0.5)))


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
    batch_loss: BatchLoss | None = None,
) -> History:
    """Train ``model`` in place on ``images`` with several captions each; returns the history.

    ``images``: float ``[N, 3, H, W]``; ``input_ids``/``attention_mask``: ``[N, K, T]``
    (K tokenized captions per image). Every step draws a batch of images without
    replacement (a fresh permutation each epoch) and one of each image's K captions
    at random, so the model sees every phrasing of every image.

    ``colour_free`` (bool ``[N, K]``, optional) marks captions that name no colour; with
    ``config.grayscale_p > 0`` such a caption is sometimes paired with a grey version of
    its image, so shape features cannot lean on colour.

    ``batch_loss`` (optional) replaces the loss of a batch (see :data:`BatchLoss`); everything
    else (sampling, schedule, clamp, mixed precision) stays the same. Pass an already trained
    model to fine-tune it.
    """
    from tqdm.auto import tqdm

    from clipcourse.device import get_device

    config = config or TrainConfig()
    device = torch.device(device) if device is not None else get_device()
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
    grey = colour_free is not None and config.grayscale_p > 0
    if grey:
        free_count = colour_free.sum(1)
        # Sampling weights over each image's colour-free captions (uniform; zeros elsewhere).
        free_weights = colour_free.float() + (free_count == 0).float()[:, None]
    if config.batch_size > n:
        raise ValueError(f"batch_size={config.batch_size} exceeds the {n} training images")

    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(config.num_threads))
    generator = torch.Generator().manual_seed(config.seed)
    model.to(device).train()
    optimizer = make_optimizer(model, config.lr, config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_schedule(s, config.steps, config.warmup_steps)
    )
    use_amp = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    images, input_ids, attention_mask = images.to(device), input_ids.to(device), attention_mask.to(device)

    history = History(device=str(device), threads=torch.get_num_threads() if device.type == "cpu" else 0)
    order = torch.randperm(n, generator=generator)
    cursor = 0
    start = time.perf_counter()
    try:
        bar = tqdm(range(config.steps), desc="training MiniCLIP", disable=not progress, mininterval=0.5)
        for _ in bar:
            if cursor + config.batch_size > n:
                order, cursor = torch.randperm(n, generator=generator), 0
            idx = order[cursor : cursor + config.batch_size]
            cursor += config.batch_size
            caption = torch.randint(k, (len(idx),), generator=generator)
            batch_images = images[idx.to(device)]
            if grey:
                to_grey = (torch.rand(len(idx), generator=generator) < config.grayscale_p) & (free_count[idx] > 0)
                free_caption = torch.multinomial(free_weights[idx], 1, generator=generator).squeeze(1)
                caption = torch.where(to_grey, free_caption, caption)
                g = to_grey.to(device)[:, None, None, None]
                batch_images = torch.where(g, batch_images.mean(1, keepdim=True).expand_as(batch_images), batch_images)
            ids = input_ids[idx.to(device), caption.to(device)]
            mask = attention_mask[idx.to(device), caption.to(device)]
            width = max(int(mask.sum(1).max()), 1)  # drop all-padding columns: exact with a masked mean
            ids, mask = ids[:, :width], mask[:, :width]

            lr = optimizer.param_groups[0]["lr"]
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                if batch_loss is None:
                    logits_per_image, _ = model(batch_images, ids, mask)
                    loss = clip_loss(logits_per_image.float())
                else:
                    loss = batch_loss(model, batch_images, ids, mask, idx, caption).float()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0.0, math.log(MAX_LOGIT_SCALE))

            history.loss.append(float(loss.detach()))
            history.logit_scale.append(float(model.logit_scale.detach().exp()))
            history.lr.append(lr)
            if progress and len(history) % 10 == 0:
                bar.set_postfix(loss=f"{history.loss[-1]:.3f}", scale=f"{history.logit_scale[-1]:.1f}")
    finally:
        torch.set_num_threads(threads)
    from clipcourse.device import synchronize

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
