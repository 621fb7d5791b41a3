"""The leaderboard site in a real browser: Debian's headless Chromium driven by Playwright's
Python API (``executable_path``, no browser download), over the built site on localhost.
``.ci/run`` installs both; elsewhere these tests are skipped when either is missing."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from pathlib import Path

import pytest

from bonesr_bench.site import build

ROOT = Path(__file__).parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
if CHROMIUM is None and os.environ.get("CI"):
    pytest.fail("CI must run the browser tests: Debian's chromium is missing (apt-get install "
                "chromium)", pytrace=False)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                "(apt-get install chromium)")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    site = tmp_path_factory.mktemp("site") / "site"
    build(ROOT / "leaderboard" / "results", site)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.on("requestfailed", lambda r: page.errors.append(f"request failed: {r.url}"))
    page.goto(f"{server}/index.html")
    page.wait_for_function("document.querySelectorAll('div.plot .main-svg').length > 0")
    yield page
    page.close()


def test_no_console_errors_and_every_plot_rendered(page):
    plots = page.locator("div.plot")
    n = plots.count()
    assert n >= 8
    page.wait_for_function(f"document.querySelectorAll('div.plot.js-plotly-plot').length == {n}")
    for i in range(n):
        assert plots.nth(i).locator(".main-svg").count() > 0, i
    # the gap chart has one point per entry and the LR line's label
    assert page.locator("#gap-chart .scatterlayer .trace").count() == 3
    assert "LR scan" in page.locator("#gap-chart").inner_text()
    assert page.locator(".gallery img").count() >= 6
    assert page.errors == []


def test_sorting_changes_the_order(page):
    def entries():
        return page.locator("#main-table tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.entry)")

    before = entries()
    assert before[0] == "hr-scan" and before[-1] == "lr-scan"  # HR, entries by PSNR, LR
    header = page.locator("#main-table thead th", has_text="DA (ratio")  # by |error vs HR|
    col = page.locator("#main-table thead th").evaluate_all(
        "ths => ths.findIndex(t => t.textContent.startsWith('DA (ratio'))") + 1
    header.click()
    asc = entries()
    assert asc != before and asc[0] == "hr-scan"  # HR's error against itself is 0
    errors = page.locator(f"#main-table tbody tr td:nth-child({col})").evaluate_all(
        "cells => cells.map(c => parseFloat(c.dataset.sort))")
    assert errors == sorted(errors)
    header.click()
    assert entries() == asc[::-1]
    page.fill("#filter", "fsrc")
    visible = page.locator("#main-table tbody tr:visible").evaluate_all(
        "rows => rows.map(r => r.dataset.entry)")
    assert visible == ["fsrcnn"]
    assert page.errors == []


def test_ssim_switch_redraws_the_gap_chart(page):
    def title():
        return page.locator("#gap-chart .xtitle").text_content()

    assert title().startswith("PSNR")
    page.click("#gap-ssim")
    page.wait_for_function("document.querySelector('#gap-chart .xtitle').textContent"
                           ".startsWith('SSIM')")
    assert page.locator("#gap-chart").get_attribute("data-figure") == "gap_ssim"
    page.click("#gap-psnr")
    page.wait_for_function("document.querySelector('#gap-chart .xtitle').textContent"
                           ".startsWith('PSNR')")
    page.select_option("#param-select", "ct_po_pct")
    page.wait_for_function("document.querySelector('#param-chart .gtitle').textContent"
                           " == 'Ct.Po (total)'")
    assert page.errors == []


def test_a_detail_page_opens(page, server):
    page.click("#main-table a[href='entries/fsrcnn.html']")
    page.wait_for_url(f"{server}/entries/fsrcnn.html")
    page.wait_for_function("document.querySelectorAll('div.plot .main-svg').length >= 4")
    assert page.locator("h1").inner_text().startswith("fsrcnn")
    assert "weights_sha256" in page.locator("pre").first.inner_text()
    assert page.locator("#specimen-table tbody tr").count() == 11
    assert page.errors == []
