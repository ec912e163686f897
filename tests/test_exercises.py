"""The grading pipeline, end to end, on every chapter's exercise notebook.

For each assignment in solutions/: the committed student notebooks are what the
release command generates; the solution scores full marks; the released stub
scores zero on every graded cell; every catalogued mistake loses points on its
own function's test cell and its hint appears in the feedback. Chapter 1 also
grades the hostile sample class (autograder/sample_class.py): one student per attack
of issue #8's threat model between honest students, after which the repository, the
Python environment and the instructor's files are unchanged and no process a
submission started is still running.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import socket
import subprocess
import sys
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


def _fingerprint(*folders: Path) -> str:
    """A hash of every file's path and content under ``folders`` (git-tracked files for the repository)."""
    digest = hashlib.sha256()
    for folder in folders:
        if (folder / ".git").exists():
            names = subprocess.run(["git", "ls-files", "-z"], cwd=folder, capture_output=True, check=True).stdout.split(b"\0")
            paths = [folder / n.decode() for n in names if n]
        else:
            paths = sorted(p for p in folder.rglob("*") if p.is_file())
        for path in paths:
            digest.update(str(path).encode())
            digest.update(path.read_bytes() if path.is_file() else b"-")
    return digest.hexdigest()


def _environment_listing() -> str:
    """Names, sizes and times of the files a submission could plant code in (site-packages, .pth, sitecustomize)."""
    import site
    import sysconfig

    entries = []
    for folder in {*site.getsitepackages(), sysconfig.get_paths()["purelib"], os.path.join(sys.prefix, "lib")}:
        for entry in sorted(Path(folder).iterdir()) if Path(folder).is_dir() else []:
            stat = entry.stat()
            entries.append(f"{entry} {stat.st_size} {stat.st_mtime_ns}")
    return "\n".join(sorted(entries))


def _leftover_processes() -> list[str]:
    import psutil

    left = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if sample_class.DETACHED_MARKER in cmdline:
            left.append(f"{proc.pid}: {cmdline}")
    return left


@contextlib.contextmanager
def _listening(port: int):
    """A TCP server on the grading machine that a sandboxed submission must not reach."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(50)
    try:
        yield
    finally:
        server.close()


def _grade_class(assignment: str, tmp: Path):
    students = sample_class.mistake_students(assignment)
    if assignment in HOSTILE:
        students = sample_class.hostile_students(assignment) + sample_class.attack_students(assignment) + students
    else:
        name, base = sample_class.released(assignment)
        answers = sample_class.solution_answers(assignment)
        points = sample_class.test_points(assignment)
        students = [
            sample_class.Student("correct", dict(points), sample_class.with_answers(base, answers)),
            sample_class.Student("stub", {t: 0.0 for t in points}, base),
        ] + students
    sample_class.write_class(students, assignment, tmp / "class")
    guarded = [course.REPO, tmp / "class"]
    before = (_fingerprint(*guarded), _environment_listing())
    with _listening(sample_class.NETWORK_PORT) if assignment in HOSTILE else contextlib.nullcontext():
        csv_path = course.grade(tmp / "class", tmp / "graded", [assignment])
    after = (_fingerprint(*guarded), _environment_listing())
    assert before[0] == after[0], "grading changed the repository or the submissions folder"
    assert before[1] == after[1], "grading changed the Python environment"
    assert not _leftover_processes(), f"processes started by submissions survived: {_leftover_processes()}"
    with csv_path.open() as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    return students, rows, tmp / "graded"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_class_is_graded_fairly(assignment, tmp_path, monkeypatch):
    """One nbgrader run per chapter (kernels are slow to start); every property checked on it."""
    monkeypatch.setenv("CLIPCOURSE_CELL_TIMEOUT", "30")
    monkeypatch.setenv("CLIPCOURSE_MEMORY_LIMIT", "2G")  # the memory bomb stays within safe bounds
    students, rows, out = _grade_class(assignment, tmp_path)
    points = sample_class.test_points(assignment)
    problems = []
    missing_rows = {s.name for s in students} - set(rows)
    problems += [f"{name}: no row in grades.csv" for name in sorted(missing_rows)]
    for s in students:
        row = rows.get(s.name)
        if row is None:
            continue
        cells = {t: (float(row[t]) if row.get(t) not in (None, "") else None) for t in points}
        if s.expected is None:  # malformed or missing: a row with 0 and the reason
            if float(row["auto_score"]) != 0 or row["status"] == "graded":
                problems.append(f"{s.name}: expected an ungraded 0 row, got {row}")
            continue
        if not row["status"].startswith(("graded", "autograded")):
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
    for row in rows.values():
        if row["student"] in {s.name for s in students if s.label and not s.name.startswith("mistakes")}:
            continue  # an attacker's own code names grader paths; what matters is that outputs do not
        html = (out / row["feedback"]).read_text() if row["feedback"] else ""
        for private in (str(course.REPO), sys.prefix, "clipcourse/checks", "site-packages"):
            if private in html:
                problems.append(f"{row['student']}: the feedback shows a grader path ({private})")
    header = next(csv.reader((out / "grades.csv").open()))
    if not set(points) <= set(header) or "manual_score" not in header:
        problems.append(f"grades.csv lacks one column per graded cell or the totals: {header}")
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
