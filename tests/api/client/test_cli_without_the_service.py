"""The CLI runs where only its client is installed (a laptop, a CI job): `pip install httpx pyyaml` and then the
project with `--no-deps`, without torch, Ray or the server's packages. Checked by running it in a fresh
interpreter in which those packages cannot be imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SERVER_ONLY = (
    *("torch", "torchvision", "timm", "open_clip", "ray", "wilds", "pyarrow", "pandas", "numpy", "fastapi"),
    *("uvicorn", "pydantic", "pydantic_settings", "psycopg", "sklearn", "matplotlib", "safetensors"),
)


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    code = textwrap.dedent(
        f"""
        import sys

        class NotInstalled:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {SERVER_ONLY!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}} (not installed with the client)")

        sys.meta_path.insert(0, NotInstalled())
        from api.client.cli import main
        sys.exit(main({list(args)!r}))
        """
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_the_cli_needs_only_httpx_and_pyyaml() -> None:
    done = _run_cli("--help")
    assert done.returncode == 0, done.stderr
    assert "submit" in done.stdout and "watch" in done.stdout
    # a real command goes as far as the network: a closed port is reported, not an ImportError
    done = _run_cli("--url", "http://127.0.0.1:9", "list")
    assert done.returncode != 0 and "ModuleNotFoundError" not in done.stderr, done.stderr
    assert "127.0.0.1:9" in done.stderr, done.stderr
