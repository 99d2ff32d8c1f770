"""`python -m api.demo` (`make demo`): the whole service end to end on the embedded synthetic default.

It generates the synthetic shift benchmarks in the real datasets' layouts, installs the small backbones shipped
pretrained with the project (checked by hash; `--pretrain-here` trains them on this machine instead), starts a
local Ray head with its dashboard and the REST API on localhost, submits the `demo` preset over REST with the
`shiftsweep` CLI, watches it, prints Tables 1 and 2, the layer-gradient probe and what was found, and
stops what it started, also when interrupted. A second run reuses the data, the backbones and the Ray token.

`python -m api.demo --browse` (`make demo-browse`) serves a finished demo's results again, without Ray: the API
on a fixed port over the demo's storage and registry, so its tables, report and files can be read after the
demo has stopped.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx

from orchestrator.local_cluster import LocalRayNode, free_port

DEMO_MODELS = ("tiny_vit", "tiny_convnext", "tiny_bit")
DEMO_DATASETS = ("synth_spurious", "synth_style", "synth_stain")
BROWSE_PORT = 8000


def _bin(name: str) -> str:
    """A console script of this environment (ray, shiftsweep), found beside the interpreter."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"error: the {name!r} command is not installed in this environment ({sys.executable})")
    return found


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def stop_on_ctrl_c_and_term() -> None:
    """Ctrl-C and SIGTERM both raise KeyboardInterrupt, so the services this process started are stopped. Ctrl-C
    is set explicitly: a process started in the background by a shell inherits SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)


def _step(title: str) -> float:
    print(f"\n== {title}", flush=True)
    return time.perf_counter()


def _wait_http(
    url: str,
    timeout_s: float,
    what: str,
    headers: dict[str, str] | None = None,
    proc: subprocess.Popen | None = None,
    log: Path | None = None,
) -> None:
    """Return once `url` answers; exit with the end of `log` if `proc` (what should answer) has died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
            raise SystemExit(f"error: {what} exited with {proc.returncode} before answering at {url}:\n{tail}")
        try:
            if httpx.get(url, timeout=2.0, headers=headers).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"error: {what} did not answer at {url} within {timeout_s:.0f} s")


