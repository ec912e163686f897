"""One source for the mistake catalogue: the solution notebooks' mistakes={...} values agree with it.

``python -m autograder.mistakes sync chNN`` rewrites the literal values from the catalogued
code; these tests fail when someone edits one side without the other.
"""

from __future__ import annotations

import shutil

import nbformat
import pytest

from autograder import course
from autograder.mistakes import sync

CATALOGUED = [a for a in course.assignments() if (sync.SOLUTIONS.parent / "autograder" / "mistakes" / f"{a}.py").exists()]


@pytest.mark.slow
@pytest.mark.parametrize("assignment", CATALOGUED)
def test_notebook_mistakes_values_equal_what_the_catalogue_code_produces(assignment):
    report = sync.analyse(assignment)
    assert report.disagreements == []
    named = {key for site in report.sites for key in site.keys}
    assert named, "no visible check has a mistakes={...}"
    assert {k for (_, _, k) in report.outputs} == named, "a mistakes key no catalogued mistake produces"


def test_sync_rewrites_a_stale_literal_and_check_catches_it(tmp_path):
    source = next(iter(sorted((sync.SOLUTIONS / "ch01").glob("*.ipynb"))))
    path = tmp_path / source.name
    shutil.copy(source, path)
    nb = nbformat.read(path, as_version=4)
    stale = "'divide the similarities by the temperature, do not multiply': 0.786996"
    cell = next(c for c in nb.cells if stale in c.source)
    cell.source = cell.source.replace(stale, stale.replace("0.786996", "0.5"))
    nbformat.write(nb, path)

    report = sync.analyse("ch01", path)
    assert any("temperature_multiplied" in line for line in report.disagreements)
    _, changed = sync.sync("ch01", path)
    assert changed == 1
    assert stale in path.read_text().replace('\\"', '"') or "0.786996" in path.read_text()
    assert sync.analyse("ch01", path).disagreements == []


def test_literals_are_written_in_the_notebooks_style():
    import torch

    assert sync._literal(torch.tensor([[600.0001220703125, -0.0]])) == "torch.tensor([[600.0001, 0.0]])"
    assert sync._literal(0.1107031234) == "0.110703"
    assert sync._literal((torch.tensor(1.5), 2.0)) == "(1.5, 2.0)"
    assert sync._literal(object()) is None
