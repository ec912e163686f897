"""Set-up for Google Colab: install what Colab lacks, never reinstall torch.

Every notebook's first cell installs this package on Colab with its ``colab``
extra (declared in ``pyproject.toml``; a two-line bootstrap, since the package is
not there yet) and then calls :func:`setup`. Outside Colab :func:`setup` installs
nothing. Requirement names and versions are read with ``packaging``.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from collections.abc import Iterable, Mapping

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

#: The course repository; the notebooks' bootstrap line and `_config.yml` use the same URL.
REPOSITORY_URL = "https://github.com/clip-from-scratch/clip-course"

#: The first lines of every notebook's first code cell (a test checks they match).
#: On Colab they install this package with its ``colab`` extra (pip keeps Colab's torch,
#: which satisfies the package's range); :func:`setup` then checks nothing is missing.
BOOTSTRAP_CELL = f"""\
# Set-up: on Colab this installs the course package (never torch); elsewhere it does nothing.
import subprocess, sys
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "clipcourse[colab] @ git+{REPOSITORY_URL}"], check=True)
from clipcourse.colab import setup; setup()"""

#: The optional-dependency group of ``pyproject.toml`` that the bootstrap line installs.
EXTRA = "colab"

#: Never installed or upgraded by :func:`setup`.
PROTECTED = frozenset({"torch", "torchvision", "torchaudio"})


def in_colab(modules: Mapping[str, object] | None = None) -> bool:
    """True inside a Google Colab runtime."""
    modules = sys.modules if modules is None else modules
    return "google.colab" in modules


def colab_requirements(distribution: str = "clipcourse") -> list[str]:
    """The requirements of the package's ``colab`` extra, read from its installed metadata."""
    extras = []
    for text in importlib.metadata.requires(distribution) or []:
        requirement = Requirement(text)
        if requirement.marker is not None and requirement.marker.evaluate({"extra": EXTRA}):
            requirement.marker = None
            extras.append(str(requirement))
    return extras


def _check_not_protected(requirement: Requirement) -> None:
    if canonicalize_name(requirement.name) in PROTECTED:
        raise ValueError(f"refusing to install {requirement.name!r} on Colab: it would replace Colab's own build")


def missing_requirements(
    requirements: Iterable[str] | None = None,
    installed: Mapping[str, str] | None = None,
) -> list[str]:
    """Requirements not satisfied by what is installed (absent, or a version outside the range).

    ``installed`` maps distribution names to versions (default: this environment);
    torch and its siblings are never listed.
    """
    if requirements is None:
        requirements = colab_requirements()
    if installed is None:
        installed = {d.metadata["Name"]: d.version for d in importlib.metadata.distributions()}
    have = {canonicalize_name(name): version for name, version in installed.items()}
    missing = []
    for text in requirements:
        requirement = Requirement(text)
        _check_not_protected(requirement)
        version = have.get(canonicalize_name(requirement.name))
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            missing.append(text)
    return missing


def pip_install_command(requirements: list[str]) -> list[str]:
    """The pip command that installs ``requirements`` without touching torch."""
    for text in requirements:
        _check_not_protected(Requirement(text))
    return [sys.executable, "-m", "pip", "install", "--quiet", *requirements]


class Installed(list):
    """The requirements :func:`setup` installed; a notebook shows nothing for it when empty.

    ``setup()`` is the last expression of every set-up cell, so Jupyter would print its value.
    """

    def _ipython_display_(self) -> None:
        if self:
            print("installed:", ", ".join(self))


def setup(*, modules: Mapping[str, object] | None = None, run=subprocess.run) -> Installed:
    """On Colab, install what the ``colab`` extra needs and is still missing; elsewhere do nothing.

    The bootstrap line installs ``clipcourse[colab]``, so this normally finds nothing
    to do; it repairs a runtime where an extra was removed or downgraded since.
    Returns what was installed.
    """
    if not in_colab(modules):
        return Installed()
    missing = missing_requirements()
    if missing:
        run(pip_install_command(missing), check=True)
    return Installed(missing)
