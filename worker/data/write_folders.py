"""Writers of the folder layouts: DomainNet with SENTRY list files, and ImageNet folders for Living-17."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from worker import catalog
from worker.data.read_folders import SENTRY_DIR, sentry_list
from worker.data.write_common import LabeledImage, check_item, nonempty, require_meta, save_image

DOMAINNET_SPLITS = ("train", "test")
IMAGENET_SPLITS = ("train", "val")


def write_domainnet(root: str | Path, items: Iterable[LabeledImage]) -> Path:
    """root/SENTRY_splits/<domain>_<train|test>_mini.txt and images at root/<domain>/<class_name>/<file>.jpg.

    meta["domain"] (e.g. sketch, real) is required; meta["class_name"] defaults to class_<label>, and one
    label must keep one class name. Each list line is "<domain>/<class_name>/<file>.jpg <label>".
    """
    root = Path(root)
    lines: dict[tuple[str, str], list[str]] = defaultdict(list)
    names: dict[int, str] = {}
    counts: dict[tuple[str, int], int] = defaultdict(int)
    for n, item in enumerate(items):
        check_item("domainnet", n, item, DOMAINNET_SPLITS, None)
        domain = str(require_meta("domainnet", n, item, "domain"))
        class_name = str(item.meta.get("class_name", f"class_{item.label:03d}"))
        if names.setdefault(item.label, class_name) != class_name:
            raise ValueError(
                f"domainnet item {n}: label {item.label} is class {names[item.label]!r}, not {class_name!r}"
            )
        counts[(domain, item.label)] += 1
        rel = f"{domain}/{class_name}/{domain}_{item.label:03d}_{counts[(domain, item.label)]:06d}.jpg"
        save_image(item.image, root / rel, "JPEG")
        lines[(domain, item.split)].append(f"{rel} {item.label}")
    nonempty("domainnet", len(names))
    (root / SENTRY_DIR).mkdir(parents=True, exist_ok=True)
    for (domain, split), rows in lines.items():
        sentry_list(root, domain, split).write_text("\n".join(rows) + "\n")
    return root


def _living17_labels() -> dict[str, int]:
    return {wnid: int(c["label"]) for c in catalog.living17_split() for kind in ("source", "target")
            for _, wnid, _ in c[kind]}  # fmt: skip


def write_imagenet_living17(root: str | Path, items: Iterable[LabeledImage]) -> Path:
    """root/{train,val}/<wnid>/<file>.JPEG (ImageNet val sorted into class folders, as BREEDS reads it).

    meta["wnid"] is required; for a Living-17 subclass the label must be its Living-17 class. Other wnids are
    written too (a real ImageNet has them) and ignored by the Living-17 reader.
    """
    root = Path(root)
    known = _living17_labels()
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for n, item in enumerate(items):
        check_item("living17", n, item, IMAGENET_SPLITS, None)
        wnid = str(require_meta("living17", n, item, "wnid"))
        if wnid in known and known[wnid] != item.label:
            raise ValueError(f"living17 item {n}: wnid {wnid} is Living-17 class {known[wnid]}, not {item.label}")
        counts[(item.split, wnid)] += 1
        k = counts[(item.split, wnid)]
        name = f"{wnid}_{k}.JPEG" if item.split == "train" else f"ILSVRC2012_val_{wnid}_{k:08d}.JPEG"
        save_image(item.image, root / item.split / wnid / name, "JPEG")
    nonempty("living17", sum(counts.values()))
    return root
