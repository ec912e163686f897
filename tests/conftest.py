"""Shared fixtures: a private model cache, the repository root, and helpers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `autograder` is a folder of the repo, not an installed package

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # in-process plotting tests; not exported, so notebook kernels keep inline figures


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def built_book(tmp_path_factory, worker_id) -> Path:
    """Build the whole book once, warnings as errors, executing every lesson notebook; its `_build` folder.

    Once per test run, also under pytest-xdist: the workers share one folder of this run and a
    file lock, so the first worker that needs the book builds it and the others wait and reuse it.
    ``CLIPCOURSE_BUILT_BOOK=path/to/_build`` reuses a book built before (while working on these tests).
    """
    reuse = os.environ.get("CLIPCOURSE_BUILT_BOOK")
    if reuse:
        return Path(reuse)
    if worker_id == "master":  # not distributed
        return _build_book(tmp_path_factory.mktemp("book"))
    import fcntl

    out = tmp_path_factory.getbasetemp().parent / "book"  # this run's folder, shared by its workers
    out.mkdir(exist_ok=True)
    with open(out.parent / "book.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        failed = out / "failed.txt"
        if failed.exists():
            pytest.fail(failed.read_text(), pytrace=False)
        if (out / "built.ok").exists():
            return out / "_build"
        try:
            built = _build_book(out)
        except AssertionError as error:
            failed.write_text(str(error))
            raise
        (out / "built.ok").write_text("ok")
        return built


def _build_book(out: Path) -> Path:
    jb = Path(sys.executable).parent / "jupyter-book"
    start = time.perf_counter()
    result = subprocess.run(
        [str(jb), "build", str(REPO), "--path-output", str(out), "--warningiserror", "--keep-going"],
        capture_output=True,
        text=True,
        # no MPLBACKEND: the kernels' inline backend must capture the lessons' figures
        env={k: v for k, v in os.environ.items() if k != "MPLBACKEND"},
    )
    seconds = time.perf_counter() - start
    assert result.returncode == 0, f"book build failed after {seconds:.0f} s:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    return out / "_build"


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A tiny transformers CLIPModel and processor saved to a folder: the Colab paths, offline."""
    import torch
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    chars = sorted(ByteLevel.alphabet())
    tokens = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    vocab = {t: i for i, t in enumerate(tokens)}
    folder = tmp_path_factory.mktemp("tiny_clip")
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=32, bos_token_id=0, eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=dict(
            hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
            image_size=32, patch_size=8,
        ),
        projection_dim=8,
    )  # fmt: skip
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    tokenizer = _tiny_clip_tokenizer(CLIPTokenizer, vocab, folder)
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def _tiny_clip_tokenizer(tokenizer_class, vocab: dict[str, int], folder: Path):
    """A CLIP tokenizer without merges, built the way the installed transformers takes it.

    transformers 5 builds it from a vocabulary dict; 4.x only reads ``vocab.json`` and ``merges.txt``.
    """
    import inspect
    import json

    if "vocab_file" not in inspect.signature(tokenizer_class.__init__).parameters:
        return tokenizer_class(vocab=vocab, merges=[])  # transformers 5
    vocab_file, merges_file = folder / "tokenizer_vocab.json", folder / "tokenizer_merges.txt"
    vocab_file.write_text(json.dumps(vocab))
    merges_file.write_text("#version: 0.2\n")
    return tokenizer_class(vocab_file=str(vocab_file), merges_file=str(merges_file))  # transformers 4.x
