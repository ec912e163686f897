"""Colab set-up logic and device helpers (the CUDA path is exercised on a GPU machine only)."""

from __future__ import annotations

import re

import pytest
import torch
import yaml

from clipcourse import colab, device


def test_setup_does_nothing_outside_colab():
    calls = []
    assert colab.setup(modules={}, run=lambda *a, **k: calls.append(a)) == []
    assert calls == []


def test_setup_on_colab_installs_only_what_is_missing(monkeypatch):
    calls = []
    monkeypatch.setattr(colab, "missing_requirements", lambda: ["faiss-cpu>=1.7"])
    installed = colab.setup(modules={"google.colab": object()}, run=lambda cmd, check: calls.append(cmd))
    assert installed == ["faiss-cpu>=1.7"]
    assert calls and calls[0][-1] == "faiss-cpu>=1.7" and "torch" not in " ".join(calls[0])


def test_missing_requirements_never_lists_torch_and_skips_installed():
    extras = ["faiss-cpu>=1.7", "tqdm>=4"]
    assert colab.missing_requirements(extras, installed={"tqdm": "4.66"}) == ["faiss-cpu>=1.7"]
    assert colab.missing_requirements(extras, installed={"tqdm": "4.66", "FAISS_CPU": "1.8"}) == []
    assert colab.missing_requirements(["tqdm>=4"], installed={"tqdm": "3.9"}) == ["tqdm>=4"]  # too old
    with pytest.raises(ValueError, match="torch"):
        colab.missing_requirements(["torch>=2"], installed={})
    with pytest.raises(ValueError, match="torch"):
        colab.pip_install_command(["torchvision==0.20"])


def test_colab_extra_is_declared_in_pyproject_without_torch(repo):
    from packaging.requirements import Requirement

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    extras = tomllib.loads((repo / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    names = {Requirement(r).name for r in extras[colab.EXTRA]}
    assert names and names.isdisjoint(colab.PROTECTED)
    assert colab.missing_requirements(extras[colab.EXTRA], installed={n: "999" for n in names}) == []


def test_colab_requirements_reads_the_extra_from_package_metadata(monkeypatch):
    monkeypatch.setattr(
        colab.importlib.metadata,
        "requires",
        lambda name: ["numpy>=1.24", 'scikit-image>=0.22; extra == "colab"', 'pytest>=8; extra == "dev"'],
    )
    assert colab.colab_requirements() == ["scikit-image>=0.22"]


def test_bootstrap_installs_from_the_book_repository(repo):
    url = yaml.safe_load((repo / "_config.yml").read_text())["repository"]["url"]
    assert colab.REPOSITORY_URL == url
    assert f"clipcourse[{colab.EXTRA}] @ git+{url}" in colab.BOOTSTRAP_CELL
    assert "torch" not in re.sub(r"never torch", "", colab.BOOTSTRAP_CELL.split("\n", 1)[1])
    exec(compile(colab.BOOTSTRAP_CELL, "bootstrap", "exec"), {})  # a no-op outside Colab


@pytest.mark.parametrize("cuda", [False, True])
def test_device_and_synchronize_follow_cuda_availability(monkeypatch, cuda):
    """CPU without CUDA (and no CUDA call at all), CUDA when present; the timer syncs only there."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    kind = "cuda" if cuda else "cpu"
    assert device.get_device().type == kind
    called = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: called.append(a))
    device.synchronize(kind)
    assert len(called) == int(cuda)
    if not cuda:
        with device.timer("cpu") as t:
            pass
        assert called == [] and t["seconds"] >= 0


def test_seed_everything_repeats_random_draws():
    device.seed_everything(3)
    a = torch.rand(3)
    device.seed_everything(3)
    assert torch.equal(a, torch.rand(3))


def test_setup_cell_displays_nothing_when_nothing_was_installed(capsys):
    colab.Installed()._ipython_display_()
    assert capsys.readouterr().out == ""
    colab.Installed(["faiss-cpu>=1.7"])._ipython_display_()
    assert "faiss-cpu" in capsys.readouterr().out
