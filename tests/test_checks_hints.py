"""The hints a learner gets when no catalogued mistake matches: measured, actionable, never false."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from clipcourse.checks import describe_difference
from clipcourse.checks.diagnose import largest_difference, tolerance_text


def test_transpose_with_a_different_shape():
    x = torch.arange(6.0).reshape(2, 3)
    assert "transpose of the expected one (shape (3, 2), expected (2, 3))" in describe_difference(x.T, x)


def test_shape_names_the_dimension_that_differs():
    text = describe_difference(torch.zeros(4, 3), torch.zeros(4, 2))
    assert text == "shape (4, 3), expected (4, 2): dimension 1 has size 3, expected 2"
    assert "2 dimensions, expected 1" in describe_difference(torch.zeros(1, 3), torch.zeros(3))


def test_square_transpose_is_named():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert describe_difference(x.T, x).startswith("your result is the transpose of the expected one")


def test_constant_factor_offset_and_sign():
    e = torch.tensor([[0.5, -1.0], [2.0, 0.25]])
    assert "every value is 14.29 times the expected one" in describe_difference(e / 0.07, e)
    assert "off by the same amount (+1)" in describe_difference(e + 1, e)
    assert "opposite sign" in describe_difference(-e, e)


def test_rows_or_columns_that_differ():
    e = torch.arange(12.0).reshape(3, 4)
    a = e.clone()
    a[2, 1] += 1
    assert "rows 2 differ, the other rows match" in describe_difference(a, e)
    a = e.clone()
    a[:, 3] += torch.tensor([1.0, 2.0, 3.0])
    assert "columns 3 differ, the other columns match" in describe_difference(a, e)


def test_properties_the_reference_has_and_the_result_lacks():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, generator=g)
    unit = F.normalize(x, dim=-1)
    text = describe_difference(x @ torch.randn(3, 3, generator=g), unit)
    assert "the expected rows have length 1, yours have lengths" in text
    probs = torch.randn(3, 5, generator=g).softmax(-1)
    assert "the expected rows sum to 1" in describe_difference(probs.log(), probs)
    sym = unit @ unit.T
    noisy = sym + torch.triu(torch.full_like(sym, 0.1), diagonal=1)
    assert "the expected result is symmetric, yours is not" in describe_difference(noisy, sym)


def test_nan_and_scalars_and_non_numbers():
    assert "contains NaN at 1 of 2 positions (first at [1])" in describe_difference(torch.tensor([1.0, float("nan")]), torch.ones(2))
    text = describe_difference(torch.tensor(0.5), torch.tensor(0.25))
    assert text == "got 0.5, expected 0.25 (difference 0.25); yours is 2 times the expected value"
    assert describe_difference(None, torch.ones(2)) == "your result is a NoneType, expected numbers of shape (2,)"


def test_nothing_false_for_an_unstructured_difference():
    g = torch.Generator().manual_seed(1)
    e, a = torch.randn(3, 3, generator=g), torch.randn(3, 3, generator=g)
    text = describe_difference(a, e)
    assert "transpose" not in text and "times the expected" not in text and "same amount" not in text
    assert text.startswith("largest difference") or "length 1" not in text


def test_largest_difference_and_tolerance_text():
    assert largest_difference(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 1.0])) == (2.0, "[1]")
    assert largest_difference(torch.ones(2), torch.ones(3)) is None
    assert largest_difference(torch.tensor([float("nan")]), torch.ones(1))[0] == float("inf")
    assert tolerance_text(1e-5, 1e-4) == "tolerance 1e-05 + 0.0001 x |expected|"
    assert tolerance_text(1e-3, 0) == "tolerance 0.001"
