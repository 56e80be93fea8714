"""`reslab compare --wandb` against a fake of exactly the wandb.Api surface it calls, fed from
the offline W&B files of real tiny runs: the online path gives the offline path's table and
files. The --publish report is checked as data (and as wandb_workspaces objects) offline."""

from __future__ import annotations

import pytest
import wandb

from reslab.errors import UserError
from reslab.report import compare, wandb_report, wandb_runs
from reslab.report.runs import find_runs
from wandb_files import FakeApi


@pytest.fixture
def runs(wandb_series):
    root, dirs = wandb_series
    return root, [d.path for d in dirs]


@pytest.fixture
def fake_api(monkeypatch, runs):
    monkeypatch.setattr(FakeApi, "projects", {"me/proj": runs[1]})
    monkeypatch.setattr(wandb, "Api", FakeApi)


def test_online_and_offline_compare_give_the_same_table_and_files(runs, fake_api, tmp_path):
    root, _ = runs
    offline = compare.compare([root / "cmp"], out=tmp_path / "offline")
    online = compare.compare_wandb("me/proj", out=tmp_path / "online")
    assert online["table"] == offline["table"]
    assert "model.depth" in online["table"] and "model.shortcut" in online["table"]
    assert sorted(p.name for p in online["files"]) == sorted(p.name for p in offline["files"])
    assert (tmp_path / "online" / "table.csv").read_text() == \
        (tmp_path / "offline" / "table.csv").read_text()
    # the figures drew the same curves: every run's epoch rows came back from the history
    offline_runs = {
        r.path.name: r.epochs("val/err") for r in find_runs([root / "cmp"])}
    online_runs = {r.path.name.removeprefix("wandb:"): r.epochs("val/err")
                   for r in wandb_runs.fetch("me/proj")}
    assert online_runs == offline_runs and all(online_runs.values())  # float32 both ways


def test_group_and_filter_select_runs(runs, fake_api, tmp_path, cli):
    one = compare.compare_wandb("me/proj", out=tmp_path / "a", filters=["model.depth=14"],
                                by=["model.shortcut"])
    assert one["table"].splitlines()[1].split()[:2] == ["A", "1"]
    with pytest.raises(UserError, match="no runs in W&B project me/proj in group other"):
        compare.compare_wandb("me/proj", group="other", out=tmp_path / "b")
    r = cli("compare", "--wandb", "me/proj", "--group", "cmp", "--out", str(tmp_path / "c"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "c" / "report.html").is_file()


def test_network_failure_is_one_sentence(monkeypatch, cli):
    class Unreachable(FakeApi):
        def runs(self, path, filters=None):
            raise ConnectionError("Connection refused: http://127.0.0.1:9/graphql")

    monkeypatch.setattr(wandb, "Api", Unreachable)
    r = cli("compare", "--wandb", "me/proj")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "could not read the runs from W&B (Connection refused" in r.stderr
    r = cli("compare", "--wandb", "not-a-path")
    assert r.returncode == 2 and "ENTITY/PROJECT" in r.stderr
    r = cli("compare", "runs", "--publish")
    assert r.returncode == 2 and "with --wandb" in r.stderr


def test_report_spec_has_fig6_side_by_side_parallel_coordinates_and_the_table(runs, fake_api):
    found = wandb_runs.fetch("me/proj", group="cmp")
    spec = wandb_report.spec("me", "proj", ["model.depth", "model.shortcut"], "val/err", "cmp",
                             found)
    grids = [b for b in spec["blocks"] if b["type"] == "grid"]
    fig6 = grids[0]
    assert [rs["name"] for rs in fig6["runsets"]] == ["plain networks", "residual networks"]
    assert fig6["runsets"][0]["filters"] == \
        "Metric('Group') == 'cmp' and Config('model.shortcut') == 'none'"
    assert fig6["runsets"][1]["groupby"] == ["config.model.depth", "config.model.shortcut"]
    assert [(p["y"], p["x"]) for p in fig6["panels"]] == \
        [(["train/err"], "trainer/global_step"), (["val/err"], "trainer/global_step")]
    assert [p["position"][0] for p in fig6["panels"]] == [0, 12]  # side by side
    assert grids[1]["panels"][0]["kind"] == "parallel" and \
        grids[1]["panels"][0]["columns"] == ["c::model.depth", "c::model.shortcut", "s::val/err"]
    assert grids[2]["panels"][0]["kind"] == "table"

    report = wandb_report.build_report(spec)  # the wandb_workspaces objects, no network
    assert report.entity == "me" and report.project == "proj" and report.title == spec["title"]
    panels = [type(p).__name__ for b in report.blocks if hasattr(b, "panels") for p in b.panels]
    assert panels == ["LinePlot", "LinePlot", "ParallelCoordinatesPlot", "RunComparer"]
    assert report.blocks[2].runsets[0].filters == fig6["runsets"][0]["filters"]