class Demo:
    def __init__(self, out: Path, minutes: float | None, pretrain_here: bool = False) -> None:
        self.out = out.resolve()
        self.data_root = self.out / "data"
        self.weights_root = self.out / "weights"
        self.storage = self.out / "results"
        self.registry = self.out / "registry.sqlite"
        self.pretrain_minutes = minutes
        self.pretrain_here = pretrain_here or minutes is not None
        # Ray keeps Unix sockets under its temp dir; their paths must stay short.
        self.ray_tmp = Path(f"/tmp/shiftsweep-ray-{os.getuid()}")
        self.env = dict(os.environ)

    # -- preparation (cached across runs) ----------------------------------------------------------
    def prepare(self) -> None:
        from worker.pretrain import pretrain_backbone
        from worker.shipped_backbones import ShippedBackboneError
        from worker.shipped_backbones import install as install_shipped
        from worker.synthetic import generate_benchmark

        t = _step("synthetic shift benchmarks (real datasets' layouts)")
        for key in DEMO_DATASETS:
            path = generate_benchmark(key, self.data_root)
            print(f"   {key:16s} {path}")
        print(f"   ready in {time.perf_counter() - t:.1f} s")

        if not self.pretrain_here:
            t = _step("small backbones pretrained on a synthetic source task (shipped; SHA-256 checked)")
            for key in DEMO_MODELS:
                try:
                    res = install_shipped(key, self.weights_root)
                except ShippedBackboneError as e:
                    raise SystemExit(f"error: {e}") from None
                how = f"{res.optimizer}, {res.steps} steps"
                print(f"   {key:14s} source val acc {res.val_acc:.3f} ({how}; python -m worker.pretrain remakes it)")
            print(f"   ready in {time.perf_counter() - t:.1f} s")
            return
        t = _step("small backbones, pretrained here on a synthetic source task (cached)")
        pretrain_s = 0.0
        for key in DEMO_MODELS:
            res = pretrain_backbone(key, self.weights_root, minutes=self.pretrain_minutes)
            pretrain_s += 0.0 if res.reused else res.seconds
            state = "cached" if res.reused else "pretrained now"
            print(f"   {key:14s} {state:15s} source val acc {res.val_acc:.3f} ({res.optimizer}, {res.seconds:.0f} s)")
        print(f"   pretraining time this run: {pretrain_s:.1f} s (0 when every backbone was cached)")

    # -- services ----------------------------------------------------------------------------------
    def _secret_file(self, name: str, make: Callable[[], str]) -> Path:
        """`<out>/<name>`, written once with `make()` and readable by its owner alone."""
        path = self.out / name
        if not path.exists():
            path.write_text(make())
            path.chmod(0o600)
        return path

    def _ray_token(self) -> Path:
        return self._secret_file("ray_auth_token", lambda: secrets.token_hex(32))

    def start_ray(self, stack: ExitStack) -> str:
        t = _step("local Ray head with its dashboard")
        self.env.update(
            {
                "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN_PATH": str(self._ray_token()),
                "RAY_USAGE_STATS_ENABLED": "0",
                "OUTDATED_IGNORE": "1",
            }
        )
        shutil.rmtree(self.ray_tmp, ignore_errors=True)
        head = LocalRayNode.start_head(self.ray_tmp, self.out / "ray.log", env=self.env, num_cpus=2)
        stack.callback(head.stop)
        self.dashboard = head.dashboard_url
        token = Path(self.env["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
        _wait_http(f"{self.dashboard}/api/version", 90, "the Ray dashboard", {"Authorization": f"Bearer {token}"})
        print(f"   Ray dashboard: {self.dashboard}   (token auth on; token in {self.env['RAY_AUTH_TOKEN_PATH']})")
        print(f"   up in {time.perf_counter() - t:.1f} s")
        return self.dashboard

    def api_token(self) -> Path:
        """The demo API's bearer token, in a file the user can read it from (cancel, resume, extend need it)."""
        return self._secret_file("api_token", lambda: secrets.token_urlsafe(24))

    def _serve(self, stack: ExitStack, port: int, log_name: str) -> subprocess.Popen:
        """`shiftsweep serve` over the demo's storage and registry, stopped when `stack` closes."""
        self.env.update(
            {
                "SHIFTSWEEP_STORAGE": str(self.storage),
                "SHIFTSWEEP_REGISTRY": str(self.registry),
                "SHIFTSWEEP_API_TOKEN": self.api_token().read_text().strip(),
                "SHIFTSWEEP_URL": f"http://127.0.0.1:{port}",
            }
        )
        log = (self.out / log_name).open("w")
        proc = subprocess.Popen(
            [_bin("shiftsweep"), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stack.callback(self._stop_process, proc, log)
        return proc

    def start_api(self, stack: ExitStack) -> str:
        t = _step("REST API on localhost")
        port = free_port()
        self.env.update({"SHIFTSWEEP_RAY_ADDRESS": self.dashboard, "SHIFTSWEEP_DASHBOARD_URL": self.dashboard})
        self._serve(stack, port, "api.log")
        _wait_http(f"http://127.0.0.1:{port}/api/v1/health", 60, "the API")
        print(f"   API: http://127.0.0.1:{port}/docs   (log: {self.out / 'api.log'})")
        print(f"   up in {time.perf_counter() - t:.1f} s")
        return self.env["SHIFTSWEEP_URL"]

    def browse(self, port: int) -> int:
        """Serve the finished demo's results until Ctrl-C; no Ray, so reads only."""
        if not self.registry.exists():
            print(f"error: no demo results under {self.out} (no {self.registry.name}); run `make demo` first")
            return 2
        from api.server.registry import SqliteSweepRepository

        sweeps, _ = SqliteSweepRepository(self.registry).page(limit=5, offset=0)
        url = f"http://127.0.0.1:{port}"
        stop_on_ctrl_c_and_term()
        try:  # Ctrl-C (or SIGTERM) at any point stops the API (the stack) and ends cleanly
            with ExitStack() as stack:
                api = self._serve(stack, port, "browse.log")
                _wait_http(f"{url}/api/v1/health", 60, "the API", proc=api, log=self.out / "browse.log")
                print(f"The demo's results, served at {url} (API docs: {url}/docs); Ctrl-C stops it.", flush=True)
                for sweep in sweeps:
                    print(f"  sweep {sweep.id} ({sweep.status}, {sweep.created_at:%Y-%m-%d %H:%M} UTC):")
                    print(f"    report:  {url}/api/v1/sweeps/{sweep.id}/report")
                    print(f"    tables:  shiftsweep --url {url} tables {sweep.id} ood")
                print("  Ray is not running here: sweeps can be read, not resumed or extended.", flush=True)
                api.wait()
        except KeyboardInterrupt:
            pass
        return 0

    @staticmethod
    def _stop_process(proc: subprocess.Popen, log) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()

    # -- the sweep, through the CLI ----------------------------------------------------------------
    def cli(self, *args: str, capture: bool = False) -> str:
        res = subprocess.run(
            [_bin("shiftsweep"), *args], env=self.env, text=True, stdout=subprocess.PIPE if capture else None
        )
        if res.returncode != 0:
            raise SystemExit(f"error: `shiftsweep {' '.join(args)}` exited with {res.returncode}")
        return res.stdout or ""

    def run_sweep(self) -> str:
        _step("submit the demo sweep over REST")
        sweep_id = self.cli(
            "submit",
            "--preset",
            "demo",
            "--set",
            f"data_root={self.data_root}",
            "--set",
            f"weights_root={self.weights_root}",
            "--quiet",
            capture=True,
        ).strip()
        print(f"   sweep {sweep_id}")
        _step("live progress (trials by status)")
        self.cli("watch", sweep_id)
        return sweep_id

    def show_results(self, sweep_id: str) -> None:
        for name, title in (("ood", "Table 1: OOD"), ("id", "Table 2: ID"), ("probe", "Layer-gradient probe")):
            _step(title)
            self.cli("tables", sweep_id, name, "--format", "text")
        sweep_dir = self.storage / sweep_id
        _step("what was compared, and what came out")
        from analysis.findings import findings
        from analysis.sweep_data import load_sweep

        for sentence in findings(load_sweep(sweep_dir)):
            print(textwrap.fill(sentence, width=118, initial_indent="  - ", subsequent_indent="    "))
        _step("where the outputs are")
        print(f"   Parquet: {sweep_dir}/trials.parquet, epochs.parquet, probe.parquet")
        self.cli("report", sweep_id, "--out", str(sweep_dir / "report.html"), capture=True)  # the final page
        print(f"   report:  {sweep_dir}/report.html (a file: it stays after the demo; open it in a browser)")
        url, token = self.env["SHIFTSWEEP_URL"], self.api_token()
        print(f"   API while the demo runs (--keep-running keeps it): {url}; its token, for cancel, resume and extend:")
        print(f"   export SHIFTSWEEP_URL={url} SHIFTSWEEP_API_TOKEN=$(cat {token})")
        browse = f"http://127.0.0.1:{BROWSE_PORT}"
        print(f"   after the demo: make demo-browse serves these results at {browse}; then, for example,")
        print(f"   shiftsweep --url {browse} tables {sweep_id} ood --format text   (the rest: shiftsweep tables -h)")


def wall_time_line(preparation_s: float, run_s: float, shutdown_s: float) -> str:
    """The demo's wall time and its parts, rounded so that the parts add up to the total as printed."""
    parts = [round(preparation_s), round(run_s), round(shutdown_s)]
    return (
        f"demo wall time (install excluded): {sum(parts)} s = {parts[0]} s data and backbones + "
        f"{parts[1]} s services, sweep, tables + {parts[2]} s stopping"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m api.demo", description=__doc__)
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="where data, weights and results go")
    p.add_argument(
        "--pretrain-here",
        action="store_true",
        help="pretrain the backbones on this machine (catalog recipe; cached) instead of the shipped ones",
    )
    p.add_argument("--pretrain-minutes", type=float, help="pretrain here with this budget per backbone")
    p.add_argument("--keep-running", action="store_true", help="leave Ray and the API up until Ctrl-C")
    p.add_argument("--browse", action="store_true", help="serve a finished demo's results (no Ray) until Ctrl-C")
    p.add_argument("--port", type=int, default=BROWSE_PORT, help="with --browse: the API's port (%(default)s)")
    args = p.parse_args(argv)
    os.environ.setdefault("OUTDATED_IGNORE", "1")
    demo = Demo(args.out, args.pretrain_minutes, args.pretrain_here)
    if args.browse:
        return demo.browse(args.port)
    demo.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    stop_on_ctrl_c_and_term()
    paused = 0.0
    try:
        demo.prepare()
        t_prepared = time.perf_counter()
        with ExitStack() as stack:
            demo.start_ray(stack)
            demo.start_api(stack)
            sweep_id = demo.run_sweep()
            demo.show_results(sweep_id)
            t_shown = time.perf_counter()
            if args.keep_running:
                print("\nRay and the API stay up; Ctrl-C stops them.")
                signal.pause()
                paused = time.perf_counter() - t_shown
            _step("stopping the API and Ray")
        t_end = time.perf_counter()
    except KeyboardInterrupt:
        print("\ninterrupted: the API and Ray were stopped", file=sys.stderr)
        return 130
    print("\n" + wall_time_line(t_prepared - t0, t_shown - t_prepared, t_end - t_shown - paused))
    return 0


if __name__ == "__main__":
    sys.exit(main())
