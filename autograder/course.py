"""The instructor's commands: release student notebooks and grade a class.

    python -m autograder.course release [chNN ...]
    python -m autograder.course grade SUBMISSIONS [--out _grading]

Both run nbgrader in a scratch course folder, so nothing but ``notebooks/``
(release) or the ``--out`` folder (grade) is written. Grading never drops a
student: a malformed, missing or crashing submission still gets a row in
``grades.csv`` with a score of 0 and the reason.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "autograder" / "nbgrader_config.py"
SOLUTIONS = REPO / "solutions"
RELEASE = REPO / "notebooks"
#: nbgrader reads ``nbgrader_config.py`` from the course folder; this one defers to ours.
SHIM = "# Generated: the course configuration lives in autograder/.\nload_subconfig({config!r})\n"

#: Code in an answer cell that reaches into the grader or the process: listed for the instructor.
SUSPICIOUS = {
    "exits the process": r"\bos\._exit\b|\bsys\.exit\b|\bos\.kill\b",
    "replaces a library function": r"^\s*(torch|np|numpy|math|F|clipcourse|grading|checks|Checks)(\.\w+)+\s*=[^=]",
    "uses setattr on a module": r"\bsetattr\s*\(\s*(torch|np|numpy|math|clipcourse|grading|checks|Checks)\b",
    "touches sys.modules or builtins": r"\bsys\.modules\b|\bbuiltins\b|__builtins__",
    "loads native code": r"\bctypes\b",
    "calls the course's reference implementation": r"\bclipcourse\.(losses|clip|zeroshot|models|train|distill|quantize)\b|from\s+clipcourse(\.\w+)?\s+import",
}


def assignments() -> list[str]:
    """Assignment ids (``ch01``, ...) found in ``solutions/``."""
    return sorted(p.name for p in SOLUTIONS.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def nbgrader(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run one nbgrader command with the course configuration in the course folder ``root``."""
    env = {
        **os.environ,
        "CLIPCOURSE_COURSE_ROOT": str(root),
        # The repository first (this checkout's `autograder` and `src`, also from a git worktree).
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        # nbgrader shells out to `alembic` and starts kernels: use this environment's tools.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    shim = root / "nbgrader_config.py"
    if not shim.exists():
        shim.write_text(SHIM.format(config=str(CONFIG)))
    cmd = [sys.executable, "-m", "nbgrader", *args]
    result = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"`nbgrader {' '.join(args)}` failed:\n{result.stdout}\n{result.stderr}")
    return result


def _prepare_course(root: Path, names: list[str]) -> None:
    for name in names:
        shutil.copytree(SOLUTIONS / name, root / "solutions" / name, ignore=shutil.ignore_patterns(".*"))
        nbgrader(root, "generate_assignment", name, "--force")


def release(names: list[str] | None = None, dest: Path = RELEASE) -> list[Path]:
    """Regenerate the student notebooks ``dest/chNN/*.ipynb`` from ``solutions/``."""
    names = names or assignments()
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        _prepare_course(root, names)
        for name in names:
            target = dest / name
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(root / "notebooks" / name, target)
            written += sorted(target.glob("*.ipynb"))
    return written


# ---------------------------------------------------------------------------------------------
# grading


@dataclass
class Submission:
    student: str
    assignment: str
    notebook: str
    path: Path | None  #: None when missing
    problem: str = ""  #: why it could not be graded ("" when fine)
    flags: list[str] = field(default_factory=list)


def _expected_notebooks(name: str) -> list[str]:
    return sorted(p.name for p in (SOLUTIONS / name).glob("*.ipynb"))


def _scan(nb: nbformat.NotebookNode) -> list[str]:
    flags = []
    # Locked cells are restored from the release before grading; only editable code matters.
    sources = [
        c.source
        for c in nb.cells
        if c.cell_type == "code" and not c.metadata.get("nbgrader", {}).get("locked", False)
    ]
    for label, pattern in SUSPICIOUS.items():
        if any(re.search(pattern, src, re.M) for src in sources):
            flags.append(label)
    return flags


def collect(submissions: Path, names: list[str]) -> list[Submission]:
    """Find every student's notebooks: ``SUB/student/chNN/nb.ipynb`` or ``SUB/student/nb.ipynb``."""
    if not submissions.is_dir():
        raise FileNotFoundError(f"submissions folder not found: {submissions}")
    found: list[Submission] = []
    students = sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not students:
        raise ValueError(f"no student folders in {submissions} (expected {submissions}/<student>/<notebook>.ipynb)")
    for student_dir in students:
        student = student_dir.name
        if not re.fullmatch(r"[A-Za-z0-9_.@-]+", student):
            raise ValueError(f"student folder name {student!r}: use letters, digits, '.', '_', '@', '-'")
        for name in names:
            for notebook in _expected_notebooks(name):
                candidates = [student_dir / name / notebook, student_dir / notebook]
                path = next((p for p in candidates if p.is_file()), None)
                sub = Submission(student, name, notebook, path)
                if path is None:
                    sub.problem = f"missing: no {name}/{notebook} or {notebook}"
                else:
                    try:
                        nb = nbformat.read(path, as_version=4)
                        nbformat.validate(nb)
                        sub.flags = _scan(nb)
                    except Exception as exc:  # malformed JSON, not a notebook, wrong schema
                        sub.problem = f"malformed notebook: {type(exc).__name__}: {str(exc)[:200]}"
                found.append(sub)
    return found


