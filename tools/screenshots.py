"""Refresh the README's screenshots from the built book (and, if given, a grading feedback page).

    make book                                   # or: jupyter-book build . (writes _build/html)
    python -m tools.screenshots [--book _build/html] [--feedback _grading/feedback/.../ch01_exercises.html]

Pages are opened offline in the system's headless Chromium (see ``tools/browser.py``),
so a screenshot shows what a reader without a network sees: formulas typeset by the
book's own MathJax, progress bars in their final state.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tools.browser import chromium, offline_page, serve

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "screenshots"
VIEWPORT = {"width": 960, "height": 600}

#: file name -> (page of the built book, text the shot should start near)
BOOK_SHOTS = {
    "book-formula.png": ("book/ch01_contrastive/index.html", "mjx-container[display='true']"),
    "book-training.png": ("book/ch01_contrastive/lesson.html", r"text=/SimCLR:\s+\d+%/"),
}


def _shoot(page, selector: str, path: Path) -> None:
    page.evaluate("() => window.MathJax && window.MathJax.startup ? window.MathJax.startup.promise : null")
    target = page.locator(selector).first
    target.wait_for(timeout=30_000)
    target.evaluate("e => e.scrollIntoView({block: 'start'})")
    page.evaluate("() => window.scrollBy(0, -120)")  # some context above the target
    page.screenshot(path=str(path), type="png")


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--book", type=Path, default=REPO / "_build" / "html", help="the built book's html folder")
    parser.add_argument("--feedback", type=Path, help="a feedback HTML page written by `make grade`")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if not (args.book / "index.html").exists():
        parser.error(f"no built book at {args.book}: run `make book` first")
    args.out.mkdir(parents=True, exist_ok=True)
    written = []
    with chromium() as browser:
        with serve(args.book) as base:
            for name, (rel, selector) in BOOK_SHOTS.items():
                page = offline_page(browser, base, viewport=VIEWPORT)
                page.goto(base + rel, wait_until="load")
                _shoot(page, selector, args.out / name)
                written.append(args.out / name)
                page.context.close()
        if args.feedback:
            with serve(args.feedback.parent) as base:
                page = offline_page(browser, base, viewport=VIEWPORT)
                page.goto(base + args.feedback.name, wait_until="load")
                _shoot(page, r"text=/\[FAIL\] \w+:/", args.out / "feedback.png")
                written.append(args.out / "feedback.png")
                page.context.close()
    for path in written:
        print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path} ({path.stat().st_size // 1024} KiB)")
    return written


if __name__ == "__main__":
    main()
