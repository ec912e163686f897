"""One source for the mistake catalogue: the visible checks' ``mistakes={...}`` come from its code.

Each catalogued mistake (``autograder/mistakes/chNN.py``) is a complete wrong answer
cell. A visible check in the solution notebook names the output each mistake gives on
its fixed inputs, so that the check can print that mistake's hint::

    check.close(out, expected, hint="...", mistakes={"hint of mistake X": <X's output>, ...})

This module runs every catalogued mistake on the visible check's own inputs (the
set-up cell, the earlier cells and the answer cell replaced by the mistake's code,
then the test cell up to ``### BEGIN HIDDEN TESTS``) and records what the learner's
function returned at each ``check.close`` whose ``mistakes`` has a key containing the
mistake's hint. Then

* ``python -m autograder.mistakes sync chNN`` rewrites every *literal* value of those
  keys in ``solutions/chNN/*.ipynb`` (a number, a list, ``torch.tensor([...])``) with the
  recorded output, rounded to 6 decimals; values written as expressions of the check's
  inputs (chapter 3's ``cos.softmax(-1)``) are left as they are;
* ``python -m autograder.mistakes check chNN`` (and ``tests/test_mistake_sync.py``)
  reports every key whose value, as the notebook evaluates it, differs from what the
  catalogued code produces, and every catalogued mistake no visible check names.

It reads the notebook's structure only through nbgrader metadata (``grade_id`` of the
set-up, answer and test cells), so it works for any chapter written in the course's
style. Run ``python -m autograder.course release chNN`` afterwards.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from autograder.mistakes import Mistake, catalogue

HIDDEN = "### BEGIN HIDDEN TESTS"
SOLUTIONS = Path(__file__).resolve().parents[2] / "solutions"
DIGITS = 6


@dataclass
class Site:
    """One ``mistakes={...}`` dict literal in a visible check."""

    cell: int  #: index of the test cell in the notebook
    keys: frozenset[str]
    values: dict[str, ast.expr]  #: key -> the value's AST node (positions in the cell source)
    observed: dict[str, Any] = field(default_factory=dict)  #: key -> the value the notebook evaluates


@dataclass
class Report:
    """What running the catalogue on one notebook found."""

    notebook: Path
    outputs: dict[tuple[int, frozenset[str], str], Any]  #: (cell, keys, key) -> the mistake's output
    sites: list[Site]
    disagreements: list[str]
    unnamed: list[str]  #: catalogued mistakes no ``mistakes={...}`` names (other checks print their hints)


def _meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def _visible(source: str) -> str:
    return source.split(HIDDEN, 1)[0]


def _sites(nb, cell_index: int) -> list[Site]:
    source = _visible(nb.cells[cell_index].source)
    sites = []
    for node in ast.walk(ast.parse(source)):
        # Only ``check.close(..., mistakes={...})``: a notebook's own helper that takes a
        # ``mistakes`` dict (chapter 7 compares strings) keeps its hand-written values.
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "close":
            for kw in node.keywords:
                if kw.arg == "mistakes" and isinstance(kw.value, ast.Dict):
                    values = {
                        k.value: v
                        for k, v in zip(kw.value.keys, kw.value.values, strict=True)
                        if isinstance(k, ast.Constant) and isinstance(k.value, str)
                    }
                    sites.append(Site(cell_index, frozenset(values), values))
    return sites


@contextlib.contextmanager
def _recording(calls: list[tuple[Any, dict]]) -> Iterator[None]:
    """Record ``(actual, mistakes)`` of every ``Checks.close`` call.

    A profile hook reads the call's arguments, so nothing is replaced: the checks'
    own tamper detection (``clipcourse.grading``) sees the tools it snapshotted.
    """
    import sys

    from clipcourse.checks.core import Checks

    code = Checks.close.__code__

    def hook(frame, event, arg):
        if event == "call" and frame.f_code is code:
            local = frame.f_locals
            calls.append((local.get("actual"), dict(local.get("mistakes") or {})))

    previous = sys.getprofile()
    sys.setprofile(hook)
    try:
        yield
    finally:
        sys.setprofile(previous)


def _run(cells: list[str], calls: list) -> str | None:
    """Execute ``cells`` in one fresh namespace, quietly; the error text if one raised."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), _recording(calls):
            for source in cells:
                exec(compile(source, "<cell>", "exec"), namespace)
    except BaseException as exc:  # a mistake may raise anywhere; that is its output
        return f"{type(exc).__name__}: {exc}"
    return None


