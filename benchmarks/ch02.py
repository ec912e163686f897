"""Chapter 2 figures: train the default MiniCLIP from scratch, then retrieve on the test split.

    python benchmarks/ch02.py            # trains afresh (and refreshes the weight cache)

Text→image retrieval on Shapes world's test split (1,000 images, 5 captions each), under
two relevance definitions: the caption's own image ("pair") and any image with every
attribute the caption mentions ("attribute"). hit@K counts a query as a hit when any relevant
image is in its top K (what the CLIP papers call R@K; not recall); P@K is the relevant share of the top K.
Also the zero-shot accuracy on the held-out colour×shape combinations (chapter 3's target).

Targets on a 2-core laptop CPU: training <= 90 s; attribute P@1 >= 0.95; zero-shot
top-1 on test_unseen >= 0.95. The last printed line is one JSON object.
"""

from __future__ import annotations

import json
import platform
import time

import torch

from clipcourse import course_model
from clipcourse.data import ALL_CLASSES, ShapesWorld, class_name
from clipcourse.metrics import top_k_accuracy
from clipcourse.retrieval import encode_images, encode_split, text_to_image_metrics
from clipcourse.zeroshot import build_zero_shot_weights, zero_shot_logits

TARGETS = {"train_s": 90.0, "t2i_p1_attr": 0.95, "zeroshot_unseen_top1": 0.95}


def zero_shot_top1(clip, split, template: str) -> float:
    """Classify every image among all 30 colour×shape classes with one prompt template."""
    classnames = [class_name(c, s) for c, s in ALL_CLASSES]
    weights = build_zero_shot_weights(clip.encode_text, classnames, [template])
    logits = zero_shot_logits(encode_images(clip.model, split.images), weights, 1.0)
    return top_k_accuracy(logits, split.labels())


def main() -> dict:
    start = time.perf_counter()
    clip = course_model.mini_clip(retrain=True, progress=False)
    total_s = time.perf_counter() - start
    model, tokenizer, history = clip.model, clip.tokenizer, clip.history

    world = ShapesWorld(seed=clip.world_seed, image_size=clip.config.image_size)
    test = world.split("test")
    metrics = text_to_image_metrics(encode_split(model, tokenizer, test), test, ks=(1, 5, 10))
    unseen = world.split("test_unseen")
    zeroshot = {t: zero_shot_top1(clip, unseen, t) for t in ("a photo of a {}", "a photo of a {}.")}
    seen_test = zero_shot_top1(clip, test, "a photo of a {}")

    result = {
        "train_s": round(history.train_s, 2),
        "total_s": round(total_s, 2),
        "steps": len(history),
        "steps_per_s": round(len(history) / history.train_s, 2),
        "batch_size": clip.train_config.batch_size,
        "params": model.num_parameters(),
        "final_loss": round(sum(history.loss[-20:]) / min(20, len(history)), 4),
        "final_scale": round(history.scale[-1], 2),
        **{f"t2i_{k.lower().replace('@', '')}_{rel[:4]}": round(v, 4)
           for rel, values in metrics.items() for k, v in values.items()},
        "zeroshot_unseen_top1": round(zeroshot["a photo of a {}"], 4),
        "zeroshot_unseen_top1_period": round(zeroshot["a photo of a {}."], 4),
        "zeroshot_test_top1": round(seen_test, 4),
        "config_hash": clip.config.hash(),
        "cache_folder": clip.path.name if clip.path else None,
        "device": history.device,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
    }
    result["meets_targets"] = (
        result["train_s"] <= TARGETS["train_s"]
        and result["t2i_p1_attr"] >= TARGETS["t2i_p1_attr"]
        and result["zeroshot_unseen_top1"] >= TARGETS["zeroshot_unseen_top1"]
    )

    print(f"MiniCLIP: {result['params']:,} parameters, {result['steps']} steps of {result['batch_size']} pairs "
          f"in {result['train_s']:.1f} s ({result['steps_per_s']:.1f} steps/s; {total_s:.1f} s with data)")
    print(f"final loss {result['final_loss']:.3f}, scale {result['final_scale']:.1f}\n")
    print("text→image on the test split   hit@1   hit@5   hit@10    P@1     P@5     P@10")
    for rel, values in metrics.items():
        row = "  ".join(f"{values[k]:.4f}" for k in ("hit@1", "hit@5", "hit@10", "P@1", "P@5", "P@10"))
        print(f"  {rel + ' relevance':<29}{row}")
    print(f"\nzero-shot top-1 on unseen colour×shape pairs (30 classes): {result['zeroshot_unseen_top1']:.4f} "
          f"('a photo of a {{}}'), {result['zeroshot_unseen_top1_period']:.4f} (with a final period)")
    print(f"targets {TARGETS}: {'met' if result['meets_targets'] else 'NOT met'}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
