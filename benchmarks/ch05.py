"""Chapter 5 figures: metrics checked against reference tools, their speed, and the chapter-2 model's evaluation card.

    python benchmarks/ch05.py               # 2 threads (the course's target machine), cached chapter-2 model
    python benchmarks/ch05.py --threads 16  # other thread counts

The last printed line is one JSON object:

* ``max_abs_diff_vs_reference``: the largest difference between ``clipcourse.metrics``
  and ``ir_measures`` (pytrec_eval backend) over R@k, P@k, success@k, nDCG@k (k = 1, 5,
  10), RR and AP, on 1,000 random tie-free queries of 100 items with graded relevance;
  ``max_abs_diff_vs_torchmetrics`` the same against torchmetrics on shifted scores
  (200 queries; it is slow one query at a time). Target: <= 1e-6.
* ``eval_5k_s``: the median time of all five graded metrics (recall@10, precision@10,
  RR, AP, nDCG@10, and the hit rate) on a 5,000 x 5,000 score matrix with exact-pair
  relevance, through ``ranking_metrics`` (one ranking for all); ``eval_5k_separate_s``
  the five functions called one after the other (each ranks again);
  ``eval_5k_dense_s`` with ~50 relevant items per query (the full-sort path);
  ``sort_5k_s`` one stable sort of the matrix, for scale on a busy machine. Target <= 1 s.
* ``text_to_image`` / ``image_to_text``: hit rate, recall, precision at K = 1, 5, 10, MRR,
  mAP (exact-pair relevance) and nDCG@10 (graded), each ``[mean, low, high]`` with a 95%
  bootstrap interval over images, on the 1,000-image test split (5,000 captions).
* ``robustness``: the change in text->image R@1 under each probe.
* ``latency``: text->image search (encode the query batch, score 1,000 images, top 10):
  p50/p95 ms per batch and queries per second at batch 1 and 256.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings

import torch

from clipcourse import course_model, evaluation, latency, metrics, robustness
from clipcourse.data import ShapesWorld
from clipcourse.reference_tools import ir_measures_metrics, torchmetrics_metrics
from clipcourse.retrieval import encode_split

PROBES = [("noise", 0.1), ("blur", 1.0), ("occlusion", 0.25), ("colour_shift", 0.2),
          ("synonyms", 1.0), ("word_order", 1.0), ("typos", 0.2)]


def agreement(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    scores = torch.rand(1000, 100, generator=g, dtype=torch.float64) * 2 - 1  # tie-free, some negative
    relevance = (torch.rand(1000, 100, generator=g) < 0.1).long() * torch.randint(1, 4, (1000, 100), generator=g)
    ours = metrics.ranking_metrics(scores, relevance, (1, 5, 10))
    ref = ir_measures_metrics(scores, relevance, (1, 5, 10))
    tm = torchmetrics_metrics(scores[:200], relevance[:200], (1, 5, 10), shift=True)
    return {
        "max_abs_diff_vs_reference": max(float((ours[k] - v).abs().max()) for k, v in ref.items()),
        "max_abs_diff_vs_torchmetrics": max(float((ours[k][:200] - v).abs().max()) for k, v in tm.items()),
        "reference_tool": "ir_measures (pytrec_eval)",
    }


def speed(repeats: int = 3) -> dict:
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(5000, 5000, generator=g)
    pair = torch.eye(5000)
    dense = (torch.rand(5000, 5000, generator=g) < 0.01).float()

    def five(rel):
        return lambda: (metrics.recall_at_k(scores, rel, 10), metrics.precision_at_k(scores, rel, 10),
                        metrics.reciprocal_rank(scores, rel), metrics.average_precision(scores, rel),
                        metrics.ndcg_at_k(scores, rel, 10))

    def seconds(fn) -> float:
        return latency.measure_latency(fn, warmup=1, repeats=repeats).p50_ms / 1000

    return {
        "eval_5k_s": seconds(lambda: metrics.ranking_metrics(scores, pair, (10,))),
        "eval_5k_separate_s": seconds(five(pair)),
        "eval_5k_dense_s": seconds(lambda: metrics.ranking_metrics(scores, dense, (10,))),
        # one stable sort of the same matrix: the floor of any full-ranking method, to scale the figures above
        "sort_5k_s": seconds(lambda: torch.sort(scores, dim=1, descending=True, stable=True)),
    }


def card(clip, split) -> dict:
    emb = encode_split(clip.model, clip.tokenizer, split)
    tasks = evaluation.retrieval_tasks(emb, split)
    out = {}
    for key, name in (("text_to_image", "text→image"), ("image_to_text", "image→text")):
        result = evaluation.evaluate_task(tasks[name], (1, 5, 10))
        flat = {m: iv for m, iv in result["pair"].items()} | {"nDCG@10": result["graded"]["nDCG@10"]}
        out[key] = {m: [round(iv.mean, 4), round(iv.low, 4), round(iv.high, 4)] for m, iv in flat.items()}
    return out, emb, tasks


def robust(clip, split, emb, n: int = 500) -> dict:
    images = split.float_images()[:n]
    texts = [caps[0].text for caps in split.captions[:n]]
    own = torch.eye(n, dtype=torch.bool)

    def r_at_1(text_features, image_features):
        return float(metrics.hit_rate_at_k(text_features @ image_features.T, own, 1).mean())

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # typos make a few captions longer than the context: truncated, as intended
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rows = robustness.robustness_table(r_at_1, clip.encode_image, clip.encode_text, images, texts, PROBES)
    return {"clean_t2i_R@1": rows[0].clean} | {f"{r.kind}_{r.strength:g}": round(r.delta, 4) for r in rows}


def timing(clip, emb) -> dict:
    texts = [c.text for c in emb.captions]
    curve = latency.throughput_curve(
        lambda b: evaluation.search_call(clip.encode_text, texts, emb.image_features, b), [1, 256],
        warmup=3, repeats=30, max_seconds=10,
    )
    return {f"batch_{s.batch_size}": {"p50_ms": s.p50_ms, "p95_ms": s.p95_ms, "qps": s.items_per_s} for s in curve}


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start = time.perf_counter()
    result = agreement()
    print(f"agreement: {result}")
    result |= speed()
    print(f"speed: eval_5k_s={result['eval_5k_s']:.3f}, separate calls {result['eval_5k_separate_s']:.3f}, "
          f"dense {result['eval_5k_dense_s']:.3f}, one sort {result['sort_5k_s']:.3f}")
    clip = course_model.mini_clip(progress=False)
    split = ShapesWorld(seed=clip.world_seed).split("test")
    figures, emb, _ = card(clip, split)
    result |= figures
    for key in ("text_to_image", "image_to_text"):
        print(key, {m: v[0] for m, v in figures[key].items()})
    result["robustness"] = robust(clip, split, emb)
    print("robustness (delta R@1):", result["robustness"])
    result["latency"] = timing(clip, emb)
    print("latency:", result["latency"])
    result |= {
        "torch_threads": torch.get_num_threads(),
        "load_average": list(os.getloadavg()),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "total_s": time.perf_counter() - start,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
