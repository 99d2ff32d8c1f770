"""The report and plot endpoints, and the CLI commands that save them."""

from __future__ import annotations

import os
import re

import pytest
from fastapi.testclient import TestClient

from analysis.report import REPORT_FILE
from api.server.jobs import FakeJobBackend
from api.server.settings import Settings
from tests.api.support import spec_body, write_driver, write_results

SWEEPS = "/api/v1/sweeps"


@pytest.fixture
def sweep(client: TestClient, settings: Settings) -> str:
    sid = client.post(SWEEPS, json=spec_body()).json()["id"]
    write_results(settings.storage, sid, spec_body(), done=2, running=1)
    return sid


def test_a_running_sweep_has_a_live_report_that_is_not_saved(client: TestClient, settings: Settings, sweep: str):
    r = client.get(f"{SWEEPS}/{sweep}/report")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert sweep in r.text and "live" in r.text.lower()
    assert not (settings.storage / sweep / REPORT_FILE).exists()


def test_an_ended_sweep_has_a_final_report_saved_beside_its_results(
    client: TestClient, settings: Settings, backend: FakeJobBackend, sweep: str
):
    write_driver(settings.storage, sweep, "finished")
    backend.set_status(sweep, "SUCCEEDED")
    r = client.get(f"{SWEEPS}/{sweep}/report")
    assert r.status_code == 200
    saved = settings.storage / sweep / REPORT_FILE
    assert saved.read_text(encoding="utf-8") == r.text
    # read again: served from the saved file, not written again
    written = saved.stat().st_mtime_ns
    os.utime(saved, ns=(written, written))
    assert client.get(f"{SWEEPS}/{sweep}/report").text == r.text and saved.stat().st_mtime_ns == written
    # results newer than the saved page (a resumed sweep that ended again): drawn anew
    trials = settings.storage / sweep / "trials.parquet"
    os.utime(trials, ns=(written + 10**9, written + 10**9))
    saved.write_text("stale", encoding="utf-8")
    os.utime(saved, ns=(written, written))
    drawn_anew = client.get(f"{SWEEPS}/{sweep}/report").text
    assert _undated(drawn_anew) == _undated(r.text) and saved.read_text(encoding="utf-8") == drawn_anew


def _undated(page: str) -> str:
    """The page without the time it was drawn at (a page drawn again a second later differs only there)."""
    return re.sub(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC", "<drawn at>", page)


@pytest.mark.parametrize("fmt,media", [("png", "image/png"), ("svg", "image/svg+xml")])
def test_every_plot_comes_as_a_file(client: TestClient, sweep: str, fmt: str, media: str):
    listing = client.get(f"{SWEEPS}/{sweep}/plots").json()
    assert fmt in listing["formats"] and listing["data"]
    for name in listing["data"]:
        r = client.get(f"{SWEEPS}/{sweep}/plots/{name}.{fmt}")
        assert r.status_code == 200, (name, r.text)
        assert r.headers["content-type"].startswith(media) and len(r.content) > 100


def test_unknown_plots_and_sweeps_are_404_naming_the_valid_ones(client: TestClient, sweep: str):
    r = client.get(f"{SWEEPS}/{sweep}/plots/nope.png")
    assert r.status_code == 404 and "lr_curves" in r.json()["detail"]
    r = client.get(f"{SWEEPS}/{sweep}/plots/lr_curves.gif")
    assert r.status_code == 404 and "svg" in r.json()["detail"]
    assert client.get(f"{SWEEPS}/s0000000000/report").status_code == 404
