"""Environment facts (reslab.environment): training on more than one node is refused before the run
directory exists unless a launcher started this process as one of the nodes' (SLURM, torchrun,
or MASTER_ADDR and NODE_RANK); without one DDP's rendezvous waited forever. In this process."""

from __future__ import annotations

import pytest

from reslab import environment
from reslab.errors import UserError
from support import TINY

LAUNCHERS = {"a SLURM step": {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "2"},
             "torchrun": {"TORCHELASTIC_RUN_ID": "none"},
             "MASTER_ADDR and NODE_RANK": {"MASTER_ADDR": "10.0.0.1", "NODE_RANK": "1"}}
VARIABLES = {k for env in LAUNCHERS.values() for k in env}


@pytest.fixture
def no_launcher(monkeypatch):
    for k in VARIABLES:
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


@pytest.mark.timeout(120)  # before the refusal, this waited for the other nodes forever
@pytest.mark.parametrize("nodes", ["2", "64"])
def test_more_than_one_node_without_a_launcher_is_refused_before_the_run_exists(
        tmp_path, cli, no_launcher, nodes):
    r = cli("train", *TINY, f"trainer.num_nodes={nodes}", f"run.root={tmp_path}/runs")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"trainer.num_nodes={nodes} needs a process on each node" in r.stderr
    assert "reslab submit" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", LAUNCHERS)
def test_a_launcher_is_what_allows_more_nodes(no_launcher, name):
    assert environment.node_launcher() is None
    with pytest.raises(UserError, match="trainer.num_nodes=2 needs"):
        environment.check_nodes(2)
    for k, v in LAUNCHERS[name].items():
        no_launcher.setenv(k, v)
    assert environment.node_launcher() == name
    environment.check_nodes(2)


def test_one_node_needs_no_launcher(no_launcher):
    environment.check_nodes(1)  # devices > 1 on one node: Lightning starts the local processes
    no_launcher.setenv("SLURM_JOB_ID", "7")  # a bare process in a job (no srun) is no step
    with pytest.raises(UserError):
        environment.check_nodes(2)
