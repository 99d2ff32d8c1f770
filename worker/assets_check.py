"""`python -m worker.assets_check`: are the datasets and pretrained weights a sweep needs where it will look?

Nothing can be downloaded on a cluster node, so a missing file shows up only when a trial fails, maybe hours
into a sweep. Run this on each kind of node (head, GPU worker) against the shared mounts before submitting:

    python -m worker.assets_check --data-root /srv/shiftsweep/data --weights-root /srv/shiftsweep/weights
    python -m worker.assets_check --data-root data --weights-root weights --datasets synth_spurious --models tiny_bit

It prints one line per dataset and per model and exits 1 if anything is missing (2 on bad arguments).
By default it checks the paper's 5 datasets and the 7 models of its main tables (the `paper_main` preset); name
`--models clip_vit_h14` too for the `memory` preset.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from worker import catalog
from worker.catalog import CatalogError

DATASET, WEIGHTS = "dataset", "weights"


@dataclass(frozen=True)
class AssetCheck:
    """One dataset layout or weights file: where it was looked for, and what is missing there (empty: ok)."""

    kind: str  # DATASET | WEIGHTS
    key: str  # catalog key
    location: Path  # the dataset's root, or the weights file
    expected: str  # the layout (catalog `layout`) or the weights file name (catalog `weights_file`)
    missing: tuple[Path, ...]  # outermost missing paths
    problems: tuple[str, ...]  # one message per missing piece, each naming its path

    @property
    def ok(self) -> bool:
        return not self.problems


def _known(kind: str, keys: Sequence[str], valid: Sequence[str]) -> None:
    unknown = [k for k in keys if k not in valid]
    if unknown:
        raise CatalogError(f"unknown {kind} {', '.join(map(repr, unknown))}; valid {kind}s: {', '.join(valid)}")


def _outermost(paths: Sequence[Path], root: Path) -> list[Path]:
    """Each missing path replaced by its highest missing folder below `root`, once: a missing folder says enough
    about its contents."""
    out: list[Path] = []
    for path in paths:
        while path.parent != root and root in path.parents and not path.parent.exists():
            path = path.parent
        if path not in out:
            out.append(path)
    return out


def _unreadable(paths: Sequence[Path], fix_root: Path) -> list[str]:
    """One message per path this process cannot read (a folder: list and enter): files written by another user
    with owner-only modes are present but useless, and the loaders would fail on them mid-sweep."""
    out = []
    for path in paths:
        need = os.R_OK | os.X_OK if path.is_dir() else os.R_OK
        if os.access(path, need):
            continue
        st = path.stat()
        out.append(
            f"{path} is not readable by this process (uid {os.getuid()}; owner uid {st.st_uid}, mode "
            f"{st.st_mode & 0o777:o}); make it readable to the images' uid 1000, e.g. chmod -R a+rX {fix_root}"
        )
    return out


def check_dataset(key: str, data_root: str | Path) -> AssetCheck:
    """The dataset's layout markers under `data_root` (lists, metadata files, class folders), every missing one."""
    from worker.data import check_layout  # imports torch: only when a dataset is checked
    from worker.data.layout import layout_message
    from worker.data.load import LAYOUTS

    entry = catalog.get_dataset(key)
    root = entry.root(data_root)
    if root.is_dir() and not os.access(root, os.R_OK | os.X_OK):
        return AssetCheck(DATASET, key, root, entry.layout, (), tuple(_unreadable([root], root)))
    problem = check_layout(key, data_root)
    if problem is None:
        markers = [root, *LAYOUTS[entry.loader].markers(root, entry)]
        return AssetCheck(DATASET, key, root, entry.layout, (), tuple(_unreadable(markers, root)))
    if not root.is_dir():
        return AssetCheck(DATASET, key, root, entry.layout, (root,), (problem,))
    missing = _outermost([p for p in LAYOUTS[entry.loader].markers(root, entry) if not p.exists()], root)
    if not missing:  # a layout problem that is not a missing marker: report check_layout's own words
        return AssetCheck(DATASET, key, root, entry.layout, (), (problem,))
    problems = tuple(layout_message(entry, p, "missing") for p in missing)
    return AssetCheck(DATASET, key, root, entry.layout, tuple(missing), problems)


