"""`reslab compare`: grouping, mean ± std over seeds, paper deltas, metric direction, figures."""

from __future__ import annotations

import csv
import json
import re
import statistics
from datetime import datetime

import pytest
import yaml
from matplotlib.container import ErrorbarContainer

from reslab.config.load import load
from reslab.errors import UserError
from reslab.metrics import higher_is_better
from reslab.report import compare, figures
from reslab.report.runs import comparison_folder
from reslab.run import train
from support import ROOT, TINY


def fake_run(root, depth, shortcut, seed, train_err, val_err, *, data="digits", diag=False):
    """A run directory in the contract's format, with chosen numbers."""
    d = root / f"depth={depth},shortcut={shortcut},seed={seed}"
    d.mkdir(parents=True)
    cfg = {"seed": seed, "model": {"name": "cifar_resnet", "depth": depth, "shortcut": shortcut},
           "data": {"name": data}, "optim": {"schedule": "paper" if data == "cifar10" else "cosine"},
           "run": {"name": "sw"}}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    (d / "summary.json").write_text(json.dumps({
        "status": "completed", "train/err": train_err, "val/err": val_err, "val/err_best": val_err,
        "test/err": val_err, "params": 1000 * depth, "wall_s": 10.0, "images_per_s": 500.0}))
    rows = [{"step": 10 * e, "epoch": e, "train/err": train_err + 0.1 / (e + 1),
             "val/err": val_err + 0.1 / (e + 1)} for e in range(3)]
    if diag:
        rows.append({"step": 30, "epoch": 2, **{f"diag/block{i}_std": (0.5 if shortcut == "A"
                                                                       else 1.0) + 0.01 * i
                                                for i in range(4)},
                     **{f"diag/block{i}_grad": 0.1 for i in range(4)}})
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with open(d / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        w.writerows(rows)


@pytest.fixture
def sweep_dir(tmp_path):
    root = tmp_path / "sw"
    for depth, base in ((20, 0.01), (56, 0.30)):
        for shortcut, extra in (("none", 0.2), ("A", 0.0)):
            for seed in (0, 1, 2):
                fake_run(root, depth, shortcut, seed, base + extra + 0.01 * seed,
                         base + extra + 0.02 * seed, diag=True)
    return root


def test_groups_by_the_varied_keys_with_mean_std_and_n(sweep_dir, tmp_path):
    result = compare.compare([sweep_dir], out=tmp_path / "out")
    header, *lines = result["table"].splitlines()
    assert header.split()[:4] == ["model.depth", "model.shortcut", "n", "status"]
    row = next(line for line in lines if line.split()[:2] == ["56", "none"])
    values = [0.5 + 0.01 * s for s in (0, 1, 2)]
    expected = f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"
    assert row.split()[2:4] == ["3", "completed"] and expected in row
    for name in ("curves.png", "final.png", "diagnostics.png", "report.html"):
        path = tmp_path / "out" / name
        assert path.is_file() and path.stat().st_size > 5000, name
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "out/report.html").read_text().count("data:image/png;base64,") == 3



def test_a_run_named_twice_counts_once(sweep_dir, tmp_path):
    """A run given on its own and again inside its folder (overlapping globs) is one run."""
    one = next(sweep_dir.iterdir())
    twice = compare.compare([one, sweep_dir, one], out=tmp_path / "out")
    once = compare.compare([sweep_dir], out=tmp_path / "out2")
    assert twice["table"] == once["table"]
    assert " 3 " in next(line for line in twice["table"].splitlines()[1:])

def test_paper_recipe_runs_show_table6_and_the_delta(tmp_path, cli):
    fake_run(tmp_path / "p", 56, "A", 0, 0.01, 0.0720, data="cifar10")
    r = cli("compare", tmp_path / "p", "--by", "model.depth", "--out", tmp_path / "o")
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.splitlines()[:2]
    assert header.split()[:2] == ["model.depth", "n"] and "paper test err %" in header
    assert "6.97" in row and "+0.23" in row
    assert f"{tmp_path / 'o' / 'table.csv'}" in r.stdout.splitlines()[-1]


def sr_run(root, depth, residual, psnr, bicubic=29.5):
    d = root / f"depth={depth},global_residual={residual},seed=0"
    d.mkdir(parents=True)
    cfg = {"seed": 0, "model": {"name": "vdsr", "depth": depth, "global_residual": residual},
           "data": {"name": "photos"}, "run": {"name": "sr"}}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    (d / "summary.json").write_text(json.dumps({
        "status": "completed", "val/psnr": psnr, "val/psnr_best": psnr, "val/psnr_bicubic": bicubic,
        "val/psnr_gain": psnr - bicubic, "params": 1000, "wall_s": 1.0}))
    with open(d / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["step", "epoch", "val/psnr", "val/psnr_bicubic"])
        w.writeheader()
        w.writerows({"step": e, "epoch": e, "val/psnr": psnr - 1 / (e + 1), "val/psnr_bicubic": bicubic}
                    for e in range(3))


