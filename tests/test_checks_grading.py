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
            check.shape(torch.zeros(3), (2, 3), hint="transposed?", required=False)
            check.close(torch.ones(2), torch.zeros(2), hint="generic", mistakes={"you forgot to subtract": torch.ones(2)})
            check.scalar(torch.ones(2), required=False)
            check.check(True, "fine")
    out = capsys.readouterr().out
    assert out.count("[FAIL]") == 3 and out.count("[pass]") == 1
    assert "transposed?" in str(err.value) and "you forgot to subtract" in str(err.value)
    assert "generic" not in str(err.value)  # the specific mistake's hint wins


def _stub(a, b):
    # YOUR CODE HERE
    raise NotImplementedError()


def test_stub_says_once_that_it_is_not_written_and_stops(capsys):
    with pytest.raises(CheckFailed, match="_stub is not written yet") as err:
        with Checks("f") as check:
            out = _stub(1, 2)
            check.shape(out, (2,))
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("[TODO] f: _stub is not written yet")
    assert "[pass]" not in out and "[FAIL]" not in out and "NotImplementedError()" in out
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_stub_caught_by_a_raises_check_still_stops_the_block(capsys):
    with pytest.raises(CheckFailed, match="not written yet"):
        with Checks("f") as check:
            check.raises(ValueError, _stub, 1, 2, what="rejects bad input")
    assert "[FAIL]" not in capsys.readouterr().out


def test_not_implemented_from_torch_is_an_ordinary_error(capsys):
    with pytest.raises(CheckFailed) as err:
        with Checks("f"):
            torch.empty(2, device="meta").tolist()  # torch raises NotImplementedError: no data
    assert "not written yet" not in str(err.value) and "NotImplementedError in this cell, line" not in str(err.value)
    assert "NotImplementedError in test_not_implemented_from_torch_is_an_ordinary_error, line" in str(err.value)


def test_learner_frame_skips_library_frames():
    import json

    from clipcourse.checks.learner import learner_frame

    class Lib:
        pass

    try:
        json.JSONEncoder().default(Lib())  # raises TypeError inside the standard library
    except TypeError as exc:
        assert learner_frame(exc.__traceback__).filename == __file__  # the learner's line, not json/encoder.py


def _learner_function(a, b):
    scale = 2.0
    return scale * (a @ b)  # the learner's line


def test_error_inside_block_names_the_learners_function_line_and_source():
    with pytest.raises(CheckFailed) as err:
        with Checks("f"):
            _learner_function(torch.zeros(2, 3), torch.zeros(2, 3))
    message = str(err.value)
    assert "RuntimeError in _learner_function, line" in message and "`return scale * (a @ b)" in message
    line = _learner_function.__code__.co_firstlineno + 2
    assert f"line {line}:" in message and "torch" not in message.split(":")[0]


def test_a_failed_required_check_skips_the_checks_that_build_on_it(capsys):
    with pytest.raises(CheckFailed) as err:
        with Checks("f") as check:
            out = None
            check.type(out, torch.Tensor)
            check.shape(out, (2, 3))
            check.close(out, torch.ones(2, 3))
            torch.diagonal(out)  # would raise TypeError: reported as skipped, not as a second failure
    out = capsys.readouterr().out
    assert out.count("[FAIL]") == 1 and out.count("[skip]") == 3 and "[pass]" not in out
    assert "(needs: returns a Tensor)" in out and "1 of 1 checks failed (3 skipped)" in str(err.value)


def test_a_failed_shape_skips_only_the_checks_of_that_value(capsys):
    per_image, per_text = torch.ones(3, 2), torch.ones(3, 2)  # per_text should be [2, 3]
    with pytest.raises(CheckFailed):
        with Checks("f") as check:
            check.shape(per_image, (3, 2))
            check.shape(per_text, (2, 3))
            check.close(per_image, torch.ones(3, 2))
            check.close(per_text, torch.ones(2, 3), what="per_text is the transpose")
    out = capsys.readouterr().out
    assert out.count("[pass]") == 2 and out.count("[FAIL]") == 1
    assert "[skip] f: per_text is the transpose (needs: shape is (2, 3))" in out


def test_a_catalogued_mistake_is_named_even_after_its_shape_failed(capsys):
    out = torch.ones(3)
    with pytest.raises(CheckFailed) as err:
        with Checks("f") as check:
            check.shape(out, (2,))
            check.close(out, torch.ones(2), mistakes={"you averaged the wrong dimension": torch.ones(3)})
    assert "you averaged the wrong dimension" in str(err.value) and "[skip]" not in capsys.readouterr().out


def test_one_tensor_returned_twice_is_still_compared_where_its_shape_fits(capsys):
    logits = torch.ones(3, 2)
    with pytest.raises(CheckFailed):
        with Checks("f") as check:
            check.shape(logits, (2, 3))  # as logits_per_text: wrong
            check.close(logits, torch.ones(3, 2), what="as logits_per_image")  # right shape: compared
            check.close(logits, torch.ones(2, 3), what="as logits_per_text")  # skipped
    out = capsys.readouterr().out
    assert "[pass] f: as logits_per_image" in out and "[skip] f: as logits_per_text" in out


def test_independent_checks_still_all_run(capsys):
    with pytest.raises(CheckFailed):
        with Checks("f") as check:
            check.close(torch.ones(2), torch.zeros(2), what="first")
            check.check(False, "second")
            check.close(torch.ones(2), torch.ones(2), what="third")
    out = capsys.readouterr().out
    assert out.count("[FAIL]") == 2 and out.count("[pass]") == 1 and "[skip]" not in out


def test_required_plain_check_skips_the_rest(capsys):
    with pytest.raises(CheckFailed):
        with Checks("f") as check:
            check.check(False, "runs without error", required=True)
            check.check(True, "the weights changed")
    out = capsys.readouterr().out
    assert "[pass]" not in out and "[skip] f: the weights changed (needs: runs without error)" in out


def test_close_lines_state_the_tolerance_and_the_largest_difference(capsys):
    with Checks("f") as check:
        check.close(torch.ones(2), torch.ones(2), atol=1e-3, rtol=0)
    assert "[pass] f: values match the reference (tolerance 0.001)" in capsys.readouterr().out
    with pytest.raises(CheckFailed):
        with Checks("f") as check:
            check.close(torch.tensor([1.0, 1.25]), torch.ones(2))
    out = capsys.readouterr().out
    assert "[FAIL] f: values match the reference (largest difference 0.25, tolerance 1e-05 + 0.0001 x |expected|)" in out


def test_unmatched_failure_describes_what_differs_instead_of_the_recipe(capsys):
    with pytest.raises(CheckFailed) as err:
        with Checks("f") as check:
            check.close(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[1.0, 2.0], [3.0, 5.0]]),
                        hint="normalise every row then multiply")  # fmt: skip
    assert "rows 1 differ, the other rows match" in str(err.value)
    assert "normalise every row" not in str(err.value)


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
    with pytest.raises(CheckFailed, match=r"largest difference 0.5, tolerance 1e-05 \+ 0.0001 x \|expected\|"):
        grading.expect_close(torch.tensor([1.0, 1.5]), torch.ones(2), "x")
    with pytest.raises(CheckFailed, match="shape"):
        grading.expect_close(torch.ones(2), torch.ones(3), "x")


def test_jupyter_shows_the_message_without_library_frames():
    lines = CheckFailed("f: 1 of 2 checks failed\n  - shape: got (3,)")._render_traceback_()
    assert lines == ["CheckFailed: f: 1 of 2 checks failed\n  - shape: got (3,)"]
