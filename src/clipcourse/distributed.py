"""CLIP's loss across many workers: gathering features, the local loss, launching ``torchrun``.

CLIP contrasts every image with every caption of a batch of 32,768 pairs (Radford et al.
2021, §2.5); no single device holds that, so each of the ``W`` workers encodes its own
``n`` pairs and the features of all workers are *gathered* before the loss. Two choices
then decide whether the gradients are right (open_clip's ``loss.py``):

* **gradients through the gather** (``torch.distributed.nn.functional.all_gather``, whose
  backward sends each slice of the gradient back to the worker that produced it), or not
  (``dist.all_gather`` returns constants; only the local slot, put back by hand, carries
  gradients);
* **local loss** (each rank scores its ``n`` rows against all ``W·n`` columns, labels offset
  by ``n·rank``: logits ``[n, W·n]``) or **global loss** (every rank computes the whole
  ``[W·n, W·n]`` loss).

DDP then *averages* the parameter gradients of the ranks. With gradients through the
gather both losses give exactly the one-process gradient (the local one at ``1/W`` of the
logits memory); without them the global loss is off by ``1/W`` and the local loss is simply
wrong. :mod:`clipcourse.verify_gather` measures all four; this module holds the pieces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from clipcourse.clip import MAX_LOGIT_SCALE, clip_loss

__all__ = [
    "COMBINATIONS",
    "ddp_loss_multiplier",
    "Features",
    "distributed_clip_loss",
    "gather_features",
    "gathered_clip_loss",
    "global_clip_loss",
    "init_workers",
    "logits_memory",
    "rank_and_world",
    "run_local_workers",
    "run_torchrun",
    "shard_batch",
    "torchrun_command",
]

#: The four ways of computing the loss on gathered features: (name, local_loss, gather_with_grad).
COMBINATIONS = (
    ("local_with_grad", True, True),
    ("local_no_grad", True, False),
    ("global_with_grad", False, True),
    ("global_no_grad", False, False),
)


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process; ``(0, 1)`` when no process group is running."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class Features(nn.Module):
    """MiniCLIP's two encoders and its temperature as one ``forward`` (what DDP wraps).

    DDP only averages gradients of a backward that follows its wrapper's ``forward``, so the
    features for the gathered loss must come out of ``forward``, not ``encode_image``.
    """

    def __init__(self, clip: nn.Module) -> None:
        super().__init__()
        self.clip = clip

    def forward(self, images, input_ids, attention_mask):
        return self.clip.encode_image(images), self.clip.encode_text(input_ids, attention_mask), self.clip.logit_scale


def init_workers(cpu: bool = False) -> tuple[int, int, torch.device]:
    """Join the torchrun process group (NCCL on GPUs, gloo on CPU or with ``cpu=True``): ``(rank, world, device)``.

    Reads the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``PORT``);
    without it this is a single worker and no process group is created. NCCL needs one GPU
    per worker, so with more workers on this machine than GPUs (two on a one-GPU Colab) the
    workers run on the CPU with gloo.
    """
    if "WORLD_SIZE" not in os.environ:
        return 0, 1, torch.device("cpu")
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    local_workers = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    cuda = torch.cuda.is_available() and not cpu and local_workers <= torch.cuda.device_count()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), torch.device("cuda", local_rank) if cuda else torch.device("cpu")


def gather_features(
    image_features: torch.Tensor, text_features: torch.Tensor, *, with_grad: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """All workers' features, rank ``r``'s rows at ``r·n … r·n + n − 1``: ``[n, D]`` -> ``[W·n, D]``.

    ``with_grad=True`` uses ``torch.distributed.nn.functional.all_gather``: its backward
    sums, over the ranks, the gradient each rank computed for this rank's slice, so the
    terms of the other ranks' losses reach this rank's encoder. ``with_grad=False`` uses
    ``dist.all_gather`` (no autograd) and puts the local tensor back in its own slot, as
    open_clip does, so only this rank's own loss terms flow back. Every rank must pass the
    same ``n``. Without a process group (one worker) the features come back unchanged.
    """
    if image_features.dim() != 2 or text_features.shape != image_features.shape:
        raise ValueError(
            f"image_features and text_features must both be [n, D], got "
            f"{tuple(image_features.shape)} and {tuple(text_features.shape)}"
        )
    rank, world = rank_and_world()
    if world == 1:
        return image_features, text_features
    if with_grad:
        from torch.distributed.nn.functional import all_gather

        with warnings.catch_warnings():  # deprecated in favour of a private API; still the public, documented one
            warnings.simplefilter("ignore", FutureWarning)
            return torch.cat(all_gather(image_features), 0), torch.cat(all_gather(text_features), 0)
    gathered = []
    for local in (image_features, text_features):
        slots = [torch.empty_like(local) for _ in range(world)]
        dist.all_gather(slots, local.detach().contiguous())
        slots[rank] = local  # the only slot on the autograd graph
        gathered.append(torch.cat(slots, 0))
    return gathered[0], gathered[1]


def _scale(logit_scale: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    scale = torch.as_tensor(logit_scale, dtype=like.dtype, device=like.device)
    return scale.exp().clamp(max=MAX_LOGIT_SCALE)


def gathered_clip_loss(
    local_image_features: torch.Tensor,
    local_text_features: torch.Tensor,
    all_image_features: torch.Tensor,
    all_text_features: torch.Tensor,
    logit_scale: torch.Tensor | float,
    rank: int,
) -> torch.Tensor:
    """The *local* CLIP loss of rank ``rank`` (open_clip's ``local_loss=True``): a scalar.

    Features are already L2-normalised; ``local_*`` are ``[n, D]`` and ``all_*`` are
    ``[W·n, D]`` with rank ``r``'s rows at ``r·n … r·n + n − 1``. Image→text logits are
    ``scale · local_images @ all_textsᵀ`` and text→image ``scale · local_texts @ all_imagesᵀ``
    (each ``[n, W·n]``, ``scale = min(exp(logit_scale), 100)``); the match of local row ``i``
    is column ``n·rank + i``. The mean of the two cross-entropies; averaged over the ranks it
    equals the one-process loss on all ``W·n`` pairs.
    """
    n = local_image_features.shape[0]
    if local_image_features.dim() != 2 or local_text_features.shape != local_image_features.shape:
        raise ValueError(
            f"local features must both be [n, D], got {tuple(local_image_features.shape)} "
            f"and {tuple(local_text_features.shape)}"
        )
    if n == 0 or all_image_features.shape != all_text_features.shape or all_image_features.dim() != 2:
        raise ValueError(
            f"all features must both be [W·n, D] with n > 0, got {tuple(all_image_features.shape)} "
            f"and {tuple(all_text_features.shape)}"
        )
    total = all_image_features.shape[0]
    if total % n or all_image_features.shape[1] != local_image_features.shape[1]:
        raise ValueError(
            f"all features have {total} rows of size {all_image_features.shape[1]}: expected a multiple "
            f"of the local batch n={n} and size {local_image_features.shape[1]}"
        )
    world = total // n
    if not 0 <= int(rank) < world:
        raise ValueError(f"rank must be in [0, {world}) for {total} gathered rows of {n}, got {rank}")
    scale = _scale(logit_scale, local_image_features)
    labels = torch.arange(n, device=local_image_features.device) + n * int(rank)
    image_to_text = F.cross_entropy(scale * local_image_features @ all_text_features.t(), labels)
    text_to_image = F.cross_entropy(scale * local_text_features @ all_image_features.t(), labels)
    return (image_to_text + text_to_image) / 2


def global_clip_loss(
    all_image_features: torch.Tensor, all_text_features: torch.Tensor, logit_scale: torch.Tensor | float
) -> torch.Tensor:
    """The whole-batch CLIP loss on gathered, normalised features (``[W·n, W·n]`` logits on every rank)."""
    scale = _scale(logit_scale, all_image_features)
    return clip_loss(scale * all_image_features @ all_text_features.t())


def distributed_clip_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    *,
    local_loss: bool = True,
    gather_with_grad: bool = True,
) -> tuple[torch.Tensor, int]:
    """Normalise, gather and compute the loss of this rank: ``[n, D]`` features -> ``(loss, logits elements)``.

    The defaults are the combination that is right and scales (open_clip's maintainers call
    it the only option that does). The second value is the number of logits this rank
    holds (``2·n·W·n`` local, ``2·(W·n)²`` global): the memory that grows with the batch.
    """
    image_features = F.normalize(image_features, dim=-1)
    text_features = F.normalize(text_features, dim=-1)
    all_images, all_texts = gather_features(image_features, text_features, with_grad=gather_with_grad)
    if local_loss:
        rank, _ = rank_and_world()
        loss = gathered_clip_loss(image_features, text_features, all_images, all_texts, logit_scale, rank)
        return loss, 2 * image_features.shape[0] * all_images.shape[0]
    return global_clip_loss(all_images, all_texts, logit_scale), 2 * all_images.shape[0] ** 2


def ddp_loss_multiplier(world_size: int, local_loss: bool, gather_with_grad: bool) -> float:
    """What to multiply each rank's loss by so that DDP's averaged encoder gradients are the one-process ones.

    Encoder parameters are those whose outputs are gathered. With gradients through the
    gather, the gather's backward *sums* each slice's gradient over the ranks and DDP then
    divides by ``W``: both losses come out exact (``1``). Without them, each rank keeps only
    its own terms: for the global loss that is ``1/W`` of the gradient (multiply by ``W``);
    for the local loss the missing terms differ from rank to rank and no constant fixes it
    (``ValueError``). With one worker nothing is gathered: ``1``.
    """
    if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size must be an integer of at least 1, got {world_size!r}")
    if world_size == 1 or gather_with_grad:
        return 1.0
    if local_loss:
        raise ValueError("no constant fixes the local loss without gradients through the gather: the missing "
                         "terms (other ranks' losses through this rank's features) are not proportional to the rest")
    return float(world_size)


def logits_memory(local_batch: int, world_size: int, bytes_per_element: int = 4) -> dict[str, float]:
    """Bytes of the two logit matrices one rank holds: local ``2·n·W·n`` vs global ``2·(W·n)²``.

    Activations for the backward pass (the softmax) are of the same size again; the point
    is the ratio, ``W``: the global loss makes every rank pay for the whole batch.
    """
    if local_batch < 1 or world_size < 1 or bytes_per_element < 1:
        raise ValueError(f"local_batch, world_size and bytes_per_element must be positive, got "
                         f"{local_batch}, {world_size}, {bytes_per_element}")
    total = local_batch * world_size
    local = 2 * local_batch * total * bytes_per_element
    global_ = 2 * total * total * bytes_per_element
    return {"local_batch": local_batch, "world_size": world_size, "global_batch": total,
            "local_bytes": local, "global_bytes": global_, "ratio": global_ / local}


def shard_batch(global_indices: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """Rank ``rank``'s contiguous share of a global batch: ``[W·n]`` -> ``[n]``.

    Every rank draws the same global batch (same seed) and keeps its slice, so rank ``r``'s
    pairs are rows ``r·n … r·n + n − 1`` of the gathered features, and the ``W`` shards
    together are exactly the batch one process with batch ``W·n`` would see. (A
    ``DistributedSampler`` shards the same way, interleaved: ``permutation[rank::W]``.)
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size) with world_size >= 1, got {rank} of {world_size}")
    if len(global_indices) % world_size:
        raise ValueError(f"a global batch of {len(global_indices)} does not split over {world_size} workers")
    n = len(global_indices) // world_size
    return global_indices[rank * n : (rank + 1) * n]


