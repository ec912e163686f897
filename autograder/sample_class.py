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


#: The TCP port a "network" attacker tries to reach on the grading machine (the test listens on it).
NETWORK_PORT = 47613
#: Marker in the command line of the process a "detached" attacker leaves behind.
DETACHED_MARKER = "6061.5"


def _before(answer: str, code: str) -> str:
    """``code`` inserted at the top of the answer's function body (runs when the tests call it)."""
    import ast

    func = next(n for n in ast.parse(answer).body if isinstance(n, ast.FunctionDef))
    first = func.body[0]
    has_doc = isinstance(first, ast.Expr) and isinstance(getattr(first, "value", None), ast.Constant)
    after = first.end_lineno if has_doc else func.lineno
    lines = answer.splitlines(True)
    body = "".join("    " + line + "\n" for line in code.strip("\n").splitlines())
    return "".join(lines[:after]) + body + "".join(lines[after:])


def attack_students(assignment: str) -> list[Student]:
    """One student per attack of issue #8's threat model, each between two honest students.

    Each attack leaves the answers otherwise as they would score: the expected scores prove the
    attack changed nothing (a stub stays at 0, a correct answer keeps its points, a function
    that hits a limit loses that cell only).
    """
    _, base = released(assignment)
    answers = solution_answers(assignment)
    points = test_points(assignment)
    first = next(iter(answers))
    first_test = f"test_{first}"
    full = dict(points)
    zero = {t: 0.0 for t in points}
    without_first = {**full, first_test: 0.0}
    stubs = {_meta(c)["grade_id"]: c.source for c in base.cells if _meta(c).get("grade_id") in answers}
    solution_path = str(course.SOLUTIONS / assignment)
    tamper = r"""
import sys, builtins
try:
    ip = get_ipython()
    ip.input_transformers_cleanup.append(lambda lines: ["pass\n"])
    ip.events.register("pre_run_cell", lambda *a: None)
except Exception:
    pass
for name, module in list(sys.modules.items()):
    if name.startswith("clipcourse.checks"):
        for attr in ("Checks",):
            if hasattr(module, attr):
                getattr(module, attr).__exit__ = lambda *a, **k: True
builtins.AssertionError = type("Never", (Exception,), {})
import torch
torch.allclose = lambda *a, **k: True
"""
    read_solutions = f"""
import glob, json
for path in glob.glob({solution_path!r} + "/*.ipynb") + glob.glob("/tmp/**/*.ipynb", recursive=True):
    try:
        cells = json.loads(open(path).read()).get("cells", [])
    except Exception:
        continue
    for cell in cells:
        src = "".join(cell.get("source", ""))
        if src.startswith("def ") and "BEGIN SOLUTION" in src:
            exec(src.replace("### BEGIN SOLUTION", "").replace("### END SOLUTION", ""), globals())
"""
    edit_others = f"""
import glob, os
for pattern in ("/tmp/**/*.ipynb", "/tmp/**/gradebook.db", "/home/**/*", {str(course.REPO)!r} + "/**/*.ipynb", {str(course.REPO)!r} + "/**/gradebook.db"):
    for path in glob.glob(pattern, recursive=True)[:200]:
        try:
            open(path, "w").write("{{}}")
        except OSError:
            pass
"""
    detach = f"""
import subprocess, sys
subprocess.Popen(["sleep", "{DETACHED_MARKER}"], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
subprocess.Popen([sys.executable, "-c", "import os, time\\nif os.fork() == 0:\\n    os.setsid()\\n    time.sleep({DETACHED_MARKER})"],
                 start_new_session=True)
"""
    write_env = f"""
import os, site, sys, sysconfig
targets = [os.path.join(p, "sitecustomize.py") for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]]]
targets += [os.path.join(sys.prefix, "lib", "zz_clipcourse_attack.pth"), {str(course.REPO / "src" / "clipcourse" / "__init__.py")!r}]
import clipcourse
targets.append(clipcourse.__file__)
for path in targets:
    try:
        with open(path, "a") as f:
            f.write("\\nimport builtins; builtins.__dict__['_owned'] = True\\n")
    except OSError:
        pass
"""
    memory = """
import torch
blocks = []
for _ in range(1000):
    blocks.append(torch.ones(64 * 1024 * 1024, dtype=torch.uint8))  # 64 MiB each, touched
"""
    processes = f"""
import subprocess
children = []
for _ in range(400):
    children.append(subprocess.Popen(["sleep", "{DETACHED_MARKER}"]))
"""
    flood = """
for _ in range(100000):
    print("spam " * 100)
"""
    network = f"""
import socket
socket.create_connection(("127.0.0.1", {NETWORK_PORT}), timeout=3).close()
"""
    lookalike = """
import torch
class Always(torch.Tensor):
    def __eq__(self, other): return True
    def allclose(self, *a, **k): return True
    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        return torch.Tensor.__torch_function__(func, (torch.Tensor,), args, kwargs or {})
return torch.zeros(1).as_subclass(Always)
"""
    attacks = [
        ("tamper_interpreter", zero, {**stubs, first: tamper + stubs[first]}),
        ("read_solutions", zero, {**stubs, first: read_solutions + stubs[first]}),
        ("edit_other_submissions", full, {**answers, first: edit_others + answers[first]}),
        ("detached_process", full, {**answers, first: detach + answers[first]}),
        ("write_environment", full, {**answers, first: write_env + answers[first]}),
        ("memory_bomb", without_first, {**answers, first: _before(answers[first], memory)}),
        ("process_bomb", without_first, {**answers, first: _before(answers[first], processes)}),
        ("output_flood", without_first, {**answers, first: _before(answers[first], flood)}),
        ("network", without_first, {**answers, first: _before(answers[first], network)}),
        ("lookalike", without_first, {**answers, first: _before(answers[first], lookalike)}),
        ("exit_during_test", without_first, {**answers, first: _before(answers[first], "import os\nos._exit(3)")}),
        ("reference_call", without_first, {**answers, first: _before(answers[first], _reference_call(first))}),
    ]
    students = [Student("a00_honest", full, with_answers(base, answers))]
    for k, (label, expected, chosen) in enumerate(attacks, start=1):
        students.append(Student(f"a{2 * k - 1:02d}_{label}", expected, with_answers(base, chosen), label=label))
        students.append(Student(f"a{2 * k:02d}_honest", full, with_answers(base, answers)))
    return students


def _reference_call(function: str) -> str:
    return f"""
_args = tuple(locals().values())
import importlib, pkgutil, clipcourse
for info in pkgutil.iter_modules(clipcourse.__path__):
    try:
        module = importlib.import_module("clipcourse." + info.name)
    except Exception:
        continue
    reference = getattr(module, "{function}", None)
    if callable(reference):
        return reference(*_args)
"""


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
    students = hostile_students(args.assignment) + attack_students(args.assignment) + mistake_students(args.assignment)
    write_class(students, args.assignment, args.dest)
    for s in students:
        print(f"{s.name:>20}: {s.expected}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
