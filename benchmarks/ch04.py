"""Chapter 4 figures: distil the chapter-2 MiniCLIP into a small student, quantise it, prune it.

    python benchmarks/ch04.py [steps]     # default 300 steps per student; cached students are reused

The teacher is the cached chapter-2 model. The student (SmallCNN width 8, one 32-wide
transformer layer, 22 % of the teacher's parameters) is trained for the same budget from
scratch and by distillation (CLIP loss + affinity + feature distillation, weights inherited
from the teacher), over 3 seeds, then each ingredient alone on seed 0. Then the levers on
the teacher: int8 weights (per-row, from first principles), torch.ao dynamic int8,
torch.nn.utils.prune masks, and channel pruning followed by a short distillation fine-tune.
Latency: the image encoder (what runs per query), p50/p95 at batch 1 and 64, after warm-up.

Targets on a 2-core laptop CPU: student <= 1/4 of the teacher's parameters; >= 3x the
teacher's throughput at batch 64; >= 95 % of its unseen zero-shot top-1; trained in <= 90 s;
int8 weights >= 3x smaller with <= 1 point lost. The last printed line is one JSON object.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

import torch

from clipcourse.course_model import mini_clip
from clipcourse.data import ShapesWorld
from clipcourse.device import cpu_threads
from clipcourse.distill import DistillConfig, distill_model, distilled_student
from clipcourse.model_report import compression_card, model_report, unseen_evaluator
from clipcourse.prune import mask_prune, prune_channels
from clipcourse.quantize import dynamic_quantize, int8_backend, quantize_model_int8
from clipcourse.train import TrainConfig

SCRATCH = DistillConfig(affinity=0.0, feature=0.0)
DISTILLED = DistillConfig(inherit=True)
SINGLE = {
    "affinity only": DistillConfig(clip=0.0, feature=0.0),
    "feature only": DistillConfig(clip=0.0, affinity=0.0),
    "inheritance + CLIP loss": DistillConfig(affinity=0.0, feature=0.0, inherit=True),
    "CLIP + affinity + feature": DistillConfig(),
}


def recipe(steps: int, seed: int) -> TrainConfig:
    return TrainConfig(steps=steps, warmup_steps=max(1, steps // 10), seed=seed)


def main(steps: int = 300) -> dict:
    t0 = time.perf_counter()
    teacher = mini_clip(progress=False)
    evaluate = unseen_evaluator(teacher.tokenizer, world_seed=teacher.world_seed)
    top1 = {"teacher": evaluate(teacher.model)["unseen_top1"]}

    runs: dict[str, list] = {"scratch": [], "distilled": []}
    for seed in (0, 1, 2):
        for name, weights in (("scratch", SCRATCH), ("distilled", DISTILLED)):
            clip = distilled_student(weights, recipe(steps, seed), teacher=teacher, progress=False)
            runs[name].append((clip, evaluate(clip.model)["unseen_top1"]))
    single = {}
    for name, weights in SINGLE.items():
        clip = distilled_student(weights, recipe(steps, 0), teacher=teacher, progress=False)
        single[name] = evaluate(clip.model)["unseen_top1"]

    torch.set_num_threads(cpu_threads(2))
    images = ShapesWorld(seed=0).split("test").float_images()[:64]
    student_s, student_d = runs["scratch"][0][0].model, runs["distilled"][0][0].model
    int8_model, packed = quantize_model_int8(teacher.model)
    dynamic = dynamic_quantize(teacher.model)
    masked = mask_prune(teacher.model, 0.5)
    pruned = prune_channels(teacher.model, 0.5)
    pruned_before = evaluate(pruned)["unseen_top1"]
    ft = distill_model(pruned, teacher, recipe(steps // 2, 0), DistillConfig(), progress=False)
    models = [
        ("teacher", teacher.model, None), ("student, scratch", student_s, None), ("student, distilled", student_d, None),
        ("teacher, int8 weights", int8_model, packed), ("teacher, dynamic int8 (torch.ao)", dynamic, None),
        ("teacher, 50% masked", masked, None), ("teacher, 50% channels pruned + fine-tune", pruned, None),
        ("distilled student, int8 weights", *quantize_model_int8(student_d)),
    ]
    rows = [model_report(n, m, images, accuracy=evaluate(m)["unseen_top1"], state=s, repeats=30) for n, m, s in models]
    card = {r["name"]: r for r in compression_card(rows, "teacher")}

    def mean_sd(values):
        return statistics.mean(values), statistics.stdev(values)

    scratch, distilled = mean_sd([a for _, a in runs["scratch"]]), mean_sd([a for _, a in runs["distilled"]])
    print(f"teacher: {teacher.model.num_parameters():,} parameters, unseen zero-shot top-1 {top1['teacher']:.3f}")
    print(f"student ({student_d.num_parameters():,} parameters), {steps} steps, 3 seeds: "
          f"scratch {scratch[0]:.3f} ± {scratch[1]:.3f}, distilled {distilled[0]:.3f} ± {distilled[1]:.3f}")
    for name, acc in single.items():
        print(f"  seed 0, {name:<28} {acc:.3f}")
    print(f"pruned 50% channels: {pruned_before:.3f} before and {card['teacher, 50% channels pruned + fine-tune']['unseen_top1']:.3f} "
          f"after {steps // 2} distillation steps ({ft.train_s:.1f} s)\n")
    print(f"{'model':<42}{'params':>9}{'MB':>8}{'p50/p95 b1 ms':>16}{'p50/p95 b64 ms':>17}{'img/s b64':>11}{'x b64':>7}{'top-1':>7}")
    for r in card.values():
        print(f"{r['name']:<42}{r['params']:>9,}{r['size_mb']:>8.3f}{r['p50_ms_b1']:>8.2f}/{r['p95_ms_b1']:<7.2f}"
              f"{r['p50_ms_b64']:>9.1f}/{r['p95_ms_b64']:<7.1f}{r['items_per_s_b64']:>11,.0f}{r['speedup_b64']:>7.2f}"
              f"{r['unseen_top1']:>7.3f}")

    d, t = card["student, distilled"], card["teacher"]
    result = {
        "teacher_params": t["params"],
        "student_params": d["params"],
        "teacher_unseen_top1": round(t["unseen_top1"], 4),
        "student_scratch_unseen_top1": round(scratch[0], 4),
        "student_scratch_unseen_top1_sd": round(scratch[1], 4),
        "student_distilled_unseen_top1": round(distilled[0], 4),
        "student_distilled_unseen_top1_sd": round(distilled[1], 4),
        "student_distilled_seeds": [round(a, 4) for _, a in runs["distilled"]],
        "student_scratch_seeds": [round(a, 4) for _, a in runs["scratch"]],
        "single_losses_seed0": {k: round(v, 4) for k, v in single.items()},
        "steps": steps,
        "speedup_batch64": round(d["speedup_b64"], 2),
        "speedup_batch1": round(d["speedup_b1"], 2),
        "int8_size_ratio": round(card["teacher, int8 weights"]["size_ratio"], 2),
        "int8_unseen_top1": round(card["teacher, int8 weights"]["unseen_top1"], 4),
        "dynamic_int8_speedup_batch64": round(card["teacher, dynamic int8 (torch.ao)"]["speedup_b64"], 2),
        "masked_speedup_batch64": round(card["teacher, 50% masked"]["speedup_b64"], 2),
        "pruned_params": card["teacher, 50% channels pruned + fine-tune"]["params"],
        "pruned_speedup": round(card["teacher, 50% channels pruned + fine-tune"]["speedup_b64"], 2),
        "pruned_unseen_top1_before_finetune": round(pruned_before, 4),
        "pruned_unseen_top1": round(card["teacher, 50% channels pruned + fine-tune"]["unseen_top1"], 4),
        "train_s": round(runs["distilled"][0][0].history.train_s, 2),
        "train_s_scratch": round(runs["scratch"][0][0].history.train_s, 2),
        "int8_backend": int8_backend(),
        "threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "total_s": round(time.perf_counter() - t0, 1),
    }
    result["meets_targets"] = bool(
        result["student_params"] * 4 <= result["teacher_params"]
        and result["speedup_batch64"] >= 3
        and result["student_distilled_unseen_top1"] >= 0.95 * result["teacher_unseen_top1"]
        and result["train_s"] <= 90
        and result["int8_size_ratio"] >= 3
        and result["int8_unseen_top1"] >= result["teacher_unseen_top1"] - 0.01
    )
    print(f"load average {result['load_average']}; targets {'met' if result['meets_targets'] else 'NOT all met'}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
