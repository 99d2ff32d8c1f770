"""The sweep report in a real headless Chromium, served over HTTP on 127.0.0.1: a finished and a running sweep.

Checks what only a browser can: the tables read back from the rendered DOM match the selection computed from
the Parquet files, every plot has a nonzero size, nothing logs an error, a phone-width page does not scroll
sideways, and the live page refreshes in place without moving any section, then stops once the sweep is final.
Uses the system's Chromium (Debian's /usr/bin/chromium) through Playwright; nothing is downloaded.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from analysis import load_sweep
from analysis.report import render_report
from orchestrator.results import read_trials
from tests.analysis.test_report import LRS, add_losses, build_finished_sweep, build_running_sweep, trial_curve
from tests.sweep_builder import SweepBuilder

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAPTOP, PHONE = {"width": 1366, "height": 900}, {"width": 390, "height": 844}


class Pages:
    """What the test server renders for each path; the running sweep's directory and mode can change mid-test."""

    def __init__(self, finished: Path, running: Path) -> None:
        self.finished = finished
        self.running = running
        self.running_live = True
        self.requests = 0

    def render(self, path: str) -> str | None:
        self.requests += 1
        if path == "/finished":
            return render_report(self.finished, sweep_id="done", state="completed", dashboard_url=None, live=False)
        if path == "/running":
            live = self.running_live
            state = "running" if live else "completed"
            return render_report(
                self.running, sweep_id="run", state=state, dashboard_url="http://127.0.0.1:8265", live=live, refresh_s=1
            )
        return None


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> Pages:
    return Pages(
        build_finished_sweep(tmp_path_factory.mktemp("finished")),
        build_running_sweep(tmp_path_factory.mktemp("running")),
    )


@pytest.fixture(scope="module")
def server(pages: Pages) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server hook's name)
            try:
                body = pages.render(self.path)
            except Exception as exc:  # the test sees a 500 and the browser logs it
                body, code = f"render failed: {exc!r}", 500
            else:
                code = 200 if body is not None else 404
                body = body if body is not None else "not found"
            data = body.encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's chromium package to run the browser test")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the dev extra's playwright package is missing")
    profile = tmp_path_factory.mktemp("chromium-profile")  # a new, empty user data directory
    with sync_api.sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=ARGS, viewport=LAPTOP
        )
        yield ctx
        ctx.close()
    shutil.rmtree(profile, ignore_errors=True)


def _open(browser, url: str, viewport: dict) -> tuple[object, list[str]]:
    page = browser.new_page()
    page.set_viewport_size(viewport)
    errors: list[str] = []
    page.on(
        "console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None
    )
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: errors.append(f"request failed: {r.url}"))
    page.goto(url)
    page.wait_for_load_state("load")
    return page, errors


def _table_values(page, table: str) -> dict[tuple[str, str, str], float | None]:
    cells = page.eval_on_selector_all(
        f'td[data-table="{table}"][data-source="ours"]',
        "els => els.map(e => [e.dataset.model, e.dataset.dataset, e.dataset.method, e.dataset.value ?? null])",
    )
    return {(m, d, x): None if v is None else float(v) for m, d, x, v in cells}


def _plot_sizes(page) -> list[tuple[str, float, float]]:
    return page.eval_on_selector_all(
        "svg.plot",
        "els => els.map(e => { const r = e.getBoundingClientRect(); "
        "return [e.getAttribute('aria-label'), r.width, r.height]; })",
    )


def _boxes(page) -> dict[str, tuple[float, float, float, float]]:
    return page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('header.top, main > section, footer')].map(e => {"
        " const r = e.getBoundingClientRect();"
        " return [e.id || e.tagName, [r.x, r.y + window.scrollY, r.width, r.height]]; }))"
    )


def _check_tables(page, sweep: Path) -> None:
    cells = load_sweep(sweep).cells
    for table, field in (("ood", "ood_test"), ("id", "id_test")):
        shown = _table_values(page, table)
        for c in cells:
            got = shown[c.key]
            want = c.mean(field)
            if want is None:
                assert got is None, (table, c.key)
            else:
                assert got == pytest.approx(100 * want), (table, c.key)


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_finished_report_in_chromium(browser, server: str, pages: Pages, viewport: dict) -> None:
    page, errors = _open(browser, f"{server}/finished", viewport)
    try:
        assert page.title().startswith("Sweep done")
        _check_tables(page, pages.finished)
        sizes = _plot_sizes(page)
        assert len(sizes) > 50
        assert all(w > 50 and h > 30 for _, w, h in sizes), [s for s in sizes if not (s[1] > 50 and s[2] > 30)]
        assert page.evaluate("document.body.dataset.live") == "false"
        assert page.evaluate("document.scripts.length") == 0
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page scrolls sideways by {overflow}px at {viewport['width']}px"
        if viewport is PHONE:  # wide tables scroll inside their own box instead
            assert page.evaluate("document.querySelector('#scroll-ood').scrollWidth > window.innerWidth")
        assert errors == []
    finally:
        page.close()


def test_live_report_refreshes_in_place_without_moving(browser, server: str, pages: Pages, tmp_path: Path) -> None:
    page, errors = _open(browser, f"{server}/running", LAPTOP)
    try:
        assert page.evaluate("document.body.dataset.live") == "true"
        assert "Live" in page.inner_text("#mode")
        _check_tables(page, pages.running)
        before = _boxes(page)
        completed_before = int(page.get_attribute('li[data-status="completed"]', "data-count"))

        # the sweep moves on: every running trial finishes, every pending one starts; the grid stays the same
        later = _advance(pages.running, tmp_path / "later")
        pages.running = later
        page.wait_for_function("document.body.dataset.refreshes >= 2", timeout=20_000)
        completed_after = int(page.get_attribute('li[data-status="completed"]', "data-count"))
        assert completed_after > completed_before
        _check_tables(page, later)
        assert all(w > 50 and h > 30 for _, w, h in _plot_sizes(page))
        after = _boxes(page)
        assert after.keys() == before.keys()
        for key in before:
            assert after[key] == pytest.approx(before[key], abs=0.5), f"{key} moved: {before[key]} -> {after[key]}"

        # the sweep ends: the next refresh brings the final page, and the refreshing stops
        pages.running_live = False
        page.wait_for_function("document.body.dataset.live === 'false'", timeout=20_000)
        assert "Final report" in page.inner_text("#mode")
        settled = page.evaluate("document.body.dataset.refreshes")
        requests = pages.requests
        time.sleep(2.5)
        assert page.evaluate("document.body.dataset.refreshes") == settled
        assert pages.requests == requests
        assert errors == []
    finally:
        page.close()


def _advance(source: Path, root: Path) -> Path:
    """The running sweep some minutes later: trials that ran have finished, pending ones have started."""
    b = SweepBuilder()
    for t in read_trials(source).to_pylist():
        model, dataset, method, lr = t["model"], t["dataset"], t["method"], t["lr"]
        k = LRS[method].index(lr)
        if t["status"] == "pending":
            b.add(model, dataset, method, lr, status="running", curve=trial_curve(model, dataset, method, k, 0, 1))
        else:
            b.add(
                model, dataset, method, lr, curve=trial_curve(model, dataset, method, k, 0, 3), peak=2**30, state=4000
            )
    add_losses(b)
    return b.write(root)