def _prefix(nb, upto: int, function: str, code: str | None) -> list[str]:
    """Sources of the code cells before ``upto`` (hidden tests cut), answer ``function`` replaced."""
    cells = []
    for cell in nb.cells[:upto]:
        if cell.cell_type != "code":
            continue
        meta = _meta(cell)
        if code is not None and meta.get("grade_id") == function and meta.get("solution"):
            cells.append(code)
        else:
            cells.append(_visible(cell.source))
    return cells


def _test_cells(nb) -> dict[str, int]:
    """``function -> index`` of its test cell (``grade_id`` ``test_<function>``)."""
    return {
        _meta(c)["grade_id"][len("test_"):]: i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and _meta(c).get("grade") and str(_meta(c).get("grade_id", "")).startswith("test_")
    }


def analyse(assignment: str, notebook: Path | None = None) -> Report:
    """Run every catalogued mistake of ``assignment`` on its visible check and compare."""
    from clipcourse.checks.core import values_close

    path = notebook or next(iter(sorted((SOLUTIONS / assignment).glob("*.ipynb"))))
    nb = nbformat.read(path, as_version=4)
    tests = _test_cells(nb)
    sites = [s for i in sorted(tests.values()) for s in _sites(nb, i)]
    by_keys = {(s.cell, s.keys): s for s in sites}
    outputs: dict[tuple[int, frozenset[str], str], Any] = {}
    disagreements: list[str] = []
    unnamed: list[str] = []

    # The correct solution: what the notebook's own mistakes values evaluate to.
    for function, index in tests.items():
        calls: list = []
        error = _run(_prefix(nb, index + 1, function, None), calls)
        if error:
            disagreements.append(f"{function}: the solution notebook raised {error}")
        for _, mistakes in calls:
            site = by_keys.get((index, frozenset(mistakes)))
            if site is not None:
                site.observed.update(mistakes)

    mistakes_by_function: dict[str, list[Mistake]] = {}
    for m in catalogue(assignment):
        mistakes_by_function.setdefault(m.function, []).append(m)
    for function, mistakes in mistakes_by_function.items():
        index = tests.get(function)
        if index is None:
            unnamed.extend(f"{function}:{m.name} (no test cell test_{function})" for m in mistakes)
            continue
        for m in mistakes:
            # The shortest key containing the hint in each check: a hint may be part of a longer one.
            keys = []
            for site in (s for s in sites if s.cell == index):
                matching = sorted((k for k in site.keys if m.hint in k), key=len)
                if matching:
                    keys.append((site, matching[0]))
            if not keys:
                unnamed.append(f"{function}:{m.name}")
                continue
            calls = []
            _run(_prefix(nb, index, function, m.code) + [_visible(nb.cells[index].source)], calls)
            for site, key in keys:
                seen = [actual for actual, ms in calls if frozenset(ms) == site.keys]
                if not seen:
                    disagreements.append(f"{function}:{m.name}: the check never reached the mistakes naming {key!r}")
                    continue
                outputs[(site.cell, site.keys, key)] = seen[0]
                if key in site.observed and not values_close(seen[0], site.observed[key], atol=1e-5, rtol=1e-4):
                    disagreements.append(
                        f"{function}:{m.name}: the notebook says {_short(site.observed[key])} for {key!r}, "
                        f"the catalogued code gives {_short(seen[0])}"
                    )
    return Report(path, outputs, sites, disagreements, unnamed)


