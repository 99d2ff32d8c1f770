"""Writers of the WILDS layouts (Waterbirds, Camelyon17, FMoW), column for column what WILDS 2.0 reads."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from worker.data.read_wilds import CAMELYON_DIR, FMOW_DIR, WATERBIRDS_DIR
from worker.data.wilds_offline import fmow_categories
from worker.data.write_common import LabeledImage, check_item, nonempty, require_meta, save_image, write_release

WATERBIRDS_SPLITS = {"train": 0, "val": 1, "test": 2}
CAMELYON_ID_CENTERS = (0, 3, 4)
CAMELYON_SPLITS = {"train": 0, "id_val": 1}  # the metadata's split column; centers 1 and 2 are set by WILDS
# FMoW: raw splits of rgb_metadata.csv, and WILDS' derived split names with the years each allows.
FMOW_RAW_SPLITS = ("train", "val", "test", "seq")
FMOW_DERIVED = {"id_val": ("val", 2002, 2012), "id_test": ("test", 2002, 2012),
                "ood_val": ("val", 2013, 2015), "ood_test": ("test", 2016, 2017)}  # fmt: skip
FMOW_YEARS = (2002, 2017)
# One country per WILDS region; a code absent from the mapping file is WILDS' region "Other".
FMOW_COUNTRIES = {"Africa": ("Nigeria", "NG", "NGA"), "Americas": ("Brazil", "BR", "BRA"),
                  "Asia": ("India", "IN", "IND"), "Europe": ("France", "FR", "FRA"),
                  "Oceania": ("Australia", "AU", "AUS")}  # fmt: skip
FMOW_OTHER_CODE = "UNK"


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def write_waterbirds(root: str | Path, items: Iterable[LabeledImage]) -> Path:
    """root/waterbirds_v1.0/{RELEASE_v1.0.txt, metadata.csv, <folder>/<file>.jpg}.

    split: train | val | test; label y: 0 landbird, 1 waterbird; group = place: 0 land, 1 water.
    Optional meta: "species" (file and folder name), "folder".
    """
    d = Path(root) / WATERBIRDS_DIR
    rows = []
    for n, item in enumerate(items):
        check_item("waterbirds", n, item, WATERBIRDS_SPLITS, 2)
        if item.group not in (0, 1):
            raise ValueError(f"waterbirds item {n}: group (place) must be 0 land or 1 water, got {item.group!r}")
        img_id = n + 1  # WILDS' metadata is one-indexed
        species = item.meta.get("species", ("Landbird", "Waterbird")[item.label])
        folder = item.meta.get("folder", f"{item.label + 1:03d}.{species}")
        filename = f"{folder}/{species}_{img_id:05d}.jpg"
        save_image(item.image, d / filename, "JPEG")
        place_file = f"/{('land', 'water')[item.group]}/{img_id:08d}.jpg"
        rows.append([img_id, filename, item.label, WATERBIRDS_SPLITS[item.split], item.group, place_file])
    nonempty("waterbirds", len(rows))
    _write_csv(d / "metadata.csv", ["img_id", "img_filename", "y", "split", "place", "place_filename"], rows)
    write_release(d, "1.0")
    return d


def write_camelyon(root: str | Path, items: Iterable[LabeledImage]) -> Path:
    """root/camelyon17_v1.0/{RELEASE_v1.0.txt, metadata.csv, patches/patient_XXX_node_X/patch_...png}.

    group = hospital (center) 0..4; label = tumor 0/1. Centers 0, 3, 4: split train | id_val. Centers 1 (OOD
    val) and 2 (OOD test): split is ignored, WILDS assigns them. Optional meta: "patient", "node", "slide".
    """
    d = Path(root) / CAMELYON_DIR
    rows, seen, counters = [], set(), {}
    for n, item in enumerate(items):
        check_item("camelyon", n, item, (), 2)
        center = item.group
        if center not in range(5):
            raise ValueError(f"camelyon item {n}: group (hospital) must be 0..4, got {center!r}")
        if center in CAMELYON_ID_CENTERS and item.split not in CAMELYON_SPLITS:
            raise ValueError(f"camelyon item {n}: hospital {center} takes split train or id_val, got {item.split!r}")
        split = CAMELYON_SPLITS[item.split] if center in CAMELYON_ID_CENTERS else 0
        slide = int(item.meta.get("slide", 10 * center))  # 10 slides per hospital in the real data
        patient = int(item.meta.get("patient", 20 * center))
        node = int(item.meta.get("node", 0))
        k = counters[(patient, node)] = counters.get((patient, node), -1) + 1
        x, y = 96 * (k % 1024), 96 * (k // 1024)
        rel = f"patches/patient_{patient:03d}_node_{node}/patch_patient_{patient:03d}_node_{node}_x_{x}_y_{y}.png"
        if rel in seen:
            raise ValueError(f"camelyon item {n}: patch path {rel} is written twice")
        seen.add(rel)
        save_image(item.image, d / rel, "PNG")
        rows.append([len(rows), f"{patient:03d}", node, x, y, item.label, slide, center, split])
    nonempty("camelyon", len(rows))
    header = ["", "patient", "node", "x_coord", "y_coord", "tumor", "slide", "center", "split"]
    (d / "patches").mkdir(parents=True, exist_ok=True)
    _write_csv(d / "metadata.csv", header, rows)
    write_release(d, "1.0")
    return d


def _fmow_split_and_year(n: int, item: LabeledImage) -> tuple[str, int]:
    year = int(require_meta("fmow", n, item, "year"))
    if not FMOW_YEARS[0] <= year <= FMOW_YEARS[1]:
        raise ValueError(f"fmow item {n}: meta['year'] must be in {FMOW_YEARS[0]}..{FMOW_YEARS[1]}, got {year}")
    if item.split in FMOW_RAW_SPLITS:
        return item.split, year
    if item.split not in FMOW_DERIVED:
        raise ValueError(
            f"fmow item {n}: split {item.split!r} is not one of {list(FMOW_RAW_SPLITS) + list(FMOW_DERIVED)}"
        )
    raw, lo, hi = FMOW_DERIVED[item.split]
    if not lo <= year <= hi:
        raise ValueError(f"fmow item {n}: WILDS puts split {item.split!r} in years {lo}..{hi}, but meta year={year}")
    return raw, year


def write_fmow(root: str | Path, items: Iterable[LabeledImage]) -> Path:
    """root/fmow_v1.1/{RELEASE_v1.1.txt, rgb_metadata.csv, country_code_mapping.csv, images/rgb_img_<i>.png}.

    label: index into WILDS' 62 FMoW categories. meta["year"] (2002..2017) becomes the timestamp and
    meta["region"] (Africa, Americas, Asia, Europe, Oceania, Other) a country code. split: a raw metadata split
    (train, val, test, seq) or a WILDS split (id_val, id_test before 2013; ood_val 2013-2015; ood_test 2016 on),
    which is checked against the year and written as its raw split. WILDS drops train rows from 2013 on.
    """
    d = Path(root) / FMOW_DIR
    categories = fmow_categories()
    rows = []
    for n, item in enumerate(items):
        check_item("fmow", n, item, (), len(categories))
        split, year = _fmow_split_and_year(n, item)
        region = require_meta("fmow", n, item, "region")
        if region not in FMOW_COUNTRIES and region != "Other":
            raise ValueError(f"fmow item {n}: meta['region'] {region!r} is not one of {[*FMOW_COUNTRIES, 'Other']}")
        code = FMOW_COUNTRIES[region][2] if region in FMOW_COUNTRIES else FMOW_OTHER_CODE
        category = categories[item.label]
        save_image(item.image, d / "images" / f"rgb_img_{len(rows)}.png", "PNG")
        name = f"{category}_{len(rows)}_0_rgb.jpg"
        w, h = item.image.size
        rows.append([split, name, f"{split}/{category}/{category}_{len(rows)}/{name}", category, w, h, code,
                     f"{year}-06-15T12:00:00Z"])  # fmt: skip
    nonempty("fmow", len(rows))
    header = ["split", "img_filename", "img_path", "category", "img_width", "img_height", "country_code", "timestamp"]
    _write_csv(d / "rgb_metadata.csv", header, rows)
    mapping = [[name, a2, a3, region] for region, (name, a2, a3) in FMOW_COUNTRIES.items()]
    _write_csv(d / "country_code_mapping.csv", ["name", "alpha-2", "alpha-3", "region"], mapping)
    write_release(d, "1.1")
    return d
