"""The layers, as the README's architecture table draws them, checked against every import in the code.

configs/ <- worker/ <- orchestrator/ <- analysis/ <- api/server/ ; api/client/ speaks HTTP only. A module-level or
function-level import that crosses a layer the wrong way fails here, naming the file and the line.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> imports it must never make (prefixes of module names)
FORBIDDEN = {
    "worker": ("orchestrator", "analysis", "api", "ray"),
    "orchestrator": ("analysis", "api"),
    "analysis": (
        "api",
        "ray",
        "torch",
        "orchestrator.driver",
        "orchestrator.tune_runner",
        "orchestrator.cell_scheduler",
    ),
    "api/server": ("api.client", "api.demo"),
    "api/client": ("api.demo", "orchestrator", "analysis", "worker.catalog", "torch", "ray"),
}
# the client's two commands that run something in-process: `shiftsweep serve` (the server), `shiftsweep demo`
ALLOWED = {
    ("api/client/cli.py", "api.server.main"),
    ("api/client/cli.py", "api.server.settings"),
    ("api/client/cli.py", "api.demo"),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def _crossing(package: str) -> list[str]:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for line, module in _imports(path):
            hit = any(module == f or module.startswith(f + ".") for f in FORBIDDEN[package])
            if hit and (rel, module) not in ALLOWED:
                bad.append(f"{rel}:{line} imports {module}")
    return bad


@pytest.mark.parametrize("package", list(FORBIDDEN))
def test_no_import_crosses_a_layer_the_wrong_way(package: str) -> None:
    assert _crossing(package) == []


def test_the_contracts_and_the_analysis_load_without_ray_or_torch() -> None:
    code = (
        "import sys, analysis, orchestrator, worker.catalog, worker.records, worker.selection\n"
        "heavy = sorted(m for m in ('ray', 'torch', 'timm', 'open_clip') if m in sys.modules)\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
