"""The instructor's commands: release student notebooks and grade a class.

    python -m autograder.course release [chNN ...]
    python -m autograder.course grade SUBMISSIONS [--out _grading] [--assignment chNN] [--jobs N] [--unsafe-no-sandbox]
    python -m autograder.course export [--out _grading]      # after manual grading in formgrader

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
import sqlite3
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
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
    "calls the course's reference implementation": r"\bclipcourse\.(losses|clip|zeroshot|models|train|distill|quantize|metrics|prompts|binding|text|cache|search|encoding|hard_negatives|class_metrics|distributed)\b|from\s+clipcourse(\.\w+)?\s+import",
}


def assignments() -> list[str]:
    """Assignment ids (``ch01``, ...) found in ``solutions/``."""
    return sorted(p.name for p in SOLUTIONS.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def nbgrader(root: Path, *args: str, check: bool = True, unsafe: bool = False) -> subprocess.CompletedProcess:
    """Run one nbgrader command with the course configuration in the course folder ``root``."""
    env = {
        **os.environ,
        "CLIPCOURSE_COURSE_ROOT": str(root),
        # The repository first (this checkout's `autograder` and `src`, also from a git worktree).
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        # nbgrader shells out to `alembic` and starts kernels: use this environment's tools.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "CLIPCOURSE_UNSAFE_NO_SANDBOX": "1" if unsafe else "0",
        # Grading runs on the CPU: the sandbox has no GPU, and a test's tensors must reach it.
        "CUDA_VISIBLE_DEVICES": "",
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


def _cell_scores(root: Path, name: str, student: str) -> dict | None:
    """``grade_id -> score`` (None for a written answer not graded yet); None when not in the gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        try:
            sub = gb.find_submission(name, student)
        except MissingEntry:
            return None
        return {
            grade.name: (None if grade.needs_manual_grade else float(grade.score or 0))
            for nb in sub.notebooks
            for grade in nb.grades
        }


def _merge_gradebook(main: Path, part: Path) -> None:
    """Copy one chunk's rows into the class gradebook (the only writer is the grade command).

    Every chunk course is a copy of one template course, so the assignment, notebook and
    cell rows are identical (same ids) and only the students' rows are new.
    """
    with sqlite3.connect(main) as db:
        db.execute("ATTACH DATABASE ? AS part", (str(part),))
        tables = [r[0] for r in db.execute("SELECT name FROM part.sqlite_master WHERE type='table' AND name NOT LIKE 'alembic%'")]
        for table in tables:
            db.execute(f'INSERT OR IGNORE INTO main."{table}" SELECT * FROM part."{table}"')
        db.commit()
        db.execute("DETACH DATABASE part")


def _grade_chunk(template: Path, chunk: Path, subs: list[Submission], names: list[str], unsafe: bool) -> str:
    shutil.copytree(template, chunk)
    for sub in subs:
        dest = chunk / "submitted" / sub.student / sub.assignment
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy(sub.path, dest / sub.notebook)
    logs = []
    for name in sorted({s.assignment for s in subs}):
        for step in ("autograde", "generate_feedback"):
            result = nbgrader(chunk, step, name, "--force", "--Autograde.create_student=True", check=False, unsafe=unsafe)
            logs.append(f"$ nbgrader {step} {name}  # {chunk.name}\n{result.stdout}\n{result.stderr}")
    return "\n".join(logs)