def _scores(root: Path, name: str, student: str) -> dict:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        try:
            sub = gb.find_submission(name, student)
        except MissingEntry:
            return {}
        cells = {}
        for nb in sub.notebooks:
            for grade in nb.grades:
                cells[grade.name] = (grade.score, grade.max_score)
        auto_cells = _graded_cells(name, manual=False)
        return {
            "auto_score": sum(cells[c][0] or 0 for c in auto_cells if c in cells),
            "auto_max": sum(auto_cells.values()),
            "max_score": sub.max_score,
            "needs_manual_grading": sub.needs_manual_grade,
            "cells": {k: v[0] for k, v in cells.items()},
        }


def grade(submissions: Path, out: Path, names: list[str] | None = None) -> Path:
    """Autograde every submission, write feedback HTML and ``out/grades.csv``; returns the CSV path."""
    names = names or assignments()
    subs = collect(Path(submissions), names)
    out = Path(out).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    _prepare_course(out, names)
    for sub in subs:
        if not sub.problem:
            dest = out / "submitted" / sub.student / sub.assignment
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy(sub.path, dest / sub.notebook)
    logs = []
    for name in names:
        for step in ("autograde", "generate_feedback"):
            result = nbgrader(out, step, name, "--force", "--Autograde.create_student=True", check=False)
            logs.append(f"$ nbgrader {step} {name}\n{result.stdout}\n{result.stderr}")
    (out / "nbgrader.log").write_text("\n".join(logs))

    rows = []
    for sub in subs:
        row = {"student": sub.student, "assignment": sub.assignment, "notebook": sub.notebook}
        scores = {} if sub.problem else _scores(out, sub.assignment, sub.student)
        autograded = out / "autograded" / sub.student / sub.assignment / sub.notebook
        if sub.problem:
            status = sub.problem
        elif not scores or not autograded.exists():
            status = "autograde failed (see nbgrader.log); scored 0"
        else:
            status = "graded"
        feedback = out / "feedback" / sub.student / sub.assignment / sub.notebook.replace(".ipynb", ".html")
        row.update(
            status=status,
            auto_score=scores.get("auto_score", 0) if status == "graded" else 0,
            auto_max=scores.get("auto_max", _max_points(sub.assignment, manual=False)),
            max_score=scores.get("max_score", _max_points(sub.assignment, manual=None)),
            needs_manual_grading=scores.get("needs_manual_grading", False),
            flags="; ".join(sub.flags),
            feedback=str(feedback.relative_to(out)) if feedback.exists() else "",
            cells=json.dumps(scores.get("cells", {}), sort_keys=True),
        )
        rows.append(row)
    csv_path = out / "grades.csv"
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


def _graded_cells(name: str, manual: bool | None) -> dict[str, float]:
    """``grade_id -> points`` from the solution's metadata (all graded cells, or auto/manual only)."""
    cells = {}
    for path in (SOLUTIONS / name).glob("*.ipynb"):
        for cell in nbformat.read(path, as_version=4).cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade") and (manual is None or manual == bool(meta.get("solution"))):
                cells[meta["grade_id"]] = float(meta.get("points", 0))
    return cells


def _max_points(name: str, manual: bool | None) -> float:
    return sum(_graded_cells(name, manual).values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.course", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_release = sub.add_parser("release", help="regenerate notebooks/ from solutions/")
    p_release.add_argument("assignments", nargs="*")
    p_grade = sub.add_parser("grade", help="autograde a folder of submissions")
    p_grade.add_argument("submissions", type=Path)
    p_grade.add_argument("--out", type=Path, default=REPO / "_grading")
    p_grade.add_argument("--assignments", nargs="*")
    args = parser.parse_args(argv)
    if args.command == "release":
        for path in release(args.assignments or None):
            print(f"released {path.relative_to(REPO)}")
    else:
        csv_path = grade(args.submissions, args.out, args.assignments or None)
        with csv_path.open() as f:
            rows = list(csv.DictReader(f))
        for row in rows:
            print(f"{row['student']:>20} {row['assignment']} {float(row['auto_score']):5.1f}/{float(row['auto_max']):.0f}  {row['status']}")
        print(f"grades: {csv_path}\nfeedback: {csv_path.parent / 'feedback'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
