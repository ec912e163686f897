"""Check the distributed CLIP loss against one process, in float64, for the four combinations.

    python -m torch.distributed.run --standalone --nproc_per_node=2 \\
        -m clipcourse.verify_gather --local-batch 4 --out verify.json

Every worker builds the same tiny MiniCLIP (float64, seeded) and the same global batch of
``W·B`` pairs, keeps its shard of ``B``, wraps the model in DDP and, for each of local/global
loss × with/without gradients through the gather, runs forward, loss and backward (DDP
averages the gradients). Each result is compared with one process computing the CLIP loss
of all ``W·B`` pairs: the loss difference, the largest gradient difference over every
parameter, the factor the encoder gradients are off by (least squares, with their cosine),
the ratio of the temperature's gradient, and the bytes of logits each rank held. Rank 0
writes the JSON. Without torchrun it runs as one worker (all four agree trivially).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from clipcourse.distributed import (
    COMBINATIONS,
    Features,
    distributed_clip_loss,
    gather_features,
    global_clip_loss,
    init_workers,
    run_local_workers,
    shard_batch,
)
from clipcourse.models import (  # transformers is imported only when a MiniCLIP is built
    MiniCLIP,
    MiniCLIPConfig,
)

__all__ = ["TINY", "check_function_on_workers", "check_loss_source", "compare_gradients", "main", "verify"]

#: A MiniCLIP small enough to run in float64 on every worker in a second.
TINY = MiniCLIPConfig(vocab_size=32, context_length=8, embed_dim=8, image_width=4, text_width=8, text_layers=1)


def compare_gradients(model: nn.Module, reference: nn.Module) -> dict[str, float]:
    """Gradients of ``model`` against ``reference``: max |difference|, encoder factor and cosine, scale ratio."""
    enc, ref_enc, diff = [], [], 0.0
    scale = ref_scale = 0.0
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        g, r = p.grad.detach().flatten().cpu(), q.grad.detach().flatten().cpu()
        diff = max(diff, float((g - r).abs().max()))
        if name.endswith("logit_scale"):
            scale, ref_scale = float(g), float(r)
        else:
            enc.append(g)
            ref_enc.append(r)
    g, r = torch.cat(enc), torch.cat(ref_enc)
    return {
        "max_grad_diff": diff,
        "encoder_grad_factor": float(g @ r / (r @ r)),
        "encoder_grad_cosine": float(F.cosine_similarity(g, r, dim=0)),
        "logit_scale_grad_ratio": scale / ref_scale if ref_scale else math.nan,
    }


def _batch(world: int, local_batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = world * local_batch
    images = torch.rand(n, 3, TINY.image_size, TINY.image_size, generator=g, dtype=torch.float64)
    ids = torch.randint(5, TINY.vocab_size, (n, 6), generator=g)
    lengths = torch.randint(2, 7, (n,), generator=g)
    mask = (torch.arange(6)[None] < lengths[:, None]).long()
    return images, ids * mask, mask


def verify(local_batch: int = 4, seed: int = 0, device: torch.device | None = None) -> dict:
    """Run the four combinations on this process group (or alone); returns the comparison table."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    device = device or torch.device("cpu")
    torch.manual_seed(seed)
    model = MiniCLIP(TINY).double().to(device)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(10.0))  # below the clamp, so the temperature gets a gradient
    images, ids, mask = (t.to(device) for t in _batch(world, local_batch, seed))
    mine = shard_batch(torch.arange(world * local_batch), rank, world).to(device)

    reference = copy.deepcopy(model)  # one process, the whole batch of W·B pairs
    img, txt, log_scale = Features(reference)(images, ids, mask)
    ref_loss = global_clip_loss(F.normalize(img, dim=-1), F.normalize(txt, dim=-1), log_scale)
    ref_loss.backward()

    wrapped = Features(model)
    if world > 1:
        wrapped = DDP(wrapped, device_ids=[device.index] if device.type == "cuda" else None)
    rows = {}
    for name, local_loss, with_grad in COMBINATIONS:
        model.zero_grad(set_to_none=True)
        img, txt, log_scale = wrapped(images[mine], ids[mine], mask[mine])
        loss, elements = distributed_clip_loss(img, txt, log_scale, local_loss=local_loss, gather_with_grad=with_grad)
        loss.backward()
        mean_loss = loss.detach().clone()
        if world > 1:
            dist.all_reduce(mean_loss)
            mean_loss /= world
        rows[name] = {
            "local_loss": local_loss, "gather_with_grad": with_grad,
            "loss": float(mean_loss), "loss_diff": abs(float(mean_loss) - float(ref_loss.detach())),
            **compare_gradients(model, reference),
            "logits_bytes_per_rank": elements * mean_loss.element_size(),
        }
    return {"world_size": world, "local_batch": local_batch, "dtype": "float64",
            "reference_loss": float(ref_loss.detach()), "combinations": rows}


