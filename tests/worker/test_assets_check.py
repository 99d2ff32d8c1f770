"""`worker.assets_check`: every missing layout piece and weights file is named, and the CLI's exit status says so."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.worker.data_fakes import write_fake_domainnet, write_fake_living17, write_fake_waterbirds
from worker import catalog
from worker.assets_check import check_assets, inspect_assets, main
from worker.catalog import CatalogError


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    """A data root holding Waterbirds and DomainNet in their real layouts, and a weights root with tiny_bit's file."""
    data, weights = tmp_path / "data", tmp_path / "weights"
    write_fake_waterbirds(data)
    write_fake_domainnet(data / catalog.get_dataset("domainnet").root_subdir)
    weights.mkdir()
    (weights / catalog.get_model("tiny_bit").weights_file).write_bytes(b"stand-in: only the file's presence is checked")
    return data, weights


def test_nothing_missing(roots: tuple[Path, Path]) -> None:
    data, weights = roots
    assert check_assets(data, weights, ["waterbirds", "domainnet"], ["tiny_bit"]) == []
    assert all(c.ok for c in inspect_assets(data, weights, ["waterbirds", "domainnet"], ["tiny_bit"]))


def test_each_missing_piece_is_named(roots: tuple[Path, Path]) -> None:
    data, weights = roots
    (data / "waterbirds_v1.0" / "metadata.csv").unlink()
    dn = data / "domainnet"
    (dn / "SENTRY_splits" / "real_test_mini.txt").unlink()
    shutil.rmtree(dn / "real")
    problems = check_assets(data, weights, ["waterbirds", "domainnet"], ["tiny_bit", "tiny_vit"])
    assert len(problems) == 4, problems
    assert str(data / "waterbirds_v1.0" / "metadata.csv") in problems[0]
    assert any(str(dn / "SENTRY_splits" / "real_test_mini.txt") in p for p in problems[1:3])
    assert any(
        p.endswith(f"{dn / 'real'}; expected layout: {catalog.get_dataset('domainnet').layout}") for p in problems
    )
    assert str(weights / catalog.get_model("tiny_vit").weights_file) in problems[3]


def test_a_missing_folder_hides_its_contents(tmp_path: Path) -> None:
    """Without imagenet/val, one line says so instead of one per Living-17 subclass folder inside it."""
    data = tmp_path / "data"
    root = data / catalog.get_dataset("living17").root_subdir
    write_fake_living17(root)
    assert check_assets(data, tmp_path, ["living17"], []) == []
    shutil.rmtree(root / "val")
    first_wnid = catalog.living17_split()[0]["source"][0][1]
    shutil.rmtree(root / "train" / first_wnid)
    [check] = inspect_assets(data, tmp_path, ["living17"], [])
    assert check.missing == (root / "val", root / "train" / first_wnid)
    assert len(check.problems) == 2


def test_missing_dataset_root(tmp_path: Path) -> None:
    [problem] = check_assets(tmp_path, tmp_path, ["domainnet"], [])
    assert str(tmp_path / "domainnet") in problem and "missing dataset root" in problem


def test_unknown_keys_name_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="unknown dataset 'imagenet'; valid datasets: living17"):
        check_assets(tmp_path, tmp_path, ["imagenet"], [])
    with pytest.raises(CatalogError, match="unknown model 'resnet50'.*clip_vit_b16"):
        check_assets(tmp_path, tmp_path, [], ["resnet50"])


def test_cli_checklist_and_exit_status(roots: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    data, weights = roots
    base = ["--data-root", str(data), "--weights-root", str(weights), "--datasets", "waterbirds", "domainnet"]
    assert main([*base, "--models", "tiny_bit"]) == 0
    assert capsys.readouterr().out.strip().endswith("all 3 assets present")

    assert main([*base, "--models", "tiny_bit", "tiny_convnext"]) == 1
    out = capsys.readouterr().out
    assert "MISSING  tiny_convnext" in out
    assert f"missing:  {weights / catalog.get_model('tiny_convnext').weights_file}" in out
    assert out.strip().endswith("1 of 4 assets incomplete (1 missing)")

    assert main([*base, "--models", "no_such_model"]) == 2
    assert "unknown model 'no_such_model'" in capsys.readouterr().err


def _as_nobody(fn: Callable[[], str]) -> str:
    """`fn()` in a forked child that has dropped root for `nobody`; the modules it needs are imported before the
    fork (the interpreter's own files may be where `nobody` cannot read)."""
    import pwd

    import worker.data.load  # noqa: F401
    import worker.models  # noqa: F401

    nobody = pwd.getpwnam("nobody")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            os.write(write, fn().encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        out = f.read()
    os.waitpid(pid, 0)
    return out


def test_files_another_user_cannot_read_are_named(tmp_path: Path) -> None:
    """Data written by root with owner-only modes is present, yet useless to the images' uid 1000: said so, with
    the fix. As root the check runs as `nobody` (root reads everything); otherwise on files made unreadable."""
    base = Path(tempfile.mkdtemp(prefix="assets-perm-"))  # not under pytest's owner-only tmp folder
    try:
        base.chmod(0o755)
        data, weights = base / "data", base / "weights"
        write_fake_waterbirds(data)
        weights.mkdir()
        (weights / catalog.get_model("tiny_bit").weights_file).write_bytes(b"stand-in")
        for p in (data, weights):
            p.chmod(0o755)
        [metadata] = data.rglob("metadata.csv")
        wb_root = catalog.get_dataset("waterbirds").root(data)
        metadata.chmod(0o600 if os.geteuid() == 0 else 0o000)
        (weights / catalog.get_model("tiny_bit").weights_file).chmod(0o600 if os.geteuid() == 0 else 0o000)
        if os.geteuid() == 0:
            out = _as_nobody(lambda: "\n".join(check_assets(data, weights, ["waterbirds"], ["tiny_bit"])))
        else:
            out = "\n".join(check_assets(data, weights, ["waterbirds"], ["tiny_bit"]))
        assert f"{metadata} is not readable by this process" in out
        assert "mode 600" in out or "mode 0" in out
        assert f"chmod -R a+rX {wb_root}" in out
        assert f"{weights / catalog.get_model('tiny_bit').weights_file} is not readable" in out
    finally:
        shutil.rmtree(base, ignore_errors=True)
