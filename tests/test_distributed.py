"""Chapter 8: the gathered CLIP loss, checked by slicing in one process and on 2 real gloo workers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from clipcourse.clip import clip_logits, clip_loss
from clipcourse.ddp_train import global_batches
from clipcourse.distributed import (
    distributed_clip_loss,
    gather_features,
    gathered_clip_loss,
    global_clip_loss,
    logits_memory,
    shard_batch,
    torchrun_command,
)


def _features(total=6, dim=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = F.normalize(torch.randn(total, dim, generator=g, dtype=torch.float64), dim=-1)
    texts = F.normalize(torch.randn(total, dim, generator=g, dtype=torch.float64), dim=-1)
    return images, texts


def test_one_worker_is_chapter_two():
    images, texts = _features()
    log_scale = torch.tensor(math.log(12.0), dtype=torch.float64)
    assert gather_features(images, texts) == (images, texts)
    expected = clip_loss(clip_logits(images, texts, log_scale)[0])
    torch.testing.assert_close(gathered_clip_loss(images, texts, images, texts, log_scale, 0), expected)
    loss, elements = distributed_clip_loss(3 * images, texts, log_scale)  # normalises its inputs
    torch.testing.assert_close(loss, expected)
    assert elements == 2 * 6 * 6


@pytest.mark.parametrize("world", [2, 3])
def test_simulated_ranks_with_gradients_match_one_process(world):
    images, texts = _features(total=2 * world)
    n = 2
    leaf_i, leaf_t = images.clone().requires_grad_(), texts.clone().requires_grad_()
    scale = torch.tensor(math.log(20.0), dtype=torch.float64, requires_grad=True)
    losses = [gathered_clip_loss(leaf_i[r * n:(r + 1) * n], leaf_t[r * n:(r + 1) * n], leaf_i, leaf_t, scale, r)
              for r in range(world)]
    (sum(losses) / world).backward()  # DDP's average of the ranks' gradients
    ref_i, ref_t = images.clone().requires_grad_(), texts.clone().requires_grad_()
    ref_scale = torch.tensor(math.log(20.0), dtype=torch.float64, requires_grad=True)
    reference = global_clip_loss(ref_i, ref_t, ref_scale)
    reference.backward()
    torch.testing.assert_close(sum(losses) / world, reference)
    torch.testing.assert_close(leaf_i.grad, ref_i.grad)
    torch.testing.assert_close(leaf_t.grad, ref_t.grad)
    torch.testing.assert_close(scale.grad, ref_scale.grad)


def test_rank_offset_matters():
    images, texts = _features()
    right = gathered_clip_loss(images[3:], texts[3:], images, texts, 0.0, 1)
    no_offset = gathered_clip_loss(images[3:], texts[3:], images, texts, 0.0, 0)
    assert not torch.allclose(right, no_offset)


def test_global_loss_without_gather_gradients_is_off_by_world_size():
    world, n = 2, 3
    images, texts = _features(total=world * n)
    grads = torch.zeros_like(images)
    for r in range(world):  # each rank: constants from the others, its own slot on the graph
        mine = images[r * n:(r + 1) * n].clone().requires_grad_()
        all_images = torch.cat([mine if s == r else images[s * n:(s + 1) * n] for s in range(world)])
        global_clip_loss(all_images, texts, 1.0).backward()
        grads[r * n:(r + 1) * n] = mine.grad / world  # DDP averages
    leaf = images.clone().requires_grad_()
    global_clip_loss(leaf, texts, 1.0).backward()
    torch.testing.assert_close(grads * world, leaf.grad)


def test_bad_inputs_raise():
    images, texts = _features()
    with pytest.raises(ValueError, match="multiple"):
        gathered_clip_loss(images[:4], texts[:4], images, texts, 0.0, 0)
    with pytest.raises(ValueError, match="rank"):
        gathered_clip_loss(images[:3], texts[:3], images, texts, 0.0, 2)
    with pytest.raises(ValueError, match="rank"):
        gathered_clip_loss(images[:3], texts[:3], images, texts, 0.0, -1)
    with pytest.raises(ValueError):
        gather_features(images, texts[:2])
    with pytest.raises(ValueError):
        shard_batch(torch.arange(5), 0, 2)
    with pytest.raises(ValueError):
        logits_memory(0, 2)


def test_memory_sharding_and_batches():
    memory = logits_memory(128, 256)
    assert memory["global_batch"] == 32768 and memory["ratio"] == 256
    assert memory["local_bytes"] == 2 * 128 * 32768 * 4
    idx = torch.arange(12)
    assert torch.equal(torch.cat([shard_batch(idx, r, 3) for r in range(3)]), idx)
    first, second = list(global_batches(10, 5, 4, 3, seed=1)), list(global_batches(10, 5, 4, 3, seed=1))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, second))
    assert len(set(torch.cat([b[0] for b in first[:2]]).tolist())) == 8  # no repeats within an epoch
    command = torchrun_command("clipcourse.ddp_train", ["--steps", 2])
    assert command[1:4] == ["-m", "torch.distributed.run", "--standalone"] and command[-1] == "2"


def _right(local_image_features, local_text_features, all_image_features, all_text_features, logit_scale, rank):
    return gathered_clip_loss(local_image_features, local_text_features, all_image_features, all_text_features,
                              logit_scale, rank)


def _no_offset(local_image_features, local_text_features, all_image_features, all_text_features, logit_scale, rank):
    return gathered_clip_loss(local_image_features, local_text_features, all_image_features, all_text_features,
                              logit_scale, 0)


def _on_two_workers(function, tmp_path):
    import inspect

    from clipcourse.distributed import run_local_workers

    source = tmp_path / f"{function.__name__}.py"
    source.write_text("from clipcourse.distributed import gathered_clip_loss\n" + inspect.getsource(function))
    return run_local_workers("clipcourse.verify_gather", ["--loss-source", source, "--loss-name", function.__name__],
                             tmp_path / "out.json", timeout=60)


def test_two_real_gloo_workers(tmp_path):
    """Two processes, gloo on localhost: the reference matches one process; a wrong offset does not."""
    right = _on_two_workers(_right, tmp_path)
    assert right["world_size"] == 2
    assert right["max_grad_diff"] < 1e-12 and right["loss_diff"] < 1e-12 and right["logit_scale_grad_diff"] < 1e-12
    wrong = _on_two_workers(_no_offset, tmp_path)
    assert wrong["rank_loss_diff"] > 1e-3 and wrong["max_grad_diff"] > 1e-3


def test_ddp_loss_multiplier_matches_the_verification():
    from clipcourse.distributed import ddp_loss_multiplier

    assert ddp_loss_multiplier(4, True, True) == ddp_loss_multiplier(4, False, True) == 1.0
    assert ddp_loss_multiplier(4, False, False) == 4.0
    assert ddp_loss_multiplier(1, True, False) == 1.0
    for bad in (0, -2, 2.0):
        with pytest.raises(ValueError):
            ddp_loss_multiplier(bad, True, True)
    with pytest.raises(ValueError, match="no constant"):
        ddp_loss_multiplier(2, True, False)


def test_a_launch_past_its_timeout_is_killed(tmp_path):
    from clipcourse.distributed import run_local_workers

    with pytest.raises(TimeoutError):
        run_local_workers("clipcourse.verify_gather", [], tmp_path / "out.json", timeout=0.2)