def _short(value: Any) -> str:
    text = _literal(value) or repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def _round(x: float) -> float:
    """6 decimals and at most 7 significant digits (float32 noise dropped); -0.0 becomes 0.0."""
    return float(f"{round(float(x), DIGITS):.7g}") + 0.0


def _literal(value: Any) -> str | None:
    """Python source for ``value`` in the notebooks' style, or None when it has no literal form."""
    import numpy as np
    import torch

    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, (int, float, np.floating, np.integer)):
        return repr(_round(value)) if math.isfinite(float(value)) else f"float({str(float(value))!r})"
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        if value.dtype == torch.bool:
            return f"torch.tensor({value.tolist()!r})"
        data = value.double().apply_(_round).tolist() if value.numel() else value.tolist()
        return f"torch.tensor({data!r})"
    if isinstance(value, tuple):
        parts = [_literal(v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else v) for v in value]
        return None if None in parts else "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
    return None


def _is_literal(node: ast.expr) -> bool:
    """A number, a (nested) list or tuple of numbers, or ``torch.tensor(<those>)``."""
    try:
        ast.literal_eval(node)
        return True
    except ValueError:
        pass
    if isinstance(node, ast.Call) and ast.unparse(node.func) in ("torch.tensor", "tensor") and len(node.args) == 1:
        return not node.keywords and _is_literal(node.args[0])
    return False


def _offset(lines: list[str], lineno: int, col: int) -> int:
    """Character offset in the joined source of an AST (line, UTF-8 byte column) position."""
    before = sum(len(line) for line in lines[: lineno - 1])
    return before + len(lines[lineno - 1].encode()[:col].decode())


def _bare_number(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) or (isinstance(node, ast.UnaryOp) and isinstance(node.operand, ast.Constant))


def sync(assignment: str, notebook: Path | None = None) -> tuple[Report, int]:
    """Rewrite the literal mistakes values of ``assignment``'s solution notebook; returns (report, changed)."""
    from clipcourse.checks.core import values_close

    report = analyse(assignment, notebook)
    nb = nbformat.read(report.notebook, as_version=4)
    edits: dict[int, list[tuple[int, int, str]]] = {}
    for site in report.sites:
        lines = nb.cells[site.cell].source.splitlines(keepends=True)
        for key, node in site.values.items():
            value = report.outputs.get((site.cell, site.keys, key))
            if value is None or not _is_literal(node):
                continue
            current = site.observed.get(key)
            if current is not None and values_close(value, current, atol=1e-6, rtol=1e-6):
                continue  # already right: rewrite only what disagrees
            if _bare_number(node) and hasattr(value, "numel") and value.numel() == 1:
                value = value.item()
            text = _literal(value)
            if text is None:
                continue
            start = _offset(lines, node.lineno, node.col_offset)
            end = _offset(lines, node.end_lineno, node.end_col_offset)
            if nb.cells[site.cell].source[start:end] != text:
                edits.setdefault(site.cell, []).append((start, end, text))
    for index, changes in edits.items():
        source = nb.cells[index].source
        for start, end, text in sorted(changes, reverse=True):
            source = source[:start] + text + source[end:]
        nb.cells[index].source = source
    changed = sum(len(c) for c in edits.values())
    if changed:
        nbformat.write(nb, report.notebook)
    return report, changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.mistakes", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("sync", "check"))
    parser.add_argument("assignments", nargs="+", metavar="chNN")
    args = parser.parse_args(argv)
    status = 0
    for assignment in args.assignments:
        if args.command == "sync":
            report, changed = sync(assignment)
            print(f"{assignment}: {changed} mistakes value(s) rewritten in {report.notebook.name}")
        else:
            report = analyse(assignment)
        for line in report.disagreements:
            print(f"  disagrees: {line}")
        for line in report.unnamed:
            print(f"  caught by another check (no mistakes={{...}} entry names its hint): {line}")
        status |= bool(report.disagreements if args.command == "check" else False)
    return status