def grade(
    submissions: Path,
    out: Path,
    names: list[str] | None = None,
    *,
    unsafe_no_sandbox: bool = False,
    jobs: int | None = None,
) -> Path:
    """Autograde every submission, write feedback HTML and ``out/grades.csv``; returns the CSV path.

    Each student's code runs in a bubblewrap sandbox (autograder/sandbox.py) and the tests in a
    separate trusted kernel (autograder/executor.py). Without bubblewrap this refuses, unless
    ``unsafe_no_sandbox`` (recorded in the CSV). Submissions are graded in ``jobs`` parallel
    chunks (default: one per core), each in its own scratch course and gradebook; the chunks'
    gradebooks are then merged into ``out/gradebook.db`` by this process alone.
    """
    from autograder.sandbox import bwrap_problem

    problem = bwrap_problem()
    if problem and not unsafe_no_sandbox:
        raise SandboxMissing(
            f"refusing to grade: {problem}. Student code must run in a sandbox: install bubblewrap "
            "(Debian/Ubuntu: sudo apt-get install bubblewrap; Fedora: sudo dnf install bubblewrap), "
            "or pass --unsafe-no-sandbox to grade without it (recorded in grades.csv)."
        )
    names = names or assignments()
    unknown = sorted(set(names) - set(assignments()))
    if unknown:
        raise ValueError(f"unknown assignment(s) {unknown}; known: {assignments()}")
    subs = collect(Path(submissions), names)
    out = Path(out).resolve()
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    _prepare_course(out, names)
    (out / "nbgrader.log").write_text("")
    gradable = [s for s in subs if not s.problem]
    students = sorted({s.student for s in gradable})
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(students) or 1))
    size = -(-len(students) // jobs)  # contiguous blocks: neighbours in name order share a grader
    chunks = [[s for s in gradable if s.student in students[k * size:(k + 1) * size]] for k in range(jobs)]
    work = Path(tempfile.mkdtemp(prefix="clipcourse-grading-"))
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [
                pool.submit(_grade_chunk, out, work / f"chunk{k}", chunk, names, unsafe_no_sandbox)
                for k, chunk in enumerate(chunks) if chunk
            ]
            logs = [f.result() for f in futures]
        for k, chunk in enumerate(chunks):
            part = work / f"chunk{k}"
            if not chunk:
                continue
            _merge_gradebook(out / "gradebook.db", part / "gradebook.db")
            for folder in ("submitted", "autograded", "feedback"):
                if (part / folder).is_dir():
                    shutil.copytree(part / folder, out / folder, dirs_exist_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (out / "nbgrader.log").write_text("\n".join(logs))
    record = {"unsafe_no_sandbox": unsafe_no_sandbox, "assignments": names,
              "submissions": [{**{k: v for k, v in vars(s).items() if k != "path"}} for s in subs]}
    (out / "grading.json").write_text(json.dumps(record, indent=1))
    return export(out)


class SandboxMissing(RuntimeError):
    """No working sandbox and no explicit opt-out."""


def export(out: Path) -> Path:
    """(Re)write ``out/grades.csv`` from the gradebook: call again after manual grading in formgrader."""
    out = Path(out).resolve()
    record = json.loads((out / "grading.json").read_text())
    names = record["assignments"]
    subs = [Submission(path=None, **s) for s in record["submissions"]]
    prefix = len(names) > 1
    columns = [f"{n}:{c}" if prefix else c for n in names for c in _graded_cells(n, manual=None)]
    rows = []
    for sub in subs:
        row = {"student": sub.student, "assignment": sub.assignment, "notebook": sub.notebook}
        auto_cells = _graded_cells(sub.assignment, manual=False)
        manual_cells = _graded_cells(sub.assignment, manual=True)
        cells = None if sub.problem else _cell_scores(out, sub.assignment, sub.student)
        autograded = out / "autograded" / sub.student / sub.assignment / sub.notebook
        if sub.problem:
            status = sub.problem
        elif cells is None or not autograded.exists():
            status, cells = "autograde failed (see nbgrader.log); scored 0", None
        elif any(cells.get(c) is None for c in manual_cells):
            status = "autograded; written answers await manual grading (formgrader), then run export"
        else:
            status = "graded"
        cells = cells or {}
        for n in names:
            for c in _graded_cells(n, manual=None):
                key = f"{n}:{c}" if prefix else c
                if n != sub.assignment:
                    row[key] = ""
                elif c in auto_cells:
                    row[key] = cells.get(c, 0.0) if not status.startswith(("missing", "malformed", "autograde failed")) else 0.0
                else:
                    row[key] = "" if cells.get(c) is None else cells[c]
        auto = sum(float(row[(f"{sub.assignment}:{c}" if prefix else c)] or 0) for c in auto_cells)
        manual_done = all(cells.get(c) is not None for c in manual_cells)
        manual = sum(cells[c] for c in manual_cells) if manual_done and cells else None
        feedback = out / "feedback" / sub.student / sub.assignment / sub.notebook.replace(".ipynb", ".html")
        row.update(
            auto_score=auto,
            auto_max=sum(auto_cells.values()),
            manual_score="" if manual is None else manual,
            manual_max=sum(manual_cells.values()),
            total="" if manual is None else auto + manual,
            max_score=sum(auto_cells.values()) + sum(manual_cells.values()),
            status=status,
            flags="; ".join(sub.flags),
            sandbox="none (--unsafe-no-sandbox)" if record["unsafe_no_sandbox"] else "bubblewrap",
            feedback=str(feedback.relative_to(out)) if feedback.exists() else "",
        )
        rows.append(row)
        if feedback.exists():
            _polish_feedback(feedback, row)
    csv_path = out / "grades.csv"
    fields = ["student", "assignment", "notebook", *columns, "auto_score", "auto_max", "manual_score", "manual_max",
              "total", "max_score", "status", "flags", "sandbox", "feedback"]
    with csv_path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return csv_path


FEEDBACK_STYLE = "<style>pre, .output_text pre, .output_error pre {white-space: pre-wrap; word-break: break-word;}</style>"
SCORES = re.compile(r"<!-- clipcourse-scores -->.*?<!-- /clipcourse-scores -->", re.S)


def _polish_feedback(path: Path, row: dict) -> None:
    """Long hints wrap, and a header separates the autograded points from the written answers'."""
    html = path.read_text()
    manual = (f"{float(row['manual_score']):g} / {float(row['manual_max']):g}" if row["manual_score"] != ""
              else f"not graded yet (out of {float(row['manual_max']):g})")
    header = (
        "<!-- clipcourse-scores --><div style='margin:1em 0;padding:.5em 1em;border:1px solid #ccc'>"
        f"<b>Autograded:</b> {float(row['auto_score']):g} / {float(row['auto_max']):g} &nbsp; "
        f"<b>Written answers:</b> {manual}</div><!-- /clipcourse-scores -->"
    )
    if SCORES.search(html):
        html = SCORES.sub(lambda _: header, html)
    else:
        html = html.replace("</head>", FEEDBACK_STYLE + "</head>", 1)
        html = re.sub(r"(<body[^>]*>)", lambda m: m[1] + header, html, count=1)
    path.write_text(html)


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
    p_grade.add_argument("--assignments", "--assignment", nargs="*", help="grade only these (e.g. ch01)")
    p_grade.add_argument("--jobs", type=int, default=None, help="parallel graders (default: one per core)")
    p_grade.add_argument("--unsafe-no-sandbox", action="store_true",
                         help="grade without bubblewrap (student code can then read and change your files); recorded in grades.csv")
    p_export = sub.add_parser("export", help="rewrite grades.csv from the gradebook (after manual grading)")
    p_export.add_argument("--out", type=Path, default=REPO / "_grading")
    args = parser.parse_args(argv)
    if args.command == "release":
        for path in release(args.assignments or None):
            print(f"released {path.relative_to(REPO)}")
        return 0
    if args.command == "export":
        csv_path = export(args.out)
    else:
        try:
            csv_path = grade(args.submissions, args.out, args.assignments or None,
                             unsafe_no_sandbox=args.unsafe_no_sandbox, jobs=args.jobs)
        except SandboxMissing as exc:
            print(exc, file=sys.stderr)
            return 3
    with csv_path.open() as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        print(f"{row['student']:>20} {row['assignment']} {float(row['auto_score']):5.1f}/{float(row['auto_max']):.0f}  {row['status']}")
    print(f"grades: {csv_path}\nfeedback: {csv_path.parent / 'feedback'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
