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
    extras = {"faiss": "faiss-cpu>=1.7", "tqdm": "tqdm>=4"}
    assert colab.missing_requirements(extras, installed={"tqdm"}) == ["faiss-cpu>=1.7"]
    assert colab.missing_requirements(extras, installed={"tqdm", "FAISS-CPU"}) == []
    with pytest.raises(ValueError, match="torch"):
        colab.missing_requirements({"torch": "torch>=2"}, installed=set())
    with pytest.raises(ValueError, match="torch"):
        colab.pip_install_command(["torchvision==0.20"])


def test_default_extras_exclude_torch():
    names = {colab._requirement_name(r) for r in colab.COLAB_EXTRAS.values()}
    assert names.isdisjoint(colab.PROTECTED)


def test_bootstrap_installs_from_the_book_repository(repo):
    url = yaml.safe_load((repo / "_config.yml").read_text())["repository"]["url"]
    assert colab.REPOSITORY_URL == url
    assert f"git+{url}" in colab.BOOTSTRAP_CELL
    assert "torch" not in re.sub(r"never torch", "", colab.BOOTSTRAP_CELL.split("\n", 1)[1])
    exec(compile(colab.BOOTSTRAP_CELL, "bootstrap", "exec"), {})  # a no-op outside Colab


def test_device_is_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device.get_device().type == "cpu"
    called = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: called.append(a))
    device.synchronize("cpu")
    with device.timer("cpu") as t:
        pass
    assert called == [] and t["seconds"] >= 0


def test_device_prefers_cuda_when_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.get_device().type == "cuda"
    called = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: called.append(a))
    device.synchronize("cuda")
    assert len(called) == 1


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
