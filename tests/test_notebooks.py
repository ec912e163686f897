"""Every notebook follows the course conventions; the book builds with every lesson executed."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
import yaml

from clipcourse.colab import BOOTSTRAP_CELL

REPO = Path(__file__).resolve().parent.parent
LESSONS = sorted(REPO.glob("book/**/*.ipynb"))
EXERCISES = sorted(REPO.glob("solutions/*/*.ipynb")) + sorted(REPO.glob("notebooks/*/*.ipynb"))
ALL = LESSONS + EXERCISES


def _toc_files() -> set[str]:
    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                yield node["file"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    return {toc["root"], *walk(toc.get("parts", []))}


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


@pytest.mark.parametrize("path", ALL, ids=_rel)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{_rel(path)}: cells {dirty} have outputs; notebooks are source (clear them)"


@pytest.mark.parametrize("path", ALL, ids=_rel)
def test_first_code_cell_is_the_colab_bootstrap(path):
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert first.source.startswith(BOOTSTRAP_CELL), (
        f"{_rel(path)}: the first code cell must start with clipcourse.colab.BOOTSTRAP_CELL"
    )


@pytest.mark.parametrize("path", ALL, ids=_rel)
def test_no_unguarded_cuda_calls(path):
    text = "\n".join(c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    for forbidden in ("torch.cuda.synchronize(", ".cuda()", "pretrained=True", 'device="cuda"', "device='cuda'"):
        assert forbidden not in text, f"{_rel(path)} uses {forbidden!r}: use clipcourse.device helpers"


def test_toc_lists_every_lesson_and_exercise():
    listed = _toc_files()
    pages = [p for p in LESSONS + sorted(REPO.glob("notebooks/*/*.ipynb"))]
    missing = [_rel(p) for p in pages if _rel(p.with_suffix("")) not in listed]
    assert not missing, f"not in _toc.yml: {missing}"
    absent = [f for f in listed if not any((REPO / f).with_suffix(s).exists() for s in (".md", ".ipynb"))]
    assert not absent, f"_toc.yml lists files that do not exist: {absent}"


@pytest.mark.slow
@pytest.mark.xdist_group("book")  # one worker builds the book once (the fixture is per session, per worker)
def test_book_builds_and_executes_every_lesson(built_book):
    executed = {p.relative_to(built_book / "jupyter_execute") for p in (built_book / "jupyter_execute").rglob("*.ipynb")}
    for lesson in LESSONS:
        rel = lesson.relative_to(REPO)
        assert rel in executed, f"{rel} was not executed by the build"
        nb = json.loads((built_book / "jupyter_execute" / rel).read_text())
        errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{rel}: error outputs {errors[:1]}"
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert all(c.get("execution_count") for c in code), f"{rel}: not every cell ran"
    for exercise in sorted(REPO.glob("notebooks/*/*.ipynb")):
        rel = exercise.relative_to(REPO)
        copy = json.loads((built_book / "jupyter_execute" / rel).read_text())
        ran = [c for c in copy["cells"] if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
        assert not ran, f"{rel}: student notebooks must be shown, not executed"
        html = (built_book / "html" / rel.with_suffix(".html")).read_text()
        assert "colab.research.google.com" in html, f"{rel}: no Colab launch button"
