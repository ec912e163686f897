"""Chapter 8 figures: the distributed loss against one process, and DDP throughput on this CPU.

    python benchmarks/ch08.py            # about two minutes on a 2-core laptop

1. ``clipcourse.verify_gather`` on 2 gloo workers × 4 pairs, float64, against one process ×
   8 pairs: for local/global loss × with/without gradients through the gather, the loss
   difference, the largest gradient difference, and the factor the encoder gradients are off by.
2. ``clipcourse.ddp_train``: MiniCLIP, 2 workers × 64 pairs (one thread each) against one
   process × 128 pairs (two threads: the same two cores), 30 steps, not cached.

Target: the correct combination (local loss, gradients through the gather) matches one process
in loss and every gradient to at most 1e-6. Throughput is reported whichever way it comes out.
The last printed line is one JSON object.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from clipcourse.distributed import run_torchrun

TARGETS = {"max_grad_diff_local_with_grad": 1e-6}


def main() -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="bench_ch08_"))
    load_before = os.getloadavg()
    start = time.perf_counter()
    verify = run_torchrun("clipcourse.verify_gather", ["--local-batch", 4], scratch / "verify.json", nproc=2, timeout=600)
    rows = verify["combinations"]
    common = ["--steps", 30, "--n-train", 1000]
    ddp = run_torchrun("clipcourse.ddp_train", [*common, "--local-batch", 64, "--threads", 1], scratch / "ddp.json",
                       nproc=2, timeout=900)
    single = run_torchrun("clipcourse.ddp_train", [*common, "--local-batch", 128, "--threads", 2],
                          scratch / "single.json", nproc=1, timeout=900, threads=2)
    result = {
        "max_grad_diff_local_with_grad": rows["local_with_grad"]["max_grad_diff"],
        "loss_diff_local_with_grad": rows["local_with_grad"]["loss_diff"],
        "max_grad_diff_global_with_grad": rows["global_with_grad"]["max_grad_diff"],
        "factor_global_with_grad": round(rows["global_with_grad"]["encoder_grad_factor"], 4),
        "factor_global_no_grad": round(rows["global_no_grad"]["encoder_grad_factor"], 4),
        "factor_local_no_grad": round(rows["local_no_grad"]["encoder_grad_factor"], 4),
        "cosine_local_no_grad": round(rows["local_no_grad"]["encoder_grad_cosine"], 4),
        "logits_bytes_local": rows["local_with_grad"]["logits_bytes_per_rank"],
        "logits_bytes_global": rows["global_with_grad"]["logits_bytes_per_rank"],
        "ddp_steps_per_s": round(ddp["steps_per_s"], 3),
        "single_steps_per_s": round(single["steps_per_s"], 3),
        "ddp_threads_per_worker": ddp["threads_per_worker"],
        "single_threads": single["threads_per_worker"],
        "max_loss_curve_gap": max(abs(a - b) for a, b in zip(ddp["loss"], single["loss"])),
        "world_size": verify["world_size"],
        "backend": ddp["backend"],
        "total_s": round(time.perf_counter() - start, 1),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "cpu_count": os.cpu_count(),
    }
    result["meets_targets"] = result["max_grad_diff_local_with_grad"] <= TARGETS["max_grad_diff_local_with_grad"]

    print(f"{verify['world_size']} gloo workers x {verify['local_batch']} pairs vs 1 process, float64")
    print("combination        loss |Δ|   max grad |Δ|  encoder factor  cosine")
    for name, r in rows.items():
        print(f"{name:17s}  {r['loss_diff']:.1e}    {r['max_grad_diff']:.1e}       {r['encoder_grad_factor']:7.3f}"
              f"      {r['encoder_grad_cosine']:.3f}")
    print(f"\nMiniCLIP, 30 steps: 2 workers x 64 ({result['ddp_threads_per_worker']} thread each) "
          f"{result['ddp_steps_per_s']:.2f} steps/s; 1 process x 128 ({result['single_threads']} threads) "
          f"{result['single_steps_per_s']:.2f} steps/s; loss curves differ by at most {result['max_loss_curve_gap']:.1e}")
    print(f"load average before {result['load_average_before']}, after {result['load_average_after']}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
