"""`python -m api.demo --browse`: a finished demo's results served again without Ray, at the URLs it prints."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from api.demo import main as demo_main
from api.server.registry import SqliteSweepRepository, SweepRecord
from orchestrator.local_cluster import free_port
from tests.api.support import spec_body, wait_until_up, write_driver, write_results

ROOT = Path(__file__).resolve().parents[2]


def _finished_demo(out: Path) -> str:
    """A demo output folder as a finished demo leaves it: registry, storage, one finished sweep's files."""
    spec = spec_body()
    storage = out / "results"
    SqliteSweepRepository(out / "registry.sqlite").add(
        record=SweepRecord(
            id="sdemo000001",
            name="demo",
            spec=spec,
            status="finished",
            storage_dir=str(storage / "sdemo000001"),
            job_ids=("sdemo000001",),
        )
    )
    write_results(storage, "sdemo000001", spec, done=3)
    write_driver(storage, "sdemo000001", "finished")
    return "sdemo000001"


def _as_a_background_job() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a shell does to the commands it starts with `&`


# Ctrl-C, and SIGTERM (`kill`), stop it and the API it started, also when it was started with SIGINT ignored
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_browse_serves_the_finished_results_at_the_printed_urls(tmp_path: Path, stop: signal.Signals) -> None:
    sid = _finished_demo(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "api.demo", "--browse", "--out", str(tmp_path), "--port", str(port)],
        cwd=ROOT,
        preexec_fn=_as_a_background_job,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(
            f"{url}/api/v1/health",
            alive=lambda: proc.poll() is None,
            log=tmp_path / "browse.log",
            what="the browse API",
            timeout_s=60,
        )
        table = httpx.get(f"{url}/api/v1/sweeps/{sid}/tables/ood", timeout=30)
        assert table.status_code == 200 and "Table 1" in table.text
        report = httpx.get(f"{url}/api/v1/sweeps/{sid}/report", timeout=30)
        assert report.status_code == 200 and sid in report.text
        write = httpx.post(f"{url}/api/v1/sweeps/{sid}/resume", timeout=30)
        assert write.status_code == 401  # the token is in <out>/api_token, not given here
        assert (tmp_path / "api_token").stat().st_mode & 0o777 == 0o600
    finally:
        proc.send_signal(stop)
        try:
            out, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            log = (tmp_path / "browse.log").read_text()[-3000:] if (tmp_path / "browse.log").exists() else ""
            pytest.fail(f"browse did not stop within 60 s of {stop.name}; its API's log ends:\n{log}")
    assert proc.returncode == 0, out
    assert "Shutting down" in (tmp_path / "browse.log").read_text()  # the API it started was stopped too
    assert f"report:  {url}/api/v1/sweeps/{sid}/report" in out
    assert f"tables:  shiftsweep --url {url} tables {sid} ood" in out


def test_browse_without_a_finished_demo_says_what_to_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert demo_main(["--browse", "--out", str(tmp_path / "nothing")]) == 2
    assert "run `make demo` first" in capsys.readouterr().out
