"""Progress bars: widgets in Jupyter, one final text line in the built book."""

from __future__ import annotations

import io

from clipcourse import progress


def test_text_bars_print_only_their_final_state(monkeypatch):
    monkeypatch.setenv(progress.ENV, "text")
    out = io.StringIO()
    bar = progress.tqdm(range(50), desc="training", file=out, mininterval=0)
    for _ in bar:
        bar.set_postfix(loss=1.5)
    text = out.getvalue()
    assert text.count("training") == 1 and "50/50" in text and "loss=1.5" in text
    assert " 0/50" not in text and "\r" not in text.strip("\r\n")


def test_the_book_build_switches_kernels_to_text_bars(monkeypatch):
    from tools import book_extension

    class App:
        def connect(self, *args, **kwargs):
            pass

    monkeypatch.delenv(progress.ENV, raising=False)
    assert book_extension.setup(App())["parallel_read_safe"]
    import os

    assert os.environ[progress.ENV] == "text"


def test_the_book_includes_each_script_once():
    from types import SimpleNamespace

    from tools import book_extension

    thebe = SimpleNamespace(filename="", attributes={"body": "const THEBE_JS_URL = 1"})
    mathjax = SimpleNamespace(filename="mathjax/tex-chtml.js", attributes={"defer": "defer"})
    again = SimpleNamespace(filename="mathjax/tex-chtml.js", attributes={})
    context = {"script_files": [thebe, mathjax, SimpleNamespace(filename="", attributes={"body": "const THEBE_JS_URL = 1"}), again]}
    book_extension._one_of_each_script(None, "p", "page.html", context, None)
    assert context["script_files"] == [thebe, mathjax]
