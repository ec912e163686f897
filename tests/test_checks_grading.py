"""The learner checks and the grading guard."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clipcourse import grading
from clipcourse.checks import CheckFailed, Checks, values_close


def test_passing_block_prints_one_line_per_check(capsys):
    with Checks("f") as check:
        check.shape(torch.zeros(2, 3), (2, 3))
        check.close(torch.ones(2), torch.ones(2))
        check.scalar(torch.tensor(1.0))
        check.finite(torch.ones(2))
    out = capsys.readouterr().out
    assert out.count("[pass]") == 4 and "all 4 checks passed" in out


def test_failures_are_collected_with_hints_then_raised(capsys):
    with pytest.raises(CheckFailed) as err:
        with Checks("f") as check:
            check.shape(torch.zeros(3), (2, 3), hint="transposed?")
            check.close(torch.ones(2), torch.zeros(2), hint="generic", mistakes={"you forgot to subtract": torch.ones(2)})
            check.scalar(torch.ones(2))
            check.check(True, "fine")
    out = capsys.readouterr().out
    assert out.count("[FAIL]") == 3 and out.count("[pass]") == 1
    assert "transposed?" in str(err.value) and "you forgot to subtract" in str(err.value)
    assert "generic" not in str(err.value)  # the specific mistake's hint wins


def test_stub_gets_a_hint_to_implement(capsys):
    with pytest.raises(CheckFailed, match="NotImplementedError"):
        with Checks("f"):
            raise NotImplementedError()


def test_error_inside_block_names_type_and_line():
    with pytest.raises(CheckFailed, match="RuntimeError at line"):
        with Checks("f"):
            torch.zeros(2) @ torch.zeros(3)


def test_raises_check():
    def bad(k):
        raise ValueError("k too large")

    with Checks("f") as check:
        check.raises(ValueError, bad, 5, what="rejects a large k")
    with pytest.raises(CheckFailed, match="no error was raised"):
        with Checks("f") as check:
            check.raises(ValueError, lambda: None, what="rejects")


@pytest.mark.parametrize(
    ("a", "b", "ok"),
    [
        (torch.ones(3), torch.ones(3) + 1e-7, True),
        (torch.ones(3), torch.ones(3) + 1e-2, False),
        (torch.ones(3), torch.ones(1, 3), False),  # shape matters
        (torch.tensor([float("nan")]), torch.tensor([float("nan")]), False),
        (np.ones(2), [1.0, 1.0], True),
        ("text", torch.ones(1), False),
        (torch.tensor([1.0]), torch.tensor([float("inf")]), False),
        (torch.tensor([float("inf")]), torch.tensor([float("inf")]), True),
        (torch.tensor([float("-inf")]), torch.tensor([float("inf")]), False),
    ],
)
def test_values_close(a, b, ok):
    assert values_close(a, b) is ok


def test_monkeypatched_allclose_is_detected(monkeypatch):
    monkeypatch.setattr(torch, "allclose", lambda *a, **k: True)
    assert "torch.allclose" in grading.tampered()
    with pytest.raises(grading.GraderTampered, match="torch.allclose"):
        grading.assert_untampered()
    with pytest.raises(CheckFailed, match="intact"):
        with Checks("f") as check:
            check.check(True, "fine")


def test_monkeypatched_check_helpers_are_detected(monkeypatch):
    import clipcourse.checks.core as core

    monkeypatch.setattr(core.Checks, "close", lambda *a, **k: True)
    assert "clipcourse.checks.core.Checks.close" in grading.tampered()


def test_protect_snapshots_reference_modules(monkeypatch):
    import types

    ref = types.ModuleType("ref")
    ref.f = lambda x: x

    class Config:
        @classmethod
        def make(cls):
            return cls()

        @staticmethod
        def check():
            return True

    Config.__module__ = "ref"
    ref.Config = Config
    grading.protect(ref)
    assert grading.tampered() == [], "classmethods and staticmethods must not look tampered"
    monkeypatch.setattr(ref, "f", lambda x: 0)
    assert "ref.f" in grading.tampered()


def test_plain_tensor_rejects_lookalikes():
    class Sneaky(torch.Tensor):
        def __eq__(self, other):
            return True

    with pytest.raises(CheckFailed, match="torch.Tensor"):
        grading.plain_tensor(torch.ones(2).as_subclass(Sneaky))
    with pytest.raises(CheckFailed):
        grading.plain_tensor([1.0])
    t = torch.ones(2, requires_grad=True)
    assert not grading.plain_tensor(t).requires_grad


def test_expect_close_reports_the_largest_difference():
    grading.expect_close(torch.ones(2), torch.ones(2), "same")
    with pytest.raises(CheckFailed, match="largest difference 0.5"):
        grading.expect_close(torch.tensor([1.0, 1.5]), torch.ones(2), "x")
    with pytest.raises(CheckFailed, match="shape"):
        grading.expect_close(torch.ones(2), torch.ones(3), "x")
