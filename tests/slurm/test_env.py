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


RANK_VARIABLES = [*environment.RANKS, *environment.COUNTS, "SLURM_JOB_ID", "SLURM_JOB_NAME",
                  "TORCHELASTIC_RUN_ID", "MASTER_ADDR"]


@pytest.fixture
def no_ranks(monkeypatch):
    for k in RANK_VARIABLES:
        monkeypatch.delenv(k, raising=False)
    return monkeypatch


# Before the check, a leftover rank (another shell's torchrun, an sbatch shell outside srun)
# trained the run silently as a non-zero rank: exit 0, no output, only checkpoints/ (no
# config.yaml, summary.json or lock); a SLURM step whose tasks did not fit the run, or a rank
# that was not a number, was Lightning's traceback.
@pytest.mark.parametrize("env, said", [
    ({"LOCAL_RANK": "1"}, "LOCAL_RANK=1 in the environment says this process is not the first"),
    ({"RANK": "1", "WORLD_SIZE": "2"}, "unset RANK"),
    ({"SLURM_PROCID": "1"}, "SLURM_PROCID=1 in the environment"),
    ({"NODE_RANK": "1"}, "unset NODE_RANK"),
    ({"RANK": "abc"}, "RANK='abc' is not a whole number"),
    ({"LOCAL_RANK": "-1"}, "LOCAL_RANK='-1' is not a whole number"),
    ({"SLURM_JOB_ID": "5", "SLURM_NTASKS": "1", "SLURM_PROCID": "3"},
     "SLURM_PROCID=3 is not a task of this SLURM step (SLURM_NTASKS=1)"),
    ({"SLURM_JOB_ID": "5", "SLURM_NTASKS": "2", "SLURM_PROCID": "1"},
     "this SLURM step (SLURM_NTASKS=2) does not start one task per process of the run "
     "(trainer.devices=1 x trainer.num_nodes=1)"),
    ({"SLURM_JOB_ID": "5", "SLURM_NTASKS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "1"},
     "SLURM_NTASKS_PER_NODE=2"),
])
def test_a_stray_or_unfitting_rank_is_refused_before_the_run_exists(tmp_path, cli, no_ranks,
                                                                     env, said):
    r = cli("train", *TINY, f"run.root={tmp_path}/runs", env=env)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert said in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "runs").exists()


def test_rank_zero_and_a_fitting_step_train(tmp_path, cli, no_ranks):
    """What a launch of one process says (rank 0, a step of one task) is not refused."""
    environment.check_launch(1, 1)
    for k in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "NODE_RANK"):
        no_ranks.setenv(k, "0")
    no_ranks.setenv("SLURM_JOB_ID", "5")
    no_ranks.setenv("SLURM_NTASKS", "1")
    environment.check_launch(1, 1)
    for k, v in {"SLURM_NTASKS": "4", "SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "2",
                 "SLURM_PROCID": "3"}.items():
        no_ranks.setenv(k, v)
    environment.check_launch(2, 2)
    with pytest.raises(UserError, match="trainer.devices=4 x trainer.num_nodes=1"):
        environment.check_launch(4, 1)
    no_ranks.setenv("SLURM_JOB_NAME", "interactive")  # Lightning does not check it either
    environment.check_launch(4, 1)

