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

from bonesr_bench.leaderboard.site import build

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


#: the committed entries (the results less the two reference rows)
N_ENTRIES = len(list((ROOT / "leaderboard" / "results").glob("*.json"))) - 2


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
    assert page.locator("#gap-chart .scatterlayer .trace").count() == N_ENTRIES
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


# ----------------------------------------------------------------------------------------------
# Layout at a 1400 x 900 viewport (the page fixture's): boxes measured in the page


BOXES = """(root, sel) => Array.from(root.querySelectorAll(sel)).map(e => {
    const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })"""


def _boxes(locator, selector: str) -> list[list[float]]:
    return [b for b in locator.evaluate(BOXES, selector) if b[2] > b[0] and b[3] > b[1]]


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _open(page, url: str) -> None:
    """``url`` opened and every plot on it drawn."""
    page.goto(url)
    page.wait_for_function("document.querySelectorAll('div.plot').length > 0 && "
                           "Array.from(document.querySelectorAll('div.plot'))"
                           ".every(d => d.querySelector('.main-svg'))")


@pytest.mark.parametrize("path", ["index.html", "entries/fsrcnn.html"])
def test_plot_titles_clear_the_modebar(page, server, path):
    _open(page, f"{server}/{path}")
    plots, checked = page.locator("div.plot"), 0
    for i in range(plots.count()):
        plot = plots.nth(i)
        modebars = _boxes(plot, ".modebar")
        for title in _boxes(plot, ".gtitle"):
            assert modebars and not any(_overlap(title, m) for m in modebars), (
                plot.get_attribute("data-figure"), title, modebars)
            checked += 1
    assert checked >= 4
    assert page.errors == []


@pytest.mark.parametrize("path", ["index.html", "entries/fsrcnn.html"])
def test_legends_clear_the_axis_titles(page, server, path):
    _open(page, f"{server}/{path}")
    plots, checked = page.locator("div.plot"), 0
    for i in range(plots.count()):
        plot = plots.nth(i)
        titles = _boxes(plot, ".xtitle, .ytitle, .gtitle")
        for legend in _boxes(plot, ".legend"):
            for t in titles:
                assert not _overlap(legend, t), (plot.get_attribute("data-figure"), legend, t)
            checked += 1
    assert checked >= 4
    assert page.errors == []


def test_gap_chart_labels_do_not_overlap(page):
    _open(page, page.url)
    chart = page.locator("#gap-chart")
    for button, metric in (("#gap-psnr", "PSNR"), ("#gap-ssim", "SSIM")):
        page.click(button)
        page.wait_for_function("document.querySelector('#gap-chart .xtitle').textContent"
                               f".startsWith('{metric}')")
        texts = chart.locator(".textpoint text, .annotation-text-g").all_text_contents()
        for entry in ("example", "fsrcnn", "bicubic"):
            assert any(entry in t for t in texts), (metric, entry, texts)
        labels = _boxes(chart, ".textpoint text, .annotation-text-g")
        assert len(labels) >= 5  # three entries, the band's caption and the LR line's label
        for i, a in enumerate(labels):
            for b in labels[i + 1:]:
                assert not _overlap(a, b), (metric, texts, a, b)
    assert page.errors == []


def test_rank_chart_is_mostly_plot(page):
    _open(page, page.url)
    chart = page.locator("#ranks div.plot")
    figure = chart.bounding_box()
    (area,) = _boxes(chart, ".nsewdrag")
    assert (area[3] - area[1]) / figure["height"] >= 0.6, (area, figure)


def test_main_table_keeps_the_entry_column_in_view(page):
    scroll = page.locator("#leaderboard .scroll")
    assert scroll.evaluate("s => s.scrollWidth > s.clientWidth")  # so the check means something
    scroll.evaluate("s => { s.scrollLeft = s.scrollWidth; }")
    assert scroll.evaluate("s => s.scrollLeft") > 0
    view = scroll.bounding_box()
    cells = page.locator("#main-table tr > :nth-child(3)")
    assert cells.count() == N_ENTRIES + 3  # the header, HR, the entries and LR
    for i in range(cells.count()):
        cell = cells.nth(i)
        box = cell.bounding_box()
        assert view["x"] - 1 <= box["x"] and box["x"] + box["width"] <= view["x"] + view["width"]
        # on top of the cells scrolled under it, and opaque
        on_top = cell.evaluate("c => { const r = c.getBoundingClientRect(); return c.contains("
                               "document.elementFromPoint(r.left + 3, (r.top + r.bottom) / 2)); }")
        assert on_top, cell.inner_text()
        colour = cell.evaluate("c => getComputedStyle(c).backgroundColor")
        assert colour != "transparent" and not colour.endswith(", 0)"), colour
