"""A Ray node started on this machine as its own `ray start --block` process tree.

Used by the embedded demo and by tests. Stopping it signals exactly the processes of this tree, by pid, so
another Ray on the same machine is never touched (unlike `ray stop`, which stops every Ray it finds). Every
port Ray would otherwise take at a fixed default gets a free one, so two local clusters never collide.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

_PORT_FLAGS = (
    "node-manager-port",
    "object-manager-port",
    "dashboard-agent-listen-port",
    "dashboard-agent-grpc-port",
    "runtime-env-agent-port",
    "metrics-export-port",
)


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """`n` distinct free ports: all are held at once while chosen, since a port released and asked for again may
    come back (Ray refuses a node whose components were given the same port)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def ray_executable() -> str:
    local = Path(sys.executable).parent / "ray"
    return str(local) if local.exists() else "ray"


@dataclass
class LocalRayNode:
    """A running `ray start --block` and the address its clients use."""

    proc: subprocess.Popen
    temp_dir: Path
    log: Path
    gcs_address: str
    dashboard_url: str | None

    @classmethod
    def start_head(
        cls,
        temp_dir: Path,
        log: Path,
        *,
        env: dict[str, str] | None = None,
        num_cpus: int | None = None,
        dashboard: bool = True,
        extra_args: list[str] | None = None,
    ) -> LocalRayNode:
        gcs_port, client_port, dash_port, *node_ports = free_ports(3 + len(_PORT_FLAGS))
        cmd = ["--head", f"--port={gcs_port}", f"--ray-client-server-port={client_port}"]
        dashboard_url = None
        if dashboard:
            cmd += ["--include-dashboard=true", "--dashboard-host=127.0.0.1", f"--dashboard-port={dash_port}"]
            dashboard_url = f"http://127.0.0.1:{dash_port}"
        else:
            cmd += ["--include-dashboard=false"]
        gcs_address = f"127.0.0.1:{gcs_port}"
        return cls._launch(cmd, node_ports, temp_dir, log, env, num_cpus, extra_args, gcs_address, dashboard_url)

    @classmethod
    def start_worker(
        cls,
        address: str,
        temp_dir: Path,
        log: Path,
        *,
        env: dict[str, str] | None = None,
        num_cpus: int | None = None,
        extra_args: list[str] | None = None,
    ) -> LocalRayNode:
        """A node that joins the cluster whose head's GCS is at `address` (host:port)."""
        role = [f"--address={address}"]
        return cls._launch(role, free_ports(len(_PORT_FLAGS)), temp_dir, log, env, num_cpus, extra_args, address, None)

    @classmethod
    def _launch(
        cls,
        role_args: list[str],
        node_ports: list[int],  # one per `_PORT_FLAGS`, distinct from each other and from the role's
        temp_dir: Path,
        log: Path,
        env: dict[str, str] | None,
        num_cpus: int | None,
        extra_args: list[str] | None,
        gcs_address: str,
        dashboard_url: str | None,
    ) -> LocalRayNode:
        cmd = [
            ray_executable(),
            "start",
            "--block",
            *role_args,
            f"--temp-dir={temp_dir}",
            "--num-gpus=0",
            "--disable-usage-stats",
            *(f"--{f}={port}" for f, port in zip(_PORT_FLAGS, node_ports, strict=True)),
        ]
        if num_cpus is not None:
            cmd.append(f"--num-cpus={num_cpus}")
        cmd += extra_args or []
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("w") as out:
            proc = subprocess.Popen(
                cmd, env=env or dict(os.environ), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return cls(proc, temp_dir, log, gcs_address, dashboard_url)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def processes(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self, grace_s: float = 10.0) -> list[psutil.Process]:
        """SIGTERM to every process of this node at once, SIGKILL to whatever is left after `grace_s`.
        Returns the processes it signalled."""
        procs = self.processes()
        if self.alive():
            procs.append(psutil.Process(self.proc.pid))
        for p in procs:
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
        _, alive = psutil.wait_procs(procs, timeout=grace_s)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=10)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        return procs