def test_super_resolution_runs_compare_on_psnr_with_the_bicubic_gain(tmp_path):
    for depth, plain, res in ((5, 29.0, 30.0), (20, 26.0, 30.2)):
        sr_run(tmp_path / "sr", depth, False, plain)
        sr_run(tmp_path / "sr", depth, True, res)
    result = compare.compare([tmp_path / "sr"], out=tmp_path / "o")
    header, *lines = result["table"].splitlines()
    cols = header.split()
    assert cols[:5] == ["model.depth", "model.global_residual", "n", "status", "val/psnr"]
    assert "val/psnr_gain" in cols and "val/err" not in cols
    rows = [line.split() for line in lines]
    assert [r[:2] for r in rows] == [["5", "False"], ["5", "True"], ["20", "False"], ["20", "True"]]
    assert rows[2][cols.index("val/psnr_gain")] == "-3.5000"
    assert (tmp_path / "o/curves.png").stat().st_size > 5000


def test_metric_direction_is_known():
    assert not higher_is_better("val/err") and higher_is_better("val/psnr")


def test_bad_input_is_a_sentence(tmp_path, sweep_dir, cli):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no runs"):
        compare.compare([tmp_path / "empty"])
    with pytest.raises(UserError, match="--by key 'model.dpeth'"):
        compare.compare([sweep_dir], by=["model.dpeth"], out=tmp_path / "o")
    r = cli("compare", "--wandb", "someone", env={"WANDB_MODE": "offline"})
    assert r.returncode == 2 and "--wandb must be ENTITY/PROJECT" in r.stderr


@pytest.mark.parametrize("every", [0, 3])
def test_diagnostics_are_logged_only_when_switched_on(tmp_path, every):
    summary = train.fit(load([ROOT / "configs/quickstart.yaml"], [
        *TINY, "trainer.max_epochs=2", "logger.wandb.mode=disabled", "run.test=false",
        f"diagnostics.every_n_steps={every}", f"run.root={tmp_path}"]))
    assert summary["status"] == "completed"
    metrics, = tmp_path.rglob("metrics.csv")
    with open(metrics) as f:
        rows = list(csv.DictReader(f))
    diag_rows = [r for r in rows if r.get("diag/block0_std")]
    if every == 0:
        assert not any(k.startswith("diag/") for k in rows[0])
    else:
        assert {int(r["step"]) for r in diag_rows} == {1, 4, 7, 10}  # measured in steps 1, 4, ...
        assert float(diag_rows[-1]["diag/block2_grad"]) > 0  # depth 8: blocks 0..2


def test_a_damaged_run_is_skipped_with_a_warning_and_status_is_shown(sweep_dir, tmp_path,
                                                                     capsys):
    broken = sorted(sweep_dir.iterdir())[0]
    (broken / "summary.json").write_text("{not json")
    failed = sorted(sweep_dir.iterdir())[1]
    summary = json.loads((failed / "summary.json").read_text())
    (failed / "summary.json").write_text(json.dumps({**summary, "status": "failed"}))
    result = compare.compare([sweep_dir], out=tmp_path / "out")
    assert f"warning: skipping {broken}" in capsys.readouterr().err
    assert "2 completed, 1 failed" in result["table"] or "1 completed, 1 failed" in result["table"]


@pytest.mark.parametrize("row", ["1,abc", "x,1", "5,1" + ",0" * 30])
def test_a_run_with_a_damaged_metrics_row_is_skipped_with_a_warning(sweep_dir, tmp_path, capsys,
                                                                    row):
    """A metrics.csv row with `abc` for a value (or `x` for a step) was a ValueError traceback
    when the curves were drawn."""
    broken = sorted(sweep_dir.iterdir())[0]
    with open(broken / "metrics.csv", "a") as f:
        f.write(row + "\n")
    compare.compare([sweep_dir], out=tmp_path / "out")
    err = capsys.readouterr().err
    assert f"warning: skipping {broken}: UserError: {broken / 'metrics.csv'} row" in err, err
    assert (tmp_path / "out" / "curves.png").is_file()


