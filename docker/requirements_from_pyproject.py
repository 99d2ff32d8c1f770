"""Print the requirements of pyproject.toml, one per line: the project's dependencies and its build backend.

The images install these in a layer of their own, before the source is copied, so that editing the source does
not reinstall torch and Ray; the project itself is then installed with `--no-deps --no-build-isolation`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import tomllib


def requirements(pyproject: Path) -> list[str]:
    data = tomllib.loads(pyproject.read_text())
    return [*data["build-system"]["requires"], *data["project"]["dependencies"]]


if __name__ == "__main__":
    print("\n".join(requirements(Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml"))))
