"""Train MiniCLIP on several workers with DDP and the gathered local loss.

    python -m torch.distributed.run --standalone --nproc_per_node=2 \\
        -m clipcourse.ddp_train --local-batch 64 --steps 20 --out ddp.json
    python -m clipcourse.ddp_train --local-batch 128 --steps 20 --out single.json   # one process

gloo on CPU, NCCL on GPUs (one GPU per worker, ``LOCAL_RANK``). Every worker builds the
same Shapes-world training set and draws the same global batch of ``W·n`` pairs from the
same seeded generator, then keeps its own shard of ``n`` (:func:`~clipcourse.distributed.shard_batch`),
so ``W`` workers with batch ``n`` see exactly the pairs of one process with batch ``W·n``,
and with the default loss (local, gradients through the gather) they take the same steps.
The optimiser, schedule and temperature clamp are Chapter 2's (:mod:`clipcourse.train`).
Rank 0 writes the per-step losses and the throughput to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.distributed as dist

from clipcourse.clip import clamp_logit_scale_, clip_loss
from clipcourse.device import cpu_threads
from clipcourse.distributed import Features, distributed_clip_loss, init_workers, shard_batch
from clipcourse.train import cosine_schedule, make_optimizer

__all__ = ["global_batches", "main", "train"]


def global_batches(n_images: int, n_captions: int, global_batch: int, steps: int, seed: int):
    """Yield ``(image indices, caption choice)`` of ``global_batch`` pairs per step, identical on every rank.

    Images are drawn without replacement, a fresh permutation each epoch (as
    :func:`clipcourse.train.train_clip`), and one of each image's captions at random.
    """
    if global_batch > n_images:
        raise ValueError(f"a global batch of {global_batch} exceeds the {n_images} training images")
    generator = torch.Generator().manual_seed(seed)
    order, cursor = torch.randperm(n_images, generator=generator), 0
    for _ in range(steps):
        if cursor + global_batch > n_images:
            order, cursor = torch.randperm(n_images, generator=generator), 0
        idx = order[cursor : cursor + global_batch]
        cursor += global_batch
        yield idx, torch.randint(n_captions, (global_batch,), generator=generator)


def _data(n_train: int, seed: int):
    from clipcourse.course_model import training_data
    from clipcourse.models import MiniCLIPConfig
    from clipcourse.text import shapes_tokenizer
    from clipcourse.train import TrainConfig

    config = MiniCLIPConfig()
    images, ids, mask, _ = training_data(config, TrainConfig(n_train=n_train, seed=seed), shapes_tokenizer())
    return config, images, ids, mask


def train(args: argparse.Namespace) -> dict:
    """The training loop of one worker; returns the history (the same on every rank)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    from clipcourse.models import MiniCLIP

    rank, world, device = init_workers()
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(args.threads))
    config, images, ids, mask = _data(args.n_train, args.seed)
    torch.manual_seed(args.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = MiniCLIP(config).to(device).train()
    wrapped = DDP(Features(model), device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else None
    optimizer = make_optimizer(model, args.lr, args.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_schedule(s, args.steps, args.warmup))
    history = {"loss": [], "logit_scale": [], "step_s": []}
    batches = global_batches(len(images), ids.shape[1], world * args.local_batch, args.steps, args.seed)
    for idx, caption in batches:
        start = time.perf_counter()
        idx, caption = shard_batch(idx, rank, world), shard_batch(caption, rank, world)
        batch_ids, batch_mask = ids[idx, caption], mask[idx, caption]
        width = max(int(batch_mask.sum(1).max()), 1)  # drop all-padding columns (exact with a masked mean)
        batch = images[idx].to(device), batch_ids[:, :width].to(device), batch_mask[:, :width].to(device)
        optimizer.zero_grad(set_to_none=True)
        if wrapped is None:  # one process: Chapter 2's loss on the whole batch
            logits_per_image, _ = model(*batch)
            loss = clip_loss(logits_per_image)
        else:
            image_features, text_features, log_scale = wrapped(*batch)
            loss, _ = distributed_clip_loss(image_features, text_features, log_scale, local_loss=not args.global_loss,
                                            gather_with_grad=not args.no_gather_grad)
        loss.backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            clamp_logit_scale_(model.logit_scale)
        mean_loss = loss.detach().clone()
        if world > 1:  # the local losses average to the whole-batch loss
            dist.all_reduce(mean_loss)
            mean_loss /= world
        history["loss"].append(float(mean_loss))
        history["logit_scale"].append(float(model.logit_scale.detach().exp()))
        history["step_s"].append(time.perf_counter() - start)
    timed = history["step_s"][1:] or history["step_s"]  # the first step pays for warm-up
    history.update(
        world_size=world, local_batch=args.local_batch, global_batch=world * args.local_batch, steps=args.steps,
        backend=dist.get_backend() if dist.is_initialized() else "none", device=str(device),
        threads_per_worker=torch.get_num_threads() if device.type == "cpu" else 0,
        steps_per_s=len(timed) / sum(timed), local_loss=not args.global_loss, gather_with_grad=not args.no_gather_grad,
    )
    return history


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--local-batch", type=int, default=64, help="pairs per worker")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--n-train", type=int, default=1000, help="Shapes-world training images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per worker (at most)")
    parser.add_argument("--global-loss", action="store_true", help="every rank computes the whole-batch loss")
    parser.add_argument("--no-gather-grad", action="store_true", help="gather without gradients")
    parser.add_argument("--out", type=Path, default=Path("ddp_train.json"))
    args = parser.parse_args(argv)
    if args.steps < 1 or args.local_batch < 1:
        parser.error("--steps and --local-batch must be positive")
    try:
        history = train(args)
        if not dist.is_initialized() or dist.get_rank() == 0:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(history))
            print(f"{history['world_size']} worker(s) x {args.local_batch}: loss {history['loss'][0]:.3f} -> "
                  f"{history['loss'][-1]:.3f}, {history['steps_per_s']:.2f} steps/s")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
