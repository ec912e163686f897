"""The built book as a reader meets it: a real headless Chromium, with no network.

Every page loads without console errors, formulas are typeset by the book's own
MathJax, images load, the search page finds a chapter by a word in it, every
notebook page's Colab link opens that notebook in the configured repository,
executed lessons show their progress bars' final state and their set-up cell
prints nothing.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tools.browser import CHROMIUM, chromium, offline_page, serve

REPO = Path(__file__).resolve().parent.parent

if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: CI installs the system's chromium package (see .ci/run)")
    pytest.skip(f"no browser at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)
pytest.importorskip("playwright")

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("book")]


@pytest.fixture(scope="module")
def site(built_book):
    html = built_book / "html"
    with serve(html) as base, chromium() as browser:
        yield html, base, browser


def _pages(html: Path) -> list[str]:
    return sorted(str(p.relative_to(html)) for p in html.rglob("*.html") if not p.relative_to(html).parts[0].startswith("_"))


def _open(browser, base: str, rel: str):
    page = offline_page(browser, base)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
    page.goto(base + rel, wait_until="load")
    return page, problems


def _wait_for_mathjax(page) -> None:
    page.wait_for_function(
        "() => !window.MathJax || (window.MathJax.startup && window.MathJax.startup.promise)", timeout=20_000
    )
    page.evaluate("() => window.MathJax && window.MathJax.startup ? window.MathJax.startup.promise : null")


def test_every_page_loads_offline_with_formulas_typeset_and_images_loaded(site):
    html, base, browser = site
    pages = _pages(html)
    assert "book/ch02_clip/lesson.html" in pages and "search.html" in pages
    failures, typeset = [], 0
    for rel in pages:
        page, problems = _open(browser, base, rel)
        _wait_for_mathjax(page)
        formulas = page.locator(".math").count()
        rendered = page.locator("mjx-container").count()
        if formulas and rendered < formulas:
            problems.append(f"{formulas} formulas but {rendered} typeset by MathJax")
        raw = page.evaluate("() => [...document.querySelectorAll('.math')].filter(e => !e.querySelector('mjx-container')).length")
        if formulas and raw:
            problems.append(f"{raw} formulas still show raw LaTeX")
        typeset += rendered
        broken = page.evaluate(
            "() => [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'))"
        )
        problems += [f"image does not load: {src}" for src in broken]
        failures += [f"{rel}: {p}" for p in problems]
        page.context.close()
    assert not failures, "\n".join(failures)
    assert typeset > 10, "the book's formulas were not typeset"


@pytest.mark.parametrize(
    ("word", "chapter"), [("SimCLR", "book/ch01_contrastive/"), ("Ilharco", "book/ch03_zeroshot/")]
)
def test_search_finds_a_chapter_by_a_word_in_it(site, word, chapter):
    _, base, browser = site
    page, problems = _open(browser, base, f"search.html?q={word}")
    results = page.locator("#search-results ul.search li a")
    results.first.wait_for(timeout=20_000)
    hrefs = [results.nth(i).get_attribute("href") for i in range(results.count())]
    assert any(chapter in (h or "") for h in hrefs), f"searching {word!r} found {hrefs}, none in {chapter}"
    assert not problems, problems
    page.context.close()


def test_every_notebook_page_links_to_that_notebook_on_colab(site):
    html, base, browser = site
    config = yaml.safe_load((REPO / "_config.yml").read_text())["repository"]
    repository = re.sub(r"^https://github\.com/", "", config["url"]).rstrip("/")
    notebooks = sorted(p.relative_to(REPO) for p in (REPO / "book").rglob("*.ipynb")) + sorted(
        p.relative_to(REPO) for p in (REPO / "notebooks").rglob("*.ipynb")
    )
    assert notebooks
    for notebook in notebooks:
        rel = str(notebook.with_suffix(".html"))
        page, _ = _open(browser, base, rel)
        links = page.eval_on_selector_all("a[href*='colab.research.google.com']", "els => els.map(e => e.href)")
        want = f"https://colab.research.google.com/github/{repository}/blob/{config['branch']}/{notebook.as_posix()}"
        assert links and set(links) == {want}, f"{rel}: Colab links {links}, expected {want}"
        page.context.close()


def test_lessons_show_final_progress_and_a_silent_set_up_cell(site):
    html, base, browser = site
    bars = 0
    for lesson in sorted((REPO / "book").rglob("lesson.ipynb")):
        rel = str(lesson.relative_to(REPO).with_suffix(".html"))
        page, _ = _open(browser, base, rel)
        first_output = page.evaluate(
            "() => { const c = document.querySelector('div.cell'); const o = c && c.querySelector('.cell_output');"
            " return o ? o.innerText : ''; }"
        )
        assert first_output.strip() == "", f"{rel}: the set-up cell printed {first_output!r}"
        for block in page.eval_on_selector_all(".cell_output pre", "els => els.map(e => e.innerText)"):
            lines = [line for line in block.splitlines() if re.search(r"\d+%\|", line)]
            names = [line.split(":")[0].strip() for line in lines]
            bars += len(lines)
            # one line per bar, its last state (a budgeted run may stop early, so not always 100%)
            assert len(names) == len(set(names)), f"{rel}: a progress bar printed intermediate states: {lines}"
            assert not any(re.search(r"\| 0/\d+ \[", line) for line in lines), f"{rel}: a bar shows its start: {lines}"
        assert page.locator(".jupyter-widgets, script[type*='widget']").count() == 0, f"{rel}: widget left in the page"
        page.context.close()
    assert bars >= 1, "no lesson showed a progress bar (chapter 1 trains SimCLR with one)"