def check_weights(key: str, weights_root: str | Path) -> AssetCheck:
    """The model's weights file `<weights_root>/<catalog weights_file>`."""
    from worker.models import WeightsNotFoundError, resolve_weights_path  # imports torch

    entry = catalog.get_model(key)
    location = Path(weights_root).expanduser() / entry.weights_file
    try:
        location = resolve_weights_path(key, weights_root=weights_root)
    except WeightsNotFoundError as e:
        return AssetCheck(WEIGHTS, key, location, entry.weights_file, e.tried or (location,), (str(e),))
    problems = _unreadable([*location.parents[: len(Path(entry.weights_file).parts) - 1], location], location)
    return AssetCheck(WEIGHTS, key, location, entry.weights_file, (), tuple(problems))


def inspect_assets(
    data_root: str | Path, weights_root: str | Path, datasets: Sequence[str], models: Sequence[str]
) -> list[AssetCheck]:
    """One check per dataset, then one per model. Unknown keys raise CatalogError naming the valid ones."""
    _known("dataset", datasets, catalog.list_datasets())
    _known("model", models, catalog.list_models())
    checks = [check_dataset(k, data_root) for k in datasets]
    return checks + [check_weights(k, weights_root) for k in models]


def check_assets(data_root: str | Path, weights_root: str | Path, datasets: list[str], models: list[str]) -> list[str]:
    """Every missing dataset layout piece and weights file, one message each, naming its path; [] when all are
    in place."""
    return [p for c in inspect_assets(data_root, weights_root, datasets, models) for p in c.problems]


def _detail(c: AssetCheck, max_paths: int) -> list[str]:
    if not c.missing:
        return [f"      {p}" for p in c.problems]
    lines = [f"      expected: {c.expected}"]
    lines += [f"      missing:  {p}" for p in c.missing[:max_paths]]
    if len(c.missing) > max_paths:
        lines.append(f"      ... and {len(c.missing) - max_paths} more")
    return lines


def format_checklist(
    checks: Sequence[AssetCheck], data_root: str | Path, weights_root: str | Path, *, max_paths: int = 8
) -> str:
    """The checklist the CLI prints: a line per asset, what is missing indented under it, and a total."""
    lines: list[str] = []
    for kind, title, root in ((DATASET, "datasets under", data_root), (WEIGHTS, "weights under", weights_root)):
        rows = [c for c in checks if c.kind == kind]
        if not rows:
            continue
        lines.append(f"{title} {Path(root).expanduser().resolve()}")
        for c in rows:
            lines.append(f"  {'ok' if c.ok else 'MISSING':<8} {c.key:<18} {c.location}")
            if not c.ok:
                lines.extend(_detail(c, max_paths))
    bad = sum(1 for c in checks if not c.ok)
    pieces = sum(len(c.problems) for c in checks)
    n = len(checks)
    lines.append(f"all {n} assets present" if bad == 0 else f"{bad} of {n} assets incomplete ({pieces} missing)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m worker.assets_check",
        description="Check that datasets and pretrained weights are where trials will look for them.",
    )
    p.add_argument("--data-root", required=True, help="the sweep's data_root (each dataset under its root_subdir)")
    weights_env = os.environ.get("SHIFTSWEEP_WEIGHTS")
    p.add_argument(
        "--weights-root",
        default=weights_env,
        required=weights_env is None,
        help="where <weights_file> of each model lives (default: env SHIFTSWEEP_WEIGHTS)",
    )
    p.add_argument(
        "--datasets",
        nargs="+",
        default=catalog.list_datasets(synthetic=False),
        metavar="KEY",
        help=f"datasets to check (default: the paper's); valid: {', '.join(catalog.list_datasets())}",
    )
    p.add_argument(
        "--models",
        nargs="+",
        default=list(catalog.get_preset("paper_main")["models"]),
        metavar="KEY",
        help=f"models to check (default: paper_main's); valid: {', '.join(catalog.list_models())}",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("OUTDATED_IGNORE", "1")  # wilds otherwise asks PyPI for its latest version at import
    try:
        checks = inspect_assets(args.data_root, args.weights_root, args.datasets, args.models)
    except CatalogError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_checklist(checks, args.data_root, args.weights_root))
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