def test_numbers_no_mean_can_take_are_left_out_not_a_traceback(sweep_dir, tmp_path):
    """summary.json may hold any JSON number: `"params": 10**400` was an OverflowError."""
    run = sorted(sweep_dir.iterdir())[0]
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "params": 10**400}))
    result = compare.compare([sweep_dir], out=tmp_path / "out")
    assert (tmp_path / "out" / "table.csv").is_file() and "params" in result["table"]


def test_a_control_sequence_in_a_record_reaches_no_terminal(sweep_dir, tmp_path, cli):
    """A summary.json whose status holds an escape sequence (a crafted or damaged run) was
    printed raw by compare and status: it could recolour, retitle or clear the terminal."""
    run = sorted(sweep_dir.iterdir())[0]
    summary = json.loads((run / "summary.json").read_text())
    (run / "summary.json").write_text(json.dumps({**summary, "status": "\x1b[2J\x1b]0;x\x07"}))
    for args in (["compare", run, "--out", tmp_path / "out"], ["status", run]):
        r = cli(*args)
        assert r.returncode == 0, r.stderr
        assert "\x1b" not in r.stdout and "\\x1b[2J" in r.stdout, r.stdout


def test_a_huge_value_in_a_record_is_shown_short_and_drawn_without_warnings(sweep_dir, tmp_path,
                                                                           cli):
    """val/err 1e308 printed 309 digits and 6 numpy warnings came from the error bars; a
    100 000-character status was printed whole by compare and status."""
    first, second = sorted(sweep_dir.iterdir())[:2]
    for run, change in ((first, {"val/err": 1e308}), (second, {"status": "x" * 100_000})):
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps({**summary, **change}))
    r = cli("compare", sweep_dir, "--out", tmp_path / "out")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "e+30" in r.stdout and "0" * 20 not in r.stdout
    assert max(len(line) for line in r.stdout.splitlines()) < 1000
    r = cli("status", second)
    assert r.returncode == 0 and "x" * 999 + "…" in r.stdout and "x" * 1001 not in r.stdout


@pytest.fixture
def drawn(monkeypatch):
    """The figures compare draws, by file name, kept for reading their artists."""
    kept, save = {}, figures._save
    monkeypatch.setattr(figures, "_save", lambda fig, path: kept.setdefault(path.name, fig)
                        and save(fig, path))
    return kept


def test_curves_keep_one_colour_per_depth_across_panels_and_integer_epoch_ticks(
        sweep_dir, tmp_path, drawn):
    fake_run(sweep_dir, 8, "none", 0, 0.3, 0.3)  # a depth only the plain panel has
    compare.compare([sweep_dir], out=tmp_path / "out")
    colours, depths = {}, {}
    for ax in drawn["curves.png"].axes:
        lines = [line for line in ax.get_lines() if not line.get_label().startswith("_")]
        depths[ax.get_title()] = sorted({int(re.search(r"-(\d+)", ln.get_label()).group(1))
                                         for ln in lines})
        for line in lines:
            depth, split = re.fullmatch(r".*-(\d+)(?: \(A\))? (train|val)", line.get_label()).groups()
            colours.setdefault(int(depth), set()).add(line.get_color())
            assert line.get_linestyle() == {"train": "--", "val": "-"}[split]
        assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"train", "val"}
        assert all(float(t).is_integer() for t in ax.get_xticks()), ax.get_xticks()
    assert depths == {"plain networks": [8, 20, 56], "residual, option A": [20, 56]}
    assert all(len(c) == 1 for c in colours.values()), colours
    assert len({c.pop() for c in colours.values()}) == 3, "one colour per depth, not shared"
    for ax in drawn["diagnostics.png"].axes:
        assert all(float(t).is_integer() for t in ax.get_xticks())


def test_error_bars_only_for_groups_of_more_than_one_run(tmp_path, drawn):
    for seed in (0, 1, 2):
        fake_run(tmp_path / "sw", 20, "A", seed, 0.01 * seed, 0.1 + 0.01 * seed)
    fake_run(tmp_path / "sw", 56, "A", 0, 0.02, 0.12)
    compare.compare([tmp_path / "sw"], by=["model.depth"], out=tmp_path / "out")
    for ax in drawn["final.png"].axes:
        bars, = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
        (segment,), = [lines.get_segments() for lines in bars.lines[2]]
        assert segment[0][0] == 0 and segment[1][1] > segment[0][1]  # depth 20 only, a real span


