"""What a model costs and what it is worth: the rows of chapter 4's compression card.

One row per model: parameters, size on disk (the bytes ``torch.save`` writes for
its state dict), latency of encoding images at batch 1 and 64 (median and 95th
percentile, after warm-up, via :func:`clipcourse.latency.measure_latency`, which
synchronises CUDA only when the model runs there), throughput, and the zero-shot
top-1 on Shapes world's unseen colour×shape combinations. :func:`compression_card`
adds the speed-ups and the share of the teacher's accuracy kept.

Why images: in zero-shot classification and search the class prompts (or the
captions of a collection) are encoded once, ahead of time; the image encoder is
what runs for every query.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from clipcourse.latency import measure_latency

__all__ = [
    "CARD_HEADER",
    "card_rows",
    "compression_card",
    "count_parameters",
    "model_report",
    "size_mb",
    "unseen_evaluator",
    "zero_shot_top1",
]


def count_parameters(model: nn.Module) -> int:
    """Parameters, counting the packed weights of ``torch.ao`` dynamic-quantised layers too."""
    total = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        if hasattr(module, "_packed_params") and callable(getattr(module, "weight", None)):
            # a quantized Linear: weight() and bias() are methods
            total += module.weight().numel()
            bias = module.bias()
            total += bias.numel() if bias is not None else 0
    return total


def size_mb(model_or_state: nn.Module | Mapping[str, Any]) -> float:
    """Megabytes (10^6 bytes) that ``torch.save`` writes for a module's state dict (or a given dict)."""
    state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getbuffer().nbytes / 1e6


@torch.no_grad()
def zero_shot_top1(model, tokenizer, images: torch.Tensor, labels: torch.Tensor,
                   template: str = "a photo of a {}") -> float:
    """Top-1 accuracy of zero-shot classification among Shapes world's 30 colour×shape classes."""
    from clipcourse.data import ALL_CLASSES, class_name
    from clipcourse.retrieval import encode_images, encode_texts

    classes = encode_texts(model, tokenizer, [template.format(class_name(c, s)) for c, s in ALL_CLASSES])
    predictions = (encode_images(model, images) @ classes.T).argmax(dim=1)
    return (predictions == labels).float().mean().item()


def unseen_evaluator(tokenizer, world_seed: int = 0, image_size: int = 32) -> Callable[[nn.Module], dict]:
    """``evaluate(model) -> {"unseen_top1": ...}`` on the held-out combinations (the split is drawn once)."""
    from clipcourse.data import ShapesWorld

    split = ShapesWorld(seed=world_seed, image_size=image_size).split("test_unseen")
    images, labels = split.float_images(), split.labels()

    def evaluate(model: nn.Module) -> dict:
        return {"unseen_top1": zero_shot_top1(model, tokenizer, images, labels)}

    return evaluate


def model_report(
    name: str,
    model: nn.Module,
    images: torch.Tensor,
    *,
    accuracy: float | None = None,
    state: Mapping[str, Any] | None = None,
    batch_sizes: Sequence[int] = (1, 64),
    warmup: int = 3,
    repeats: int = 20,
    max_seconds: float | None = 5.0,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """One row of the card: ``name``, params, MB, latency p50/p95 and throughput per batch size.

    ``images``: float ``[N, 3, H, W]`` with ``N >= max(batch_sizes)``; the model's
    ``encode_image`` is timed on the first ``b`` of them. ``state`` is what would be
    saved (an int8 packed state dict, say); by default the model's own state dict.
    ``accuracy`` is copied into the row (computed by the caller, e.g. :func:`zero_shot_top1`).
    """
    if images.dim() != 4 or len(images) < max(batch_sizes):
        raise ValueError(f"images must be [N, 3, H, W] with N >= {max(batch_sizes)}, got {tuple(images.shape)}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model = model.eval()
    row: dict[str, Any] = {
        "name": name,
        "params": count_parameters(model),
        "size_mb": size_mb(state if state is not None else model),
        "unseen_top1": accuracy,
    }
    for b in batch_sizes:
        batch = images[:b].to(device)
        stats = measure_latency(lambda batch=batch: model.encode_image(batch), batch_size=b, warmup=warmup,
                                repeats=repeats, device=device, max_seconds=max_seconds)
        row[f"p50_ms_b{b}"] = stats.p50_ms
        row[f"p95_ms_b{b}"] = stats.p95_ms
        row[f"items_per_s_b{b}"] = stats.items_per_s
    row["threads"] = torch.get_num_threads()
    row["device"] = str(device)
    return row


def compression_card(rows: Sequence[dict[str, Any]], reference: str) -> list[dict[str, Any]]:
    """Add, relative to the row named ``reference`` (the teacher): size ratio, speed-ups, accuracy kept."""
    base = {r["name"]: r for r in rows}.get(reference)
    if base is None:
        raise ValueError(f"no row named {reference!r} among {[r['name'] for r in rows]}")
    out = []
    for r in rows:
        r = dict(r)
        r["size_ratio"] = base["size_mb"] / r["size_mb"]
        for key in [k for k in r if k.startswith("items_per_s_b")]:
            r["speedup_" + key.removeprefix("items_per_s_")] = r[key] / base[key]
        if r.get("unseen_top1") is not None and base.get("unseen_top1"):
            r["accuracy_kept"] = r["unseen_top1"] / base["unseen_top1"]
        out.append(r)
    return out


CARD_HEADER = ["model", "params", "MB", "p50 / p95 ms (b=1)", "p50 / p95 ms (b=64)", "images/s (b=64)",
               "speed-up (b=64)", "unseen top-1", "teacher's accuracy kept"]


def card_rows(card: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Format :func:`compression_card`'s rows for :func:`clipcourse.plots.html_table` under ``CARD_HEADER``."""
    def pct(x):
        return "–" if x is None else f"{x:.1%}"

    return [[r["name"], f"{r['params']:,}", f"{r['size_mb']:.3f}",
             f"{r['p50_ms_b1']:.2f} / {r['p95_ms_b1']:.2f}", f"{r['p50_ms_b64']:.1f} / {r['p95_ms_b64']:.1f}",
             f"{r['items_per_s_b64']:,.0f}", f"{r['speedup_b64']:.2f}×", pct(r.get("unseen_top1")),
             pct(r.get("accuracy_kept"))] for r in card]
