"""Say what differs between a learner's result and the reference, in terms a learner can act on.

Used when no catalogued mistake matches: instead of repeating the recipe (which
the learner may believe they followed), describe the symptom: a shape that
differs and in which dimension, a transpose, a constant factor or offset, the
rows or columns that differ, or a property the reference has and the result
lacks (unit-length rows, rows summing to 1, symmetry). Every sentence is
measured on the two values, so it is never a guess.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["describe_difference", "largest_difference", "tolerance_text"]


def tolerance_text(atol: float, rtol: float) -> str:
    """The tolerance of :func:`~clipcourse.checks.values_close` in words: ``1e-05 + 0.0001 x |expected|``."""
    if rtol == 0:
        return f"tolerance {atol:.3g}"
    return f"tolerance {atol:.3g} + {rtol:.3g} x |expected|"


def _tensor(value: Any) -> torch.Tensor | None:
    try:
        if isinstance(value, torch.Tensor):
            return value.detach().to("cpu", torch.float64)
        return torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return None


def _index(flat: int, shape: tuple[int, ...]) -> str:
    if not shape:
        return ""
    index = []
    for size in reversed(shape):
        index.append(flat % size)
        flat //= size
    return "[" + ", ".join(str(i) for i in reversed(index)) + "]"


def largest_difference(actual: Any, expected: Any) -> tuple[float, str] | None:
    """``(largest |actual - expected|, index like "[0, 2]")`` for same-shape values, else None.

    NaN anywhere counts as an infinite difference.
    """
    a, e = _tensor(actual), _tensor(expected)
    if a is None or e is None or a.shape != e.shape or a.numel() == 0:
        return None
    diff = (a - e).abs()
    same_inf = torch.isinf(a) & torch.isinf(e) & (a == e)
    diff = torch.where(same_inf, torch.zeros_like(diff), diff)
    diff = torch.where(torch.isnan(diff), torch.full_like(diff, math.inf), diff)
    flat = int(diff.reshape(-1).argmax())
    return float(diff.reshape(-1)[flat]), _index(flat, tuple(a.shape))


def _close(a: torch.Tensor, e: torch.Tensor, atol: float, rtol: float) -> torch.Tensor:
    """Elementwise closeness with the same rule as ``values_close`` (NaN never matches)."""
    return ((a - e).abs() <= atol + rtol * e.abs()) | (torch.isinf(a) & (a == e))


def _span(values: torch.Tensor) -> str:
    lo, hi = float(values.min()), float(values.max())
    return f"{lo:.4g}" if math.isclose(lo, hi, rel_tol=1e-3, abs_tol=1e-6) else f"{lo:.4g} to {hi:.4g}"


def _which(indices: list[int], limit: int = 6) -> str:
    shown = ", ".join(str(i) for i in indices[:limit])
    return shown + (f" and {len(indices) - limit} more" if len(indices) > limit else "")


def _shape_sentence(a: torch.Tensor, e: torch.Tensor, atol: float, rtol: float) -> str:
    got, want = tuple(a.shape), tuple(e.shape)
    if a.dim() == 2 and got == want[::-1] and bool(_close(a.T, e, atol, rtol).all()):
        return f"your result is the transpose of the expected one (shape {got}, expected {want})"
    if a.dim() != e.dim():
        return f"shape {got} has {a.dim()} dimensions, expected {e.dim()}: {want}"
    dims = [f"dimension {i} has size {g}, expected {w}" for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    return f"shape {got}, expected {want}: " + "; ".join(dims)


def _relation(a: torch.Tensor, e: torch.Tensor, atol: float, rtol: float) -> str | None:
    """A global relation between result and reference: transpose, constant factor, constant offset."""
    if a.dim() == 2 and a.shape[0] == a.shape[1] and a.shape[0] > 1 and bool(_close(a.T, e, atol, rtol).all()):
        return "your result is the transpose of the expected one (rows and columns swapped)"
    nonzero = e.abs() > 1e-12
    if a.numel() > 1 and bool(nonzero.any()):
        ratio = a[nonzero] / e[nonzero]
        factor = float(ratio.median())
        if factor != 0 and math.isfinite(factor) and bool(_close(a, factor * e, atol, rtol).all()):
            if math.isclose(factor, -1.0, rel_tol=1e-3):
                return "every value has the opposite sign of the expected one"
            return f"every value is {factor:.4g} times the expected one (off by a constant factor)"
    offset = float((a - e).reshape(-1).median())
    if a.numel() > 1 and math.isfinite(offset) and bool(_close(a, e + offset, atol, rtol).all()):
        return f"every value is off by the same amount ({offset:+.4g})"
    return None


def _rows_and_columns(a: torch.Tensor, e: torch.Tensor, atol: float, rtol: float) -> str | None:
    if a.dim() != 2:
        return None
    ok = _close(a, e, atol, rtol)
    bad_rows = [i for i in range(a.shape[0]) if not bool(ok[i].all())]
    bad_cols = [j for j in range(a.shape[1]) if not bool(ok[:, j].all())]
    if 0 < len(bad_rows) < a.shape[0]:
        return f"rows {_which(bad_rows)} differ, the other rows match"
    if 0 < len(bad_cols) < a.shape[1]:
        return f"columns {_which(bad_cols)} differ, the other columns match"
    return None


def _missing_properties(a: torch.Tensor, e: torch.Tensor) -> list[str]:
    """Properties the reference has and the result lacks, measured on both."""
    found = []

    def holds(x: torch.Tensor, target: float | torch.Tensor) -> bool:
        return bool(torch.isfinite(x).all()) and bool(((x - target).abs() <= 1e-4).all())

    if e.dim() >= 1 and e.shape[-1] > 1 and a.shape == e.shape:
        if holds(e.norm(dim=-1), 1.0) and not holds(a.norm(dim=-1), 1.0):
            found.append(f"the expected rows have length 1, yours have lengths {_span(a.norm(dim=-1))}")
        if e.dim() == 2 and holds(e.norm(dim=0), 1.0) and not holds(a.norm(dim=0), 1.0):
            found.append(f"the expected columns have length 1, yours have lengths {_span(a.norm(dim=0))}")
        if holds(e.sum(dim=-1), 1.0) and bool((e >= 0).all()) and not holds(a.sum(dim=-1), 1.0):
            found.append(f"the expected rows sum to 1, yours sum to {_span(a.sum(dim=-1))}")
        if e.dim() == 2 and e.shape[0] == e.shape[1] and holds(e - e.T, 0.0) and not holds(a - a.T, 0.0):
            found.append(f"the expected result is symmetric, yours is not (largest |x - x.T| {float((a - a.T).abs().max()):.3g})")
        if bool((e >= 0).all()) and bool((a < 0).any()):
            found.append(f"yours has {int((a < 0).sum())} negative values, the expected ones are all >= 0")
    return found


def describe_difference(actual: Any, expected: Any, *, atol: float = 1e-5, rtol: float = 1e-4) -> str:
    """One or more measured sentences saying how ``actual`` differs from ``expected``.

    >>> describe_difference(torch.tensor([2.0, 4.0]), torch.tensor([1.0, 2.0]))
    'every value is 2 times the expected one (off by a constant factor); largest difference 2 at [1]'
    """
    a, e = _tensor(actual), _tensor(expected)
    if e is None:
        return "the reference could not be read as numbers"
    if a is None:
        return f"your result is a {type(actual).__name__}, expected numbers of shape {tuple(e.shape)}"
    if a.shape != e.shape:
        if a.numel() == 1 and e.numel() == 1:
            a, e = a.reshape(()), e.reshape(())
        else:
            return _shape_sentence(a, e, atol, rtol)
    bad = ~torch.isfinite(a) & torch.isfinite(e)
    if bool(bad.any()):
        kind = "NaN" if bool(torch.isnan(a).any()) else "inf"
        first = _index(int(bad.reshape(-1).nonzero()[0]), tuple(a.shape))
        where = f" (first at {first})" if first else ""
        return f"your result contains {kind} at {int(bad.sum())} of {a.numel()} positions{where}, the expected values are finite"
    if a.numel() == 1:
        got, want = float(a), float(e)
        sentence = f"got {got:.6g}, expected {want:.6g} (difference {abs(got - want):.3g})"
        if want != 0 and got != 0:
            sentence += f"; yours is {got / want:.4g} times the expected value"
        return sentence
    relation = _relation(a, e, atol, rtol) or _rows_and_columns(a, e, atol, rtol)
    parts = ([relation] if relation else []) + _missing_properties(a, e)
    worst = largest_difference(a, e)
    if worst is not None:
        parts.append(f"largest difference {worst[0]:.3g} at {worst[1]}")
    return "; ".join(parts)