def check_loss_source(path: str | Path, name: str, local_batch: int = 3, dim: int = 5, seed: int = 0) -> dict:
    """Check a *local* loss function written in a file (a learner's) on the running workers.

    ``name`` must have :func:`~clipcourse.distributed.gathered_clip_loss`'s signature. Every
    rank takes its ``[n, D]`` slice of the same seeded float64 features (leaf tensors, the
    stand-in for an encoder's output), gathers with gradients, calls the function and
    backpropagates; the gradients are then averaged over ranks as DDP does. Returns, for
    rank 0, the largest difference from one process with the whole batch: of the rank-mean
    loss, of each rank's own loss, of the feature gradients and of the temperature's gradient.
    """
    namespace: dict = {}
    source = Path(path).read_text()
    exec(compile("import math\nimport torch\nimport torch.nn.functional as F\n" + source, str(path), "exec"), namespace)
    loss_fn = namespace[name]
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    g = torch.Generator().manual_seed(seed)
    images = F.normalize(torch.randn(world * local_batch, dim, generator=g, dtype=torch.float64), dim=-1)
    texts = F.normalize(torch.randn(world * local_batch, dim, generator=g, dtype=torch.float64), dim=-1)
    rows = shard_batch(torch.arange(world * local_batch), rank, world)
    results = {}
    for log_scale in (math.log(10.0), math.log(200.0)):  # below and above the clamp at 100
        mine_i, mine_t = images[rows].clone().requires_grad_(), texts[rows].clone().requires_grad_()
        scale = torch.tensor(log_scale, dtype=torch.float64, requires_grad=True)
        all_i, all_t = gather_features(mine_i, mine_t, with_grad=True)
        loss = loss_fn(mine_i, mine_t, all_i, all_t, scale, rank)
        loss.backward()
        grads = torch.cat([mine_i.grad, mine_t.grad], 1) / world  # what DDP's averaging leaves per rank
        ref_i, ref_t = images.clone().requires_grad_(), texts.clone().requires_grad_()
        ref_scale = torch.tensor(log_scale, dtype=torch.float64, requires_grad=True)
        reference = global_clip_loss(ref_i, ref_t, ref_scale)
        reference.backward()
        from clipcourse.distributed import gathered_clip_loss

        own_reference = gathered_clip_loss(images[rows], texts[rows], images, texts, log_scale, rank)
        stats = torch.stack([
            (loss.detach() - own_reference).abs(),
            (grads - torch.cat([ref_i.grad, ref_t.grad], 1)[rows]).abs().max(),
            (scale.grad - ref_scale.grad).abs(),
        ])
        mean_loss = loss.detach().clone()
        if world > 1:
            dist.all_reduce(stats, op=dist.ReduceOp.MAX)
            scale_grad = scale.grad.clone()
            dist.all_reduce(mean_loss)
            dist.all_reduce(scale_grad)
            stats[2] = (scale_grad / world - ref_scale.grad).abs()
            mean_loss /= world
        results[f"log_scale_{log_scale:.3f}"] = {
            "loss_diff": abs(float(mean_loss) - float(reference.detach())),
            "rank_loss_diff": float(stats[0]),
            "max_grad_diff": float(stats[1]),
            "logit_scale_grad_diff": float(stats[2]),
        }
    worst = {k: max(r[k] for r in results.values()) for k in next(iter(results.values()))}
    return {"world_size": world, "local_batch": local_batch, "cases": results, **worst}


def check_function_on_workers(function, nproc: int = 2, timeout: float | None = None) -> dict:
    """Run :func:`check_loss_source` on ``function``'s source in ``nproc`` real gloo workers.

    For a test cell: the function's source (``inspect.getsource``) goes to a temporary file,
    the workers are separate processes (never forked from the kernel), bounded by ``timeout``
    seconds (``TimeoutError``). By default that is three quarters of the grader's per-cell
    limit (``CLIPCOURSE_CELL_TIMEOUT``, 60 s unless set), so the cell itself is never cut off.
    ``LookupError`` when the function has no source here: when graded, the learner's code runs
    only in the sandbox, and starting it in unsandboxed workers would defeat that.
    """
    import inspect
    import os
    import tempfile
    import textwrap

    if timeout is None:
        timeout = 0.75 * float(os.environ.get("CLIPCOURSE_CELL_TIMEOUT", 60))

    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (TypeError, OSError) as error:  # graded: the learner's function lives in the sandbox, not here
        raise LookupError(f"the source of {getattr(function, '__name__', function)!r} is not available here") from error
    with tempfile.TemporaryDirectory(prefix="clipcourse_gather_") as tmp:
        path = Path(tmp) / "loss.py"
        path.write_text(source)
        return run_local_workers("clipcourse.verify_gather", ["--loss-source", path, "--loss-name", function.__name__],
                                 Path(tmp) / "result.json", nproc=nproc, timeout=timeout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--local-batch", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("verify_gather.json"))
    parser.add_argument("--loss-source", type=Path, help="check the local loss function in this file instead")
    parser.add_argument("--loss-name", default="gathered_clip_loss")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    rank, world, device = init_workers(cpu=args.loss_source is not None)
    try:
        if args.loss_source is not None:
            result = check_loss_source(args.loss_source, args.loss_name, args.local_batch, seed=args.seed)
            result["seconds"] = time.perf_counter() - start
            if rank == 0:
                args.out.write_text(json.dumps(result, indent=1))
            return 0
        result = verify(args.local_batch, args.seed, device)
        result["backend"] = dist.get_backend() if dist.is_initialized() else "none"
        result["seconds"] = time.perf_counter() - start
        if rank == 0:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=1))
            for name, row in result["combinations"].items():
                print(f"{name:17s} loss diff {row['loss_diff']:.1e}  max grad diff {row['max_grad_diff']:.1e}  "
                      f"encoder factor {row['encoder_grad_factor']:.3f} (cos {row['encoder_grad_cosine']:.3f})")
    finally:
        if dist.is_initialized():
            with contextlib.suppress(RuntimeError):  # a peer that already failed
                dist.barrier()  # leave together: gloo can abort a process whose peer tore down first
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
