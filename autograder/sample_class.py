"""Build a class of submissions with known grades, to prove the grading pipeline is fair.

Used by the test suite and handy for instructors trying the grade command::

    python -m autograder.sample_class ch01 /tmp/class && make grade SUBMISSIONS=/tmp/class

Students are made from the released notebook: answers filled from the
solution, a catalogued mistake, a stub, or something broken or hostile.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat

from autograder import course
from autograder.mistakes import Mistake, catalogue

SOLUTION_REGION = re.compile(r"^[ \t]*### BEGIN SOLUTION[^\n]*\n|^[ \t]*### END SOLUTION[^\n]*(\n|$)", re.M)


def _meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def solution_answers(assignment: str) -> dict[str, str]:
    """``grade_id -> source`` of every code answer cell, solution markers removed."""
    answers = {}
    for path in sorted((course.SOLUTIONS / assignment).glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            meta = _meta(cell)
            if cell.cell_type == "code" and meta.get("solution") and not meta.get("grade"):
                answers[meta["grade_id"]] = SOLUTION_REGION.sub("", cell.source)
    return answers


def test_points(assignment: str) -> dict[str, float]:
    """``test cell grade_id -> points`` of the autograded cells."""
    points = {}
    for path in sorted((course.SOLUTIONS / assignment).glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            meta = _meta(cell)
            if meta.get("grade") and not meta.get("solution"):
                points[meta["grade_id"]] = float(meta.get("points", 0))
    return points


def released(assignment: str) -> tuple[str, nbformat.NotebookNode]:
    paths = sorted((course.RELEASE / assignment).glob("*.ipynb"))
    if len(paths) != 1:
        raise ValueError(f"expected one released notebook in notebooks/{assignment}, found {len(paths)}")
    return paths[0].name, nbformat.read(paths[0], as_version=4)


def with_answers(nb: nbformat.NotebookNode, answers: dict[str, str]) -> nbformat.NotebookNode:
    """A copy of ``nb`` with the answer cells named in ``answers`` replaced."""
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        gid = _meta(cell).get("grade_id")
        if gid in answers:
            cell.source = answers[gid]
    return nb


@dataclass
class Student:
    name: str
    expected: dict[str, float] | None  #: test grade_id -> exact score (None: not graded, a 0 row)
    notebook: nbformat.NotebookNode | str | None  #: a notebook, raw text (malformed), or None (missing)
    hints: tuple[str, ...] = ()  #: substrings the feedback must contain
    must_lose: tuple[str, ...] = ()  #: test grade_ids that must score below full marks
    label: str = ""


def baseline_students(assignment: str) -> list[Student]:
    """The two students every grading run starts from: "correct" (full marks) and "stub" (zero)."""
    _, base = released(assignment)
    points = test_points(assignment)
    return [
        Student("correct", dict(points), with_answers(base, solution_answers(assignment))),
        Student("stub", {t: 0.0 for t in points}, base),
    ]


def mistake_students(assignment: str) -> list[Student]:
    """Mistakes grouped so that each student carries at most one mistake per function."""
    _, base = released(assignment)
    answers = solution_answers(assignment)
    points = test_points(assignment)
    by_function: dict[str, list[Mistake]] = {}
    for m in catalogue(assignment):
        by_function.setdefault(m.function, []).append(m)
    students = []
    for k in range(max((len(v) for v in by_function.values()), default=0)):
        group = {f: ms[k] for f, ms in by_function.items() if k < len(ms)}
        nb = with_answers(base, {**answers, **{f: m.code for f, m in group.items()}})
        # functions without a mistake here must keep full marks
        expected = {t: p for t, p in points.items() if t[len("test_"):] not in group}
        students.append(
            Student(
                f"mistakes{k:02d}",
                expected,
                nb,
                hints=tuple(m.hint for m in group.values()),
                must_lose=tuple(f"test_{f}" for f in group),
                label=", ".join(f"{f}:{m.name}" for f, m in group.items()),
            )
        )
    return students


def hostile_students(assignment: str) -> list[Student]:
    """The sample class of issue #2: broken, partial and hostile submissions."""
    _, base = released(assignment)
    answers = solution_answers(assignment)
    points = test_points(assignment)
    functions = list(answers)
    first, first_test = functions[0], f"test_{functions[0]}"
    full = dict(points)
    zero = {t: 0.0 for t in points}
    only_first = {**zero, first_test: points[first_test]}
    without_first = {**full, first_test: 0.0}

    def edit(fn: Callable[[nbformat.NotebookNode], None], nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
        nb = nbformat.from_dict(nb)
        fn(nb)
        return nb

    def delete_test(nb):
        nb.cells = [c for c in nb.cells if _meta(c).get("grade_id") != first_test]

    def edit_test(nb):
        for c in nb.cells:
            if _meta(c).get("grade_id") == first_test:
                c.source = "print('all tests passed')"

    patch = (
        "import torch, numpy\n"
        "torch.allclose = lambda *a, **k: True\n"
        "torch.Tensor.allclose = lambda *a, **k: True\n"
        "numpy.allclose = lambda *a, **k: True\n"
        "import clipcourse.checks.core as _core\n"
        "_core.values_close = lambda *a, **k: True\n"
        "_core.Checks.__exit__ = lambda *a, **k: True\n"
        "_core.Checks._record = lambda self, ok, what, hint: True\n"
        "import clipcourse.grading as _g\n"
        "_g.expect_close = lambda *a, **k: None\n"
        "_g.expect = lambda *a, **k: None\n"
    )
    stub_answers = {
        _meta(c)["grade_id"]: c.source for c in base.cells if _meta(c).get("grade_id") in answers
    }
    correct, stub = baseline_students(assignment)
    return [
        correct,
        Student("partial", only_first, with_answers(base, {first: answers[first]})),
        Student("syntax_error", without_first, with_answers(base, {**answers, first: answers[first].replace("def ", "def def ", 1)})),
        Student("infinite_loop", without_first, with_answers(base, {**answers, first: "while True:\n    pass\n" + answers[first]})),
        Student("deleted_test_cell", full, edit(delete_test, with_answers(base, answers))),
        Student("edited_locked_test", zero, edit(edit_test, base)),
        Student("os_exit", without_first, with_answers(base, {**answers, first: "import os\nos._exit(1)\n" + answers[first]})),
        Student("monkeypatch", zero, with_answers(base, {**stub_answers, first: patch + stub_answers[first]})),
        stub,
        Student("malformed", None, "{ this is not a notebook"),
        Student("missing", None, None),
    ]


def write_class(students: list[Student], assignment: str, dest: Path) -> None:
    name, _ = released(assignment)
    for s in students:
        folder = Path(dest) / s.name
        folder.mkdir(parents=True, exist_ok=True)
        if isinstance(s.notebook, str):
            (folder / name).write_text(s.notebook)
        elif s.notebook is not None:
            nbformat.write(s.notebook, folder / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.sample_class")
    parser.add_argument("assignment")
    parser.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    students = hostile_students(args.assignment) + mistake_students(args.assignment)
    write_class(students, args.assignment, args.dest)
    for s in students:
        print(f"{s.name:>20}: {s.expected}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
