"""Fixtures: every test runs from the repository root with W&B offline and quiet under its own
tmp dir and no SLURM variables; `cli` runs the `reslab` command in this process. Under
pytest-xdist (`make test` runs two workers) the tests split into units of work as
`pytest_collection_modifyitems` says."""

from __future__ import annotations

import os

import pytest

from reslab.config.load import load
from reslab.run import train
from reslab.tracking.rundir import RunDir
from support import ROOT, TINY, Result, run_main

SERVICES = {"slurm", "ray"}  # markers of the tests that start the local SLURM cluster or Ray


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Units of work for `--dist loadgroup`: the SLURM and Ray tests are one unit, queued first
    (one worker runs them one after another, so two services never compete for the cluster or
    the CPUs while the other worker runs the rest); every other test file is a unit of its own,
    so its module fixtures are built once."""
    def uses_services(item: pytest.Item) -> bool:
        return any(m.name in SERVICES for m in item.iter_markers())

    for item in items:
        group = "services" if uses_services(item) else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))
    items.sort(key=lambda item: not uses_services(item))  # stable: the rest keep their order


@pytest.hookimpl(trylast=True)  # after xdist has named each test's unit
def pytest_collection_finish(session: pytest.Session) -> None:
    """Fail loudly where xdist cannot group: it suffixes a node id with its group, which pytest
    9.2 ignores (xdist 3.8 writes `_nodeid`, 9.2 reads `_id`), and then the SLURM tests ran on
    both workers at once and starved each other's jobs."""
    items = session.items
    if getattr(session.config.option, "loadgroup", False) and items and "@" not in items[0].nodeid:
        raise pytest.UsageError("pytest-xdist's --dist loadgroup does not group tests under pytest "
                                f"{pytest.__version__}: install the pytest of constraints.txt")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_DIR", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)  # W&B's own variables win over reslab's defaults
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    for k in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(k)
    for k in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS"):  # set by in-process train.fit
        monkeypatch.delenv(k, raising=False)


@pytest.fixture
def cli(monkeypatch):
    """`cli("train", "model.depth=8", ...)` -> Result: the `reslab` command in this process."""

    def call(*args, cwd=None, env: dict | None = None) -> Result:
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, v)
        if cwd is not None:
            monkeypatch.chdir(cwd)
        return run_main(*args)

    return call


@pytest.fixture(scope="session")
def wandb_series(tmp_path_factory) -> tuple:
    """(root, run dirs): three real runs of one series (`run.name=cmp`) that differ in depth and
    shortcut, with their offline W&B files (log_model=best; the third skips its test)."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("series")
    mp.chdir(ROOT)
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_CONFIG_DIR", str(root / "wandb-config"))
    for name in ("WANDB_DIR", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_BASE_URL"):
        mp.delenv(name, raising=False)
    runs = []
    for v in (["model.depth=8", "model.shortcut=A"], ["model.depth=8", "model.shortcut=none"],
              ["model.depth=14", "model.shortcut=A", "run.test=false"]):
        cfg = load([], [*TINY, "trainer.max_epochs=2", "run.name=cmp", "trainer.progress_bar=false",
                        *v, f"run.root={root}"])
        runs.append(RunDir(root / "cmp" / train.fit(cfg)["run_id"]))
    mp.undo()
    return root, runs