def torchrun_command(module: str, args: list[str], nproc: int = 2) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node=N -m MODULE ARGS``."""
    if nproc < 1:
        raise ValueError(f"nproc must be positive, got {nproc}")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", module, *map(str, args)]


def run_torchrun(
    module: str, args: list[str], out: str | Path, *, nproc: int = 2, timeout: float = 120, threads: int = 1,
    cache: bool = False,
) -> dict:
    """Launch ``module`` on ``nproc`` local workers with torchrun, wait, return the JSON it wrote to ``out``.

    For notebooks: the workers are separate processes started from a script (a kernel must
    not fork itself into workers). ``MASTER_ADDR`` is pinned to 127.0.0.1, each worker gets
    ``threads`` CPU threads, and the launch is killed after ``timeout`` seconds
    (``TimeoutError``). Raises ``RuntimeError`` with the workers' last output if they fail. With ``cache=True`` a
    result is kept in the course cache, keyed by module, workers, arguments and library
    version, and a later call with the same key returns it without launching anything.
    """
    cached = _cache_file(module, args, nproc, threads) if cache else None
    if cached is not None and cached.exists():
        return json.loads(cached.read_text())
    out = Path(out)
    out.unlink(missing_ok=True)
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               TORCH_CPP_LOG_LEVEL="ERROR", PYTHONWARNINGS="ignore")
    src = str(Path(__file__).resolve().parent.parent)  # this checkout's clipcourse, also in the workers
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [env.get("PYTHONPATH")])])
    command = torchrun_command(module, [*args, "--out", str(out)], nproc)
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        raise TimeoutError(f"{module} on {nproc} workers did not finish in {timeout} s") from error
    if result.returncode != 0 or not out.exists():
        tail = (result.stdout + result.stderr)[-3000:]
        raise RuntimeError(f"{module} on {nproc} workers failed (exit {result.returncode}):\n{tail}")
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(out.read_text())
    return json.loads(out.read_text())


def _cache_file(module: str, args: list[str], nproc: int, threads: int) -> Path:
    import hashlib

    import clipcourse
    from clipcourse.course_model import default_cache_dir

    key = json.dumps([module, [str(a) for a in args], nproc, threads, clipcourse.__version__])
    return default_cache_dir() / "runs" / f"{module.rsplit('.', 1)[-1]}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_local_workers(module: str, args: list[str], out: str | Path, *, nproc: int = 2, timeout: float = 30) -> dict:
    """Start ``nproc`` workers of ``module`` directly (the environment torchrun would set), return ``out``'s JSON.

    torchrun's launcher is a Python process of its own that imports torch before the workers
    start; where a few seconds matter (a graded test cell) this sets ``RANK``,
    ``WORLD_SIZE``, ``MASTER_ADDR`` and a free ``MASTER_PORT`` itself. Every worker is killed
    after ``timeout`` seconds (``TimeoutError``), so a worker stuck in a collective cannot
    hang the caller; a worker that fails raises ``RuntimeError`` with the workers' output.
    """
    out = Path(out)
    out.unlink(missing_ok=True)
    src = str(Path(__file__).resolve().parent.parent)
    base = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), WORLD_SIZE=str(nproc),
                LOCAL_WORLD_SIZE=str(nproc), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore",
                TORCH_CPP_LOG_LEVEL="ERROR")
    base["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [base.get("PYTHONPATH")])])
    command = [sys.executable, "-m", module, *map(str, args), "--out", str(out)]
    workers = [
        subprocess.Popen(command, env=dict(base, RANK=str(r), LOCAL_RANK=str(r)), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
        for r in range(nproc)
    ]
    logs, codes = [], []
    deadline = time.monotonic() + timeout
    try:
        for worker in workers:
            text, _ = worker.communicate(timeout=max(0.1, deadline - time.monotonic()))
            logs.append(text)
            codes.append(worker.returncode)
    except subprocess.TimeoutExpired as error:
        raise TimeoutError(f"{module} on {nproc} workers did not finish in {timeout} s") from error
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    # The result is written by rank 0 after the last collective; a worker killed by a signal
    # (gloo's teardown can abort with "terminate called without an active exception") after
    # that has still computed it. An exit code >= 1 is a real failure (an exception).
    if any(code > 0 for code in codes) or not out.exists():
        raise RuntimeError(f"{module} on {nproc} workers failed (exit codes {codes}):\n" + "\n".join(logs)[-3000:])
    return json.loads(out.read_text())
