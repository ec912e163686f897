"""End to end in a real headless browser: uvicorn on a free localhost port, Chromium types a query.

Uses the system's Chromium (``/usr/bin/chromium``, installed by the set-up and by CI
from the system packages); nothing is downloaded. Skipped, with the reason, only
when that browser is absent.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no system Chromium at {CHROMIUM} (apt-get install chromium)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cache = tmp_path_factory.mktemp("search-cache")
    log = open(cache / "server.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "clipcourse.service", "--port", str(port), "--n", "600", "--cache-dir", str(cache)],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the service exited: {(cache / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if json.load(r)["status"] == "ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("the service did not become healthy in 180 s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_page_answers_a_typed_query(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(server + "/")
            page.fill("#q", "a red circle")
            page.fill("#k", "6")
            page.click("#go")
            page.wait_for_selector("figure.result", timeout=20_000)
            captions = page.locator("figure.result .caption").all_inner_texts()
            assert len(captions) == 6
            assert all("red" in c and "circle" in c for c in captions[:3]), captions
            page.wait_for_function(
                "Array.from(document.querySelectorAll('figure.result img')).every(i => i.complete && i.naturalWidth > 0)",
                timeout=20_000,
            )
            # bad input shows the service's message, and the next query still works
            page.fill("#q", "")
            page.click("#go")
            page.wait_for_function("document.getElementById('error').textContent.includes('empty')", timeout=10_000)
            page.fill("#q", "a blue square")
            page.click("#go")
            page.wait_for_function(
                "document.querySelector('figure.result .caption')?.textContent.includes('blue')", timeout=20_000
            )
        finally:
            browser.close()
