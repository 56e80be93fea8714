"""Outputs never clobber: `export --out` and `compare --out` go through one rule
(rundir.output_path). Never into a run's or a sweep's records, never over a device, FIFO or
folder, over an existing file or into a non-empty folder only with --force; written atomically,
and a refused or failed command leaves nothing behind (not even an empty folder)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from reslab.config.load import load
from reslab.report import compare, figures
from reslab.run import export, train
from support import TINY, file_size_limit

COMMON = [*TINY, "trainer.max_epochs=1", "run.test=false", "logger.wandb.mode=disabled",
          "trainer.progress_bar=false"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("outputs")
    return root / "default" / train.fit(load([], [*COMMON, f"run.root={root}"]))["run_id"]


def digests(folder: Path) -> dict:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(folder.rglob("*")) if p.name != ".lock"}


def refused(r, *words) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    for w in words:
        assert w in r.stderr, (w, r.stderr)


@pytest.mark.parametrize("target", ["checkpoints/best.ckpt", "config.yaml", "summary.json",
                                    "checkpoints", "", "checkpoints/new.pt", "slurm/log",
                                    "metrics.csv"])
def test_export_never_writes_into_a_run_s_records(cli, run, target):
    """`--out RUN/checkpoints/best.ckpt --format state_dict` replaced best.ckpt."""
    before = digests(run)
    refused(cli("export", run, "--format", "state_dict", "--out", run / target, "--force"),
            "is inside the records of", str(run))
    assert digests(run) == before


def test_compare_never_writes_into_a_run_s_records(cli, run):
    before = digests(run)
    refused(cli("compare", run, "--out", run / "checkpoints", "--force"), "inside the records")
    refused(cli("compare", run, "--out", run, "--force"), "inside the records")
    assert digests(run) == before


def test_each_output_goes_only_into_its_own_area(cli, run, tmp_path):
    """`export RUN_A --out RUN_B/export/m.pt` wrote one run's model among another's exports; a
    comparison went into a run's export/ folder and an export into its compare/ folder."""
    other = Path(shutil.copytree(run, tmp_path / "other", ignore=shutil.ignore_patterns(".lock")))
    before = digests(other), digests(run)
    refused(cli("export", run, "--format", "state_dict", "--out", other / "export" / "m.pt"),
            f"inside the records of {other}; write elsewhere or into its own run's export folder")
    refused(cli("export", run, "--format", "state_dict", "--out", run / "compare" / "m.pt"),
            "its own run's export folder")
    refused(cli("compare", run, "--out", run / "export" / "c"), "into its compare folder")
    assert (digests(other), digests(run)) == before


def test_a_link_into_a_run_s_records_is_refused(cli, run, tmp_path):
    (tmp_path / "m.pt").symlink_to(run / "checkpoints" / "best.ckpt")
    before = digests(run)
    refused(cli("export", run, "--out", tmp_path / "m.pt", "--force"), "inside the records")
    assert digests(run) == before


def test_a_link_to_nothing_is_not_written_through(cli, run, tmp_path):
    """`--out LINK` where LINK points at a missing path created the link's target, wherever it
    pointed; a link loop is one sentence too."""
    (tmp_path / "gone").symlink_to(tmp_path / "missing.pt")
    (tmp_path / "gone_dir").symlink_to(tmp_path / "missing")
    (tmp_path / "a").symlink_to("b")
    (tmp_path / "b").symlink_to("a")
    for out, why in (("gone", "does not exist"), ("gone_dir/m.pt", "does not exist"),
                     ("a", "leads back to itself (a loop)")):
        refused(cli("export", run, "--format", "state_dict", "--out", tmp_path / out),
                "a link to", why)
    refused(cli("compare", run, "--out", tmp_path / "gone_dir"), "a link to")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "gone", "gone_dir"]


@pytest.mark.parametrize("fmt", ["torchscript", "state_dict", "onnx"])
def test_a_full_disk_is_one_sentence_and_leaves_nothing(cli, run, tmp_path, fmt):
    """On a full disk torch.jit.save aborted the process (exit 134) and torch.save raised a
    RuntimeError, each leaving its temporary file; the kernel's file-size limit stands in for
    the full disk (the same refusal of a write)."""
    with file_size_limit(64 << 10):
        r = cli("export", run, "--format", fmt, "--out", tmp_path / "out" / "m.bin")
    refused(r, "cannot write there", "File too large")
    assert not (tmp_path / "out").exists()


