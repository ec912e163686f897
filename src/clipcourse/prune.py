"""Pruning: masks that change nothing you can measure, and channel removal that does.

* :func:`mask_prune` is ``torch.nn.utils.prune`` (L1, unstructured): it zeroes the
  smallest weights through a mask. The tensors keep their shapes, the matrix products
  stay dense, so the model is neither smaller on disk (it even stores the mask and the
  original beside each other until ``prune.remove``) nor faster.
* :func:`prune_channels` removes whole units and rebuilds smaller layers: groups of
  channels of the SmallCNN image encoder (a GroupNorm group at a time, so the surviving
  channels are normalised exactly as before) and hidden units of every transformer
  feed-forward block (rows of ``intermediate.dense`` and the matching columns of
  ``output.dense``). Units are ranked by the L1 norm of their weights, the classic
  criterion (Li et al. 2017, "Pruning filters for efficient ConvNets").
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

__all__ = ["mask_prune", "prune_channels", "sparsity"]


def mask_prune(model: nn.Module, amount: float, *, permanent: bool = False) -> nn.Module:
    """A copy of ``model`` with the smallest ``amount`` of every Linear/Conv2d weight masked to 0.

    ``permanent=True`` folds the masks in (``prune.remove``): the zeros stay, the mask goes,
    and the tensors are exactly as large as before.
    """
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must be in [0, 1), got {amount}")
    model = copy.deepcopy(model)
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            torch_prune.l1_unstructured(module, "weight", amount=amount)
            if permanent:
                torch_prune.remove(module, "weight")
    return model.eval()


def sparsity(model: nn.Module) -> float:
    """Share of exactly-zero entries among the Linear/Conv2d weights."""
    zeros = total = 0
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            zeros += int((module.weight == 0).sum())
            total += module.weight.numel()
    return zeros / max(total, 1)


def _keep(scores: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Indices of the ``n_keep`` largest scores, in their original order."""
    return torch.sort(torch.topk(scores, n_keep).indices).values


def _conv_blocks(features: nn.Sequential) -> list[nn.Sequential]:
    return [m for m in features if isinstance(m, nn.Sequential) and isinstance(m[0], nn.Conv2d)]


@torch.no_grad()
def _prune_cnn(encoder: nn.Module, projection: nn.Linear, amount: float) -> nn.Linear:
    """Remove GroupNorm groups of channels from every conv block; returns the new projection."""
    blocks = _conv_blocks(encoder.features)
    keep_in = None
    for block in blocks:
        conv, norm = block[0], block[1]
        if keep_in is not None:  # this conv's inputs lost the previous block's channels
            new = nn.Conv2d(len(keep_in), conv.out_channels, conv.kernel_size, padding=conv.padding, bias=False)
            new.weight.copy_(conv.weight[:, keep_in])
            block[0] = conv = new
        groups, size = norm.num_groups, conv.out_channels // norm.num_groups
        kept_groups = max(1, round(groups * (1 - amount)))
        scores = conv.weight.abs().sum(dim=(1, 2, 3)).view(groups, size).sum(1)
        keep_groups = _keep(scores, kept_groups)
        keep = (keep_groups[:, None] * size + torch.arange(size)).flatten()
        new = nn.Conv2d(conv.in_channels, len(keep), conv.kernel_size, padding=conv.padding, bias=False)
        new.weight.copy_(conv.weight[keep])
        block[0] = new
        new_norm = nn.GroupNorm(kept_groups, len(keep), eps=norm.eps)
        new_norm.weight.copy_(norm.weight[keep])
        new_norm.bias.copy_(norm.bias[keep])
        block[1] = new_norm
        keep_in = keep
    encoder.out_dim = len(keep_in)
    new_projection = nn.Linear(len(keep_in), projection.out_features, bias=projection.bias is not None)
    new_projection.weight.copy_(projection.weight[:, keep_in])
    if projection.bias is not None:
        new_projection.bias.copy_(projection.bias)
    return new_projection


@torch.no_grad()
def _prune_ffn(layer: nn.Module, amount: float) -> None:
    """Remove hidden units of one BERT layer's feed-forward block (intermediate -> output)."""
    up, down = layer.intermediate.dense, layer.output.dense
    n_keep = max(1, round(up.out_features * (1 - amount)))
    scores = up.weight.abs().sum(1) + down.weight.abs().sum(0)
    keep = _keep(scores, n_keep)
    new_up = nn.Linear(up.in_features, n_keep)
    new_up.weight.copy_(up.weight[keep])
    new_up.bias.copy_(up.bias[keep])
    new_down = nn.Linear(n_keep, down.out_features)
    new_down.weight.copy_(down.weight[:, keep])
    new_down.bias.copy_(down.bias)
    layer.intermediate.dense, layer.output.dense = new_up, new_down


def prune_channels(model: nn.Module, amount: float = 0.5, *, image: bool = True, text: bool = True) -> nn.Module:
    """A smaller copy of a SmallCNN-based MiniCLIP: ``amount`` of its channel groups and FFN units removed.

    The copy has fewer parameters and smaller tensors (it really shrinks); its
    ``config`` still describes the original sizes, so save it with ``torch.save(model)``
    or rebuild it with this function, not with ``MiniCLIP(config)``.
    """
    if not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must be in [0, 1), got {amount}")
    if not hasattr(getattr(model, "image_encoder", None), "features"):
        raise ValueError("prune_channels expects a MiniCLIP with the SmallCNN image encoder (image_encoder='cnn')")
    model = copy.deepcopy(model).cpu().eval()
    if image:
        model.image_projection = _prune_cnn(model.image_encoder, model.image_projection, amount)
    if text:
        for layer in model.text_encoder.bert.encoder.layer:
            _prune_ffn(layer, amount)
    return model
