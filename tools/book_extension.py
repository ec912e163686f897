"""Sphinx extension for this book (``_config.yml``: ``sphinx.local_extensions``).

- Kernels started by the build print text progress bars (``clipcourse.progress``):
  widget bars would need scripts from a CDN in the static pages.
- Each script is included once per page. jupyter-book 1.0 with sphinx-thebe and
  sphinx-togglebutton emits some inline scripts twice, and a second
  ``const THEBE_JS_URL`` is a JavaScript error on every page.
- A first visit starts in the theme's "auto" (light or dark) mode: sphinx-book-theme
  leaves pydata-sphinx-theme's ``default_mode`` empty, which its script reports as
  an error on the console.
"""

from __future__ import annotations

import os
from typing import Any

from clipcourse.progress import ENV


def _key(script: Any) -> tuple[str, str]:
    attributes = getattr(script, "attributes", {}) or {}
    return str(getattr(script, "filename", script) or ""), str(attributes.get("body", ""))


def _one_of_each_script(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    if not context.get("default_mode"):
        context["default_mode"] = "auto"
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple[str, str]] = set()
    unique = []
    for script in scripts:
        key = _key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app: Any) -> dict[str, Any]:
    os.environ[ENV] = "text"  # inherited by the kernels this build starts
    app.connect("html-page-context", _one_of_each_script, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
