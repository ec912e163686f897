"""The visible check cells of every exercise, as a learner meets them (run in-process, no kernel).

An untouched stub prints one ``[TODO]`` line and nothing else; wrong answers that
are not in the mistake catalogue get a hint that says what differs, and a failure
does not cascade into the checks that depend on it.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import nbformat
import pytest

from clipcourse.checks import CheckFailed

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # runs the exercise notebooks' cells (in-process: seconds each)


def _cells(chapter: str) -> list[tuple[str, str]]:
    nb = nbformat.read(REPO / "solutions" / chapter / f"{chapter}_exercises.ipynb", as_version=4)
    return [(c.metadata.get("nbgrader", {}).get("grade_id", ""), c.source) for c in nb.cells if c.cell_type == "code"]


def _graded(chapter: str) -> list[str]:
    return [gid[len("test_"):] for gid, _ in _cells(chapter) if gid.startswith("test_")]


def _run(chapter: str, function: str, answer: str | None) -> tuple[str, BaseException | None]:
    """Run the set-up, the answers (``answer`` replaces ``function``'s) and the visible part of its test cell."""
    namespace: dict = {}
    out = io.StringIO()
    error = None
    with contextlib.redirect_stdout(out):
        for gid, source in _cells(chapter):
            if gid.startswith("test_") and gid != f"test_{function}":
                continue
            if gid == function:
                source = answer if answer is not None else re.sub(
                    r"### BEGIN SOLUTION.*?### END SOLUTION", "# YOUR CODE HERE\n    raise NotImplementedError()", source, flags=re.S
                )  # fmt: skip
            source = source.split("### BEGIN HIDDEN TESTS")[0]
            try:
                exec(compile(source, f"<cell {gid}>", "exec"), namespace)  # noqa: S102 - the course's own notebook
            except CheckFailed as exc:
                error = exc
            if gid == f"test_{function}":
                break
    return out.getvalue(), error


CASES = [(chapter, function) for chapter in ("ch01", "ch02", "ch03") for function in _graded(chapter)]


@pytest.mark.parametrize(("chapter", "function"), CASES, ids=[f"{c}-{f}" for c, f in CASES])
def test_an_untouched_stub_says_once_that_it_is_not_written(chapter, function):
    out, error = _run(chapter, function, None)
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert lines == [f"[TODO] {function}: {function} is not written yet: replace `raise NotImplementedError()` "
                     "in it with your code, run that cell, then run this one again"], out  # fmt: skip
    assert error is not None and "not written yet" in str(error)


WRONG = {
    "transposed cosines": (
        "ch01", "cosine_similarity_matrix",
        "def cosine_similarity_matrix(a, b):\n    return F.normalize(b, dim=1) @ F.normalize(a, dim=1).T\n",
        ["dimension 0 is 3 instead of 2", "[skip] cosine_similarity_matrix: values match the reference (needs: shape is (2, 3))"],
    ),
    "temperature squared": (
        "ch01", "info_nce_loss",
        "def info_nce_loss(queries, keys, temperature):\n"
        "    q, k = F.normalize(queries, dim=1), F.normalize(keys, dim=1)\n"
        "    return F.cross_entropy(q @ k.T / temperature**2, torch.arange(len(q)))\n",
        ["(largest difference 0.0133, tolerance 1e-05 + 0.0001 x |expected|)", "got 0.443035, expected 0.429713"],
    ),
    "logits_per_text not transposed": (
        "ch02", "clip_logits",
        "def clip_logits(image_features, text_features, logit_scale):\n"
        "    i, t = F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1)\n"
        "    logits = logit_scale.exp().clamp(max=100) * i @ t.T\n"
        "    return logits, logits\n",
        ["[pass] clip_logits: values match the reference", "[skip] clip_logits: logits_per_text is the transpose (needs: shape is (2, 3))"],
    ),
    "a shape error inside the learner's function": (
        "ch02", "masked_mean_pool",
        "def masked_mean_pool(hidden_states, attention_mask):\n"
        "    total = (hidden_states * attention_mask).sum(dim=1)\n"
        "    return total / attention_mask.sum(dim=1, keepdim=True)\n",
        ["RuntimeError in masked_mean_pool, line 2"],
    ),
    "probabilities transposed": (
        "ch03", "zero_shot_probabilities",
        "def zero_shot_probabilities(image_features, class_weights, logit_scale):\n"
        "    return (logit_scale * F.normalize(image_features, dim=-1) @ class_weights).softmax(-1).T\n",
        ["got shape (5, 4): dimension 0 is 5 instead of 4, dimension 1 is 4 instead of 5"],
    ),
    "re-wrapped logit_scale": (
        "ch02", "train_step",
        "def train_step(model, images, input_ids, attention_mask, optimizer):\n"
        "    optimizer.zero_grad()\n"
        "    loss = clip_loss(model(images, input_ids, attention_mask)[0])\n"
        "    loss.backward()\n"
        "    optimizer.step()\n"
        "    model.logit_scale = nn.Parameter(model.logit_scale.detach().clamp(0, math.log(100)))\n"
        "    return loss.item()\n",
        ["logit_scale became a new object", "never model.logit_scale = nn.Parameter"],
    ),
    "a stub train_step gives no false pass": (
        "ch02", "train_step",
        "def train_step(model, images, input_ids, attention_mask, optimizer):\n"
        "    optimizer.zero_grad()\n"
        "    return float(clip_loss(model(images, input_ids, attention_mask)[0]))\n",
        ["[FAIL] train_step: the optimizer changed the weights", "[skip] train_step: old gradients were cleared first"],
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(WRONG), ids=list(WRONG))
def test_wrong_answers_outside_the_catalogue_get_measured_hints(case):
    chapter, function, answer, expected = WRONG[case]
    out, error = _run(chapter, function, answer)
    assert error is not None, out
    for text in expected:
        assert text in out, f"{text!r} not in:\n{out}"
