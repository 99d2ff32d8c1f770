"""The `shiftsweep` CLI against the real app served by uvicorn on localhost (fake job backend)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import uvicorn
import yaml

from api.client.cli import UsageError, main, parse_overrides
from api.client.rest import ClientError
from api.client.watch import progress_line, watch
from api.server.jobs import FakeJobBackend
from api.server.main import create_app
from api.server.settings import Settings
from orchestrator import Location, load_spec
from orchestrator.extension import grid_growth, record_extension, record_start
from orchestrator.local_cluster import free_port
from tests.api.support import TOKEN, spec_body, write_driver, write_results


@pytest.fixture
def url(settings: Settings, backend: FakeJobBackend, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, backend=backend), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    address = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("SHIFTSWEEP_URL", address)
    monkeypatch.setenv("SHIFTSWEEP_API_TOKEN", TOKEN)
    yield address
    server.should_exit = True
    thread.join(timeout=10)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_submit_list_status_cancel_resume(url: str, capsys, backend: FakeJobBackend, tmp_path: Path):
    code, out, _ = _run(
        capsys, "submit", "--preset", "demo", "--set", "epochs=1", "--set", "models=[tiny_vit]", "--quiet"
    )
    assert code == 0
    sid = out.strip()
    assert backend.jobs[sid].status == "PENDING"
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(spec_body()))
    code, out, _ = _run(capsys, "submit", str(spec), "--idempotency-key", "k1")
    assert code == 0 and "3 trials" in out
    first = out.split()[1]
    assert _run(capsys, "submit", str(spec), "--idempotency-key", "k1", "--quiet")[1].strip() == first

    code, out, _ = _run(capsys, "list")
    assert code == 0 and sid in out and first in out and "2 of 2 sweeps" in out
    code, out, _ = _run(capsys, "status", sid)
    assert code == 0 and "pending" in out and f"/#/jobs/{sid}" in out
    assert _run(capsys, "cancel", sid)[1].strip() == f"sweep {sid}: cancelled"
    code, _, err = _run(capsys, "cancel", sid)
    assert code == 1 and "HTTP 409" in err and "cancelled" in err
    assert _run(capsys, "resume", sid)[1].strip() == f"sweep {sid}: pending as job {sid}-r1"


def test_server_errors_are_printed_as_written(url: str, capsys):
    code, _, err = _run(capsys, "submit", "--preset", "demo", "--set", "models=[nope, tiny_vit]")
    assert code == 1 and "HTTP 422" in err and "models[0]: unknown model 'nope'" in err
    code, _, err = _run(capsys, "status", "missing")
    assert code == 1 and "no sweep with id 'missing'" in err
    code, _, err = _run(capsys, "--token", "wrong-token-wrong-token", "submit", "--preset", "demo")
    assert code == 1 and "HTTP 401" in err and "invalid token" in err
    assert _run(capsys, "submit", "--set", "nokey")[0] == 2
    assert _run(capsys, "submit", "--preset", "demo", "--set", "=3")[0] == 2
    assert _run(capsys, "submit", "/no/such/spec.yaml")[0] == 2


def test_unreachable_service(capsys, monkeypatch: pytest.MonkeyPatch):
    code, _, err = _run(capsys, "--url", f"http://127.0.0.1:{free_port()}", "list")
    assert code == 1 and "cannot reach the service" in err


def test_tables_and_download(url: str, capsys, settings: Settings, tmp_path: Path):
    sid = _run(capsys, "submit", "--quiet", "--preset", "demo")[1].strip()
    write_results(settings.storage, sid, load_demo(), done=2)
    code, out, _ = _run(capsys, "tables", sid)
    assert code == 0 and "ood" in out and "latex" in out
    code, out, _ = _run(capsys, "tables", sid, "ood")
    assert code == 0 and out.startswith("## Table 1")
    code, out, _ = _run(capsys, "tables", sid, "ood", "--format", "text")  # what the demo prints
    assert code == 0 and out.startswith("Table 1") and max(len(line) for line in out.splitlines()) <= 120
    target = tmp_path / "t.csv"
    assert _run(capsys, "tables", sid, "id", "--format", "csv", "--out", str(target))[0] == 0
    assert target.read_text().splitlines()[0].startswith("model")
    assert _run(capsys, "tables", sid, "id", "--format", "parquet")[0] == 2
    code, _, err = _run(capsys, "tables", sid, "nope")
    assert code == 1 and "valid tables" in err
    code, out, _ = _run(capsys, "download", sid, "--out", str(tmp_path / "dl"))
    assert code == 0
    assert pq.read_table(tmp_path / "dl" / "trials.parquet").num_rows == 360
    assert {p.name for p in (tmp_path / "dl").iterdir()} == {"trials.parquet", "epochs.parquet", "probe.parquet"}


def load_demo() -> dict:
    from orchestrator.spec import load_preset

    return load_preset("demo").model_dump(mode="json")


def test_watch_follows_until_the_end(url: str, capsys, backend: FakeJobBackend, settings: Settings):
    sid = _run(capsys, "submit", "--quiet", "--preset", "demo")[1].strip()
    backend.set_status(sid, "RUNNING")

    def finish_later() -> None:
        time.sleep(0.6)
        write_driver(settings.storage, sid, "finished")
        backend.set_status(sid, "SUCCEEDED")

    threading.Thread(target=finish_later, daemon=True).start()
    code, out, _ = _run(capsys, "watch", sid, "--interval", "0.1")
    lines = out.strip().splitlines()
    assert code == 0 and "running" in lines[0] and "finished" in lines[-1] and "\r" not in out

    sid2 = _run(capsys, "submit", "--quiet", "--preset", "demo")[1].strip()
    backend.set_status(sid2, "STOPPED")
    assert _run(capsys, "watch", sid2)[0] == 3


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_watch_draws_a_bar_and_waits_out_a_restart():
    states = iter(
        [
            ClientError("down"),
            {"id": "s", "status": "running", "percent_done": 50.0, "counts": {"running": 1}, "eta_seconds": 65},
            {"id": "s", "status": "finished", "percent_done": 100.0, "counts": {"completed": 2}, "eta_seconds": None},
        ]
    )

    def fetch() -> dict:
        item = next(states)
        if isinstance(item, Exception):
            raise item
        return item

    out = _Tty()
    final = watch(fetch, out, interval_s=0, sleep=lambda s: None)
    assert final["status"] == "finished"
    text = out.getvalue()
    assert "\r[" + "#" * 15 + "." * 15 + "]" in text and "ETA 1m05s" in text and text.endswith("\n")


def test_watch_gives_up():
    clock = iter(range(0, 1000, 10))
    running = {"id": "s", "status": "running", "percent_done": 1.0, "counts": {}}
    with pytest.raises(TimeoutError, match="still running"):
        watch(lambda: running, io.StringIO(), timeout_s=30, sleep=lambda s: None, clock=lambda: next(clock))
    with pytest.raises(ClientError):
        watch(
            lambda: (_ for _ in ()).throw(ClientError("down")),
            io.StringIO(),
            patience_s=5,
            sleep=lambda s: None,
            clock=lambda: next(clock),
        )
    assert progress_line(running, bar=False).startswith("s:   1.0%")


def test_serve_refuses_public_hosts_without_a_token(capsys, tmp_path: Path):
    code, _, err = _run(capsys, "serve", "--host", "0.0.0.0", "--storage", str(tmp_path))
    assert code == 2 and "SHIFTSWEEP_API_TOKEN" in err


def test_parse_overrides():
    assert parse_overrides(["epochs=2", "seeds=[0, 1]", "name=x y", "weights_root="]) == {
        "epochs": 2,
        "seeds": [0, 1],
        "name": "x y",
        "weights_root": None,
    }
    with pytest.raises(UsageError, match="key=value"):
        parse_overrides(["epochs"])
    with pytest.raises(UsageError, match="YAML"):
        parse_overrides(["seeds=[0"])


def test_demo_arguments_are_forwarded(monkeypatch: pytest.MonkeyPatch):
    import api.demo

    seen: list[list[str]] = []
    monkeypatch.setattr(api.demo, "main", lambda argv: seen.append(argv) or 0)
    assert main(["demo", "--out", "x", "--keep-running"]) == 0
    assert seen == [["--out", "x", "--keep-running"]]
    with pytest.raises(SystemExit) as e:
        main(["list", "--out", "x"])
    assert e.value.code == 2


def test_suggest_then_extend(url: str, capsys, backend: FakeJobBackend, settings: Settings, tmp_path: Path):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec_body()))
    code, out, err = _run(capsys, "submit", "--quiet", str(spec_file))
    assert code == 0, err
    sid = out.strip()
    write_results(settings.storage, sid, spec_body(), done=3)
    write_driver(settings.storage, sid, "finished")
    backend.set_status(sid, "SUCCEEDED")

    code, out, _ = _run(capsys, "suggest", sid)
    assert code == 0 and "- widen_lrs: sgd chose its largest LR 3e-2" in out and "- add_seeds: tiny_vit" in out
    assert "together: +9 trials" in out and f"shiftsweep suggest {sid} --extend" in out
    assert "--set seeds=[0,1,2]" in out

    assert _run(capsys, "extend", sid)[0] == 2  # nothing to add
    code, _, err = _run(capsys, "extend", sid, "--set", "seeds=[1]")
    assert code == 1 and "seeds: drops tiny_vit's seed(s) 0" in err
    grown = tmp_path / "grown.yaml"
    grown.write_text("seeds: [0, 1]\n")
    code, out, _ = _run(capsys, "extend", sid, "--file", str(grown))
    assert code == 0 and f"as job {sid}-r1, 6 trials in all" in out
    assert "--extend" in backend.jobs[f"{sid}-r1"].args
    old, grown_spec = load_spec(spec_body()), load_spec({**spec_body(), "seeds": [0, 1]})
    record_start(Location(settings.storage / sid), old)  # what the extension's driver writes
    record_extension(Location(settings.storage / sid), old, grown_spec, grid_growth(old, grown_spec))
    code, out, _ = _run(capsys, "status", sid)
    assert code == 0 and "extended, +3 trials: seeds 1 for tiny_vit; 6 trials in all" in out

    write_driver(settings.storage, sid, "finished", runs=2)
    backend.set_status(f"{sid}-r1", "SUCCEEDED")
    code, out, _ = _run(capsys, "suggest", sid, "--extend")
    assert code == 0 and f"as job {sid}-r2" in out
