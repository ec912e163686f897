"""Shared fixtures: a private model cache, the repository root, and helpers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `autograder` is a folder of the repo, not an installed package

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # in-process plotting tests; not exported, so notebook kernels keep inline figures


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO
