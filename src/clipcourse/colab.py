"""Set-up for Google Colab: install what Colab lacks, never reinstall torch.

Every notebook's first cell installs this package on Colab (a two-line
bootstrap, since the package is not there yet) and then calls :func:`setup`.
Outside Colab :func:`setup` installs nothing.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from collections.abc import Iterable, Mapping

#: The course repository; the notebooks' bootstrap line and `_config.yml` use the same URL.
REPOSITORY_URL = "https://github.com/clip-from-scratch/clip-course"

#: The first lines of every notebook's first code cell (a test checks they match).
#: On Colab they install this package (pip keeps Colab's torch, which satisfies
#: the package's range) and then :func:`setup` adds what Colab lacks.
BOOTSTRAP_CELL = f"""\
# Set-up: on Colab this installs the course package (never torch); elsewhere it does nothing.
import subprocess, sys
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "clipcourse @ git+{REPOSITORY_URL}"], check=True)
from clipcourse.colab import setup; setup()"""

#: Packages the lessons need that Colab may lack, as ``import name -> pip requirement``.
#: torch and torchvision are deliberately absent: Colab's build matches its CUDA driver.
COLAB_EXTRAS: dict[str, str] = {
    "faiss": "faiss-cpu>=1.7",
    "torchmetrics": "torchmetrics>=1.4",
    "tokenizers": "tokenizers>=0.15",
    "transformers": "transformers>=4.40,<6",
}

#: Never installed or upgraded by :func:`setup`.
PROTECTED = frozenset({"torch", "torchvision", "torchaudio"})


def in_colab(modules: Mapping[str, object] | None = None) -> bool:
    """True inside a Google Colab runtime."""
    modules = sys.modules if modules is None else modules
    return "google.colab" in modules


def _requirement_name(requirement: str) -> str:
    name = requirement
    for sep in "<>=!~[; @":
        name = name.split(sep)[0]
    return name.strip().lower()


def missing_requirements(
    extras: Mapping[str, str] = COLAB_EXTRAS,
    installed: Iterable[str] | None = None,
) -> list[str]:
    """Requirements from ``extras`` whose distribution is not installed; torch is never listed."""
    if installed is None:
        installed = {d.metadata["Name"].lower() for d in importlib.metadata.distributions()}
    have = {name.lower() for name in installed}
    missing = []
    for requirement in extras.values():
        name = _requirement_name(requirement)
        if name in PROTECTED:
            raise ValueError(f"refusing to install {name!r} on Colab: it would replace Colab's own build")
        if name not in have:
            missing.append(requirement)
    return missing


def pip_install_command(requirements: list[str]) -> list[str]:
    """The pip command that installs ``requirements`` without touching torch."""
    for requirement in requirements:
        if _requirement_name(requirement) in PROTECTED:
            raise ValueError(f"refusing to install {requirement!r}: torch stays as Colab ships it")
    return [sys.executable, "-m", "pip", "install", "--quiet", *requirements]


class Installed(list):
    """The requirements :func:`setup` installed; a notebook shows nothing for it when empty.

    ``setup()`` is the last expression of every set-up cell, so Jupyter would print its value.
    """

    def _ipython_display_(self) -> None:
        if self:
            print("installed:", ", ".join(self))


def setup(*, modules: Mapping[str, object] | None = None, run=subprocess.run) -> Installed:
    """Install missing extras on Colab; elsewhere do nothing. Returns what was installed."""
    if not in_colab(modules):
        return Installed()
    missing = missing_requirements()
    if missing:
        run(pip_install_command(missing), check=True)
    return Installed(missing)
