"""Import `wilds` without its network version check (the project never reaches the internet at run time)."""

from __future__ import annotations

import os
from types import ModuleType


def wilds_module() -> ModuleType:
    os.environ.setdefault("OUTDATED_IGNORE", "1")
    import wilds

    return wilds


def fmow_categories() -> list[str]:
    """FMoW's 62 category names in WILDS' label order (label i is categories[i])."""
    wilds_module()
    from wilds.datasets.fmow_dataset import categories

    return list(categories)
