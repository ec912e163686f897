"""The grading pipeline, end to end, on every chapter's exercise notebook.

For each assignment in solutions/: the committed student notebooks are what the
release command generates; the solution scores full marks; the released stub
scores zero on every graded cell; every catalogued mistake loses points on its
own function's test cell and its hint appears in the feedback. Chapter 1 also
grades the hostile sample class (autograder/sample_class.py).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nbformat
import pytest

from autograder import course, sample_class
from autograder.mistakes import catalogue

ASSIGNMENTS = course.assignments()
HOSTILE = {"ch01"}  # the sample class runs once, on the first chapter
pytestmark = pytest.mark.slow


def _comparable(nb: nbformat.NotebookNode) -> list[tuple]:
    return [(c.cell_type, c.source, json.dumps(c.metadata, sort_keys=True)) for c in nb.cells]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_is_current(assignment, tmp_path):
    course.release([assignment], dest=tmp_path)
    fresh = sorted((tmp_path / assignment).glob("*.ipynb"))
    committed = sorted((course.RELEASE / assignment).glob("*.ipynb"))
    assert [p.name for p in fresh] == [p.name for p in committed], "run `make release`"
    for new, old in zip(fresh, committed, strict=True):
        assert _comparable(nbformat.read(new, 4)) == _comparable(nbformat.read(old, 4)), (
            f"notebooks/{assignment}/{old.name} is stale: run `make release` and commit it"
        )


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_catalogue_covers_every_graded_function(assignment):
    mistakes = catalogue(assignment)
    functions = set(sample_class.solution_answers(assignment))
    for function in functions:
        mine = [m for m in mistakes if m.function == function]
        assert len(mine) >= 5, f"{assignment}: only {len(mine)} catalogued mistakes for {function}"
        assert len({m.name for m in mine}) == len(mine), f"{function}: duplicate mistake names"
    assert {m.function for m in mistakes} <= functions, "a mistake names a function that is not graded"


def _grade_class(assignment: str, tmp: Path):
    students = sample_class.mistake_students(assignment)
    if assignment in HOSTILE:
        students = sample_class.hostile_students(assignment) + students
    else:
        name, base = sample_class.released(assignment)
        answers = sample_class.solution_answers(assignment)
        points = sample_class.test_points(assignment)
        students = [
            sample_class.Student("correct", dict(points), sample_class.with_answers(base, answers)),
            sample_class.Student("stub", {t: 0.0 for t in points}, base),
        ] + students
    sample_class.write_class(students, assignment, tmp / "class")
    csv_path = course.grade(tmp / "class", tmp / "graded", [assignment])
    with csv_path.open() as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    return students, rows, tmp / "graded"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_class_is_graded_fairly(assignment, tmp_path, monkeypatch):
    """One nbgrader run per chapter (kernels are slow to start); every property checked on it."""
    monkeypatch.setenv("CLIPCOURSE_CELL_TIMEOUT", "30")
    students, rows, out = _grade_class(assignment, tmp_path)
    points = sample_class.test_points(assignment)
    problems = []
    missing_rows = {s.name for s in students} - set(rows)
    problems += [f"{name}: no row in grades.csv" for name in sorted(missing_rows)]
    for s in students:
        row = rows.get(s.name)
        if row is None:
            continue
        cells = json.loads(row["cells"])
        if s.expected is None:  # malformed or missing: a row with 0 and the reason
            if float(row["auto_score"]) != 0 or row["status"] == "graded":
                problems.append(f"{s.name}: expected an ungraded 0 row, got {row}")
            continue
        if row["status"] != "graded":
            problems.append(f"{s.name}: not graded ({row['status']})")
            continue
        for test, want in s.expected.items():
            if cells.get(test) != want:
                problems.append(f"{s.name} ({s.label or 'sample'}): {test} scored {cells.get(test)}, expected {want}")
        for test in s.must_lose:
            if cells.get(test) is None or cells[test] >= points[test]:
                problems.append(f"{s.name} ({s.label}): {test} kept full marks despite the mistake")
        if s.hints:
            html = (out / row["feedback"]).read_text()
            problems += [f"{s.name} ({s.label}): hint {h!r} not in the feedback" for h in s.hints if h not in html]

    correct = (out / rows["correct"]["feedback"]).read_text()
    if "BEGIN HIDDEN TESTS" in correct:
        problems.append("the feedback shows the hidden tests' code")
    if "BEGIN HIDDEN TESTS" not in next((course.SOLUTIONS / assignment).glob("*.ipynb")).read_text():
        problems.append("the solution notebook has no hidden tests")
    if assignment in HOSTILE:
        if "exits the process" not in rows["os_exit"]["flags"]:
            problems.append("os._exit was not flagged for the instructor")
        if "replaces a library function" not in rows["monkeypatch"]["flags"]:
            problems.append("monkeypatching was not flagged for the instructor")
        if rows["correct"]["flags"]:
            problems.append(f"the correct submission was flagged: {rows['correct']['flags']}")
    assert not problems, "\n".join(problems)