def test_devices_fifos_and_folders_are_never_replaced(cli, run, tmp_path):
    os.mkfifo(tmp_path / "fifo.pt")
    (tmp_path / "m.json").mkdir()
    refused(cli("export", run, "--out", "/dev/null", "--force"), "/dev/null is a device, FIFO")
    refused(cli("export", run, "--out", tmp_path / "fifo.pt", "--force"), "device, FIFO or socket")
    refused(cli("export", run, "--out", tmp_path / "m.pt", "--force"), "m.json is a folder")
    refused(cli("compare", run, "--out", tmp_path / "fifo.pt", "--force"), "is a file, not a folder")
    assert Path("/dev/null").is_char_device() and (tmp_path / "fifo.pt").is_fifo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.pt", "m.json"]


def test_an_existing_export_is_replaced_only_with_force(cli, run, tmp_path):
    out = tmp_path / "m.pt"
    assert cli("export", run, "--out", out).returncode == 0
    first = digests(tmp_path)
    refused(cli("export", run, "--out", out), "exists; pass --force")
    assert digests(tmp_path) == first
    r = cli("export", run, "--out", out, "--format", "state_dict", "--force")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.pt"]
    assert digests(tmp_path) != first


def test_the_default_export_folder_of_a_run_is_allowed_once(cli, run):
    r = cli("export", run, "--format", "state_dict")
    assert r.returncode == 0 and (run / "export" / "model.state_dict.pt").is_file(), r.stderr
    refused(cli("export", run, "--format", "state_dict"), "exists; pass --force")


def test_a_non_empty_compare_folder_needs_force(cli, run, tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "notes.txt").write_text("mine")
    refused(cli("compare", run, "--out", tmp_path / "o"), "not empty; pass --force")
    r = cli("compare", run, "--out", tmp_path / "o", "--force")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / "notes.txt").read_text() == "mine"
    assert {"table.csv", "report.html"} <= {p.name for p in (tmp_path / "o").iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("place,words", [("/proc/reslab-h1/out", "cannot write there"),
                                         ("/proc/self/reslab-h1", "is not writable")])
def test_an_unwritable_place_is_one_sentence_and_leaves_nothing(cli, run, place, words):
    refused(cli("export", run, "--out", f"{place}/m.pt"), words)
    refused(cli("compare", run, "--out", place), words)
    assert not Path(place).exists()


def test_a_nul_byte_or_an_empty_output_path_is_one_sentence(cli, run, tmp_path):
    refused(cli("export", run, "--out", "a\0b.pt"), "'a\\x00b.pt' is not a usable path")
    for command in ("export", "compare"):  # "" resolved to the current folder
        refused(cli(command, run, "--out", "", cwd=tmp_path), "--out is empty")
        refused(cli(command, run, "--out", " ", cwd=tmp_path), "--out is empty")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_export_leaves_no_folder_behind(run, tmp_path, monkeypatch):
    """A refused export left an empty `export/`."""
    monkeypatch.setattr(export, "compare", lambda *a: (_ for _ in ()).throw(OSError(28, "full")))
    with pytest.raises(Exception, match="cannot write there"):
        export.export(run, "torchscript", tmp_path / "a" / "b" / "m.pt")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(Exception, match="cannot write there"):
        export.export(run, "torchscript")
    assert not [p for p in run.rglob("*") if "torchscript" in p.name]


def test_a_failed_compare_leaves_no_folder_behind(run, tmp_path, monkeypatch):
    def half_written(runs, by, metric, out):
        (out / "curves.png").write_bytes(b"half")
        raise RuntimeError("matplotlib died")

    monkeypatch.setattr(figures, "write_all", half_written)
    with pytest.raises(RuntimeError):
        compare.compare([run], out=tmp_path / "new" / "cmp")
    assert list(tmp_path.iterdir()) == []