def test_the_report_is_dated_and_names_each_group_s_run_directories(sweep_dir, tmp_path):
    days = [datetime.now().astimezone().strftime("%Y-%m-%d")]
    compare.compare([sweep_dir], out=tmp_path / "out")
    days.append(datetime.now().astimezone().strftime("%Y-%m-%d"))  # around midnight
    page = (tmp_path / "out/report.html").read_text()
    assert any(f"generated {day} " in page for day in days)
    runs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert len(runs) == 12 and all(f"<code>{run}</code>" in page for run in runs)
    section = page.split("ResNet-20 (A) (n=3)")[1].split("</ul>")[0]
    assert sorted(re.findall(r"<code>(.*?)</code>", section)) == [
        str(run) for run in runs if run.name.startswith("depth=20,shortcut=A,")]


def test_table_csv_holds_numbers_and_the_printed_table_the_formatting(sweep_dir, tmp_path):
    result = compare.compare([sweep_dir], out=tmp_path / "out")
    assert "56,000" in result["table"]  # the printed table: thousands separated
    with open(tmp_path / "out/table.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {"val/err", "val/err_std", "val/err_n", "images_per_s"} <= set(rows[0])
    plain56 = next(r for r in rows if (r["model.depth"], r["model.shortcut"]) == ("56", "none"))
    values = [0.5 + 0.01 * s for s in (0, 1, 2)]
    assert float(plain56["train/err"]) == pytest.approx(statistics.fmean(values))
    assert float(plain56["train/err_std"]) == pytest.approx(statistics.stdev(values))
    assert int(plain56["train/err_n"]) == int(plain56["n"]) == 3
    assert float(plain56["params"]) == 56000 and float(plain56["images_per_s"]) == 500
    text = ("model.shortcut", "status")  # a config value that is a word, and the group's status
    for row in rows:  # every other cell is a number (or empty: nothing logged)
        for key, cell in row.items():
            if key not in text and cell:
                float(cell)
    pandas = pytest.importorskip("pandas")
    frame = pandas.read_csv(tmp_path / "out/table.csv")
    assert all(frame[c].dtype.kind in "if" for c in frame.columns if c not in text)


def test_the_default_folder_names_the_comparison_and_never_takes_anothers(tmp_path, cli):
    for name in ("a", "b"):
        fake_run(tmp_path / name, 20, "A", 0, 0.1, 0.2)
    one = cli("compare", tmp_path / "a")
    assert one.returncode == 0, one.stderr
    [first] = (tmp_path / "a/compare").iterdir()
    assert first.name.startswith("a-") and len(first.name) == len("a-") + 12
    table = (first / "table.csv").read_bytes()
    both = cli("compare", tmp_path / "a", tmp_path / "b")
    assert both.returncode == 0, both.stderr
    folders = sorted((tmp_path / "a/compare").iterdir())
    assert len(folders) == 2 and (first / "table.csv").read_bytes() == table
    [second] = set(folders) - {first}
    assert second.name.startswith("a+b-") and f"written: {second}" in both.stdout
    swapped = cli("compare", tmp_path / "b", tmp_path / "a")  # the same set: the same name
    assert f"written: {tmp_path / 'b/compare' / second.name}/" in swapped.stdout
    again = cli("compare", tmp_path / "a", "--by", "model.depth")  # the same comparison: replaced
    assert again.returncode == 0 and len(list((tmp_path / "a/compare").iterdir())) == 2
    long = [tmp_path / ("x" * 60 + str(i)) for i in range(3)]
    assert len(comparison_folder(long).name) == 40 + 1 + 12  # bounded


def test_super_resolution_figures_have_whole_epochs_and_psnr_on_a_fitted_axis(tmp_path, drawn):
    for depth, plain, res in ((5, 29.0, 30.0), (20, 29.2, 30.2)):
        sr_run(tmp_path / "sr", depth, False, plain)
        sr_run(tmp_path / "sr", depth, True, res)
    compare.compare([tmp_path / "sr"], out=tmp_path / "o")
    for ax in drawn["curves.png"].axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    psnr, gain = (next(ax for ax in drawn["final.png"].axes if ax.get_title().startswith(t))
                  for t in ("final val/psnr (", "final val/psnr_gain ("))
    low, high = psnr.get_ylim()
    assert 28 < low < 29.0 and 30.2 < high < 31.5  # the 0.2 dB differences are visible
    assert not psnr.patches and not any(isinstance(c, ErrorbarContainer) for c in psnr.containers)
    assert gain.get_ylim()[0] <= 0 <= gain.get_ylim()[1] and len(gain.patches) == 4  # bars from 0
    assert figures.from_zero("val/err") and figures.from_zero("val/psnr_gain")
    assert not figures.from_zero("test/psnr") and not figures.from_zero("val/ssim")
