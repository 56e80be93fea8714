"""sbatch rendering without a cluster: geometry, quoting, refusals, secrets, restart limits."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from reslab import environment
from reslab.errors import ConfigError, UserError
from reslab.run import stopping
from reslab.slurm.submit import submit, submit_sweep

LOCAL = ["configs/quickstart.yaml", "configs/slurm/local.yaml"]


def dry(*overrides, array=None):
    return submit(LOCAL, list(overrides), dry_run=True, array=array)


def test_the_script_derives_geometry_and_always_requeues(tmp_path):
    out = dry(f"run.root={tmp_path}/runs", "slurm.signal_margin_s=90")
    script = out["script"]
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=1", "#SBATCH --requeue",
                 "#SBATCH --open-mode=append", "#SBATCH --signal=USR1@90",
                 "#SBATCH --partition=debug"):
        assert line in script.splitlines(), line
    srun = [line for line in script.splitlines() if line.startswith("srun ")][0]
    argv = shlex.split(srun)
    assert argv[-4:] == ["train", "--resume", out["run_dirs"][0], "&"]  # waited on, signals forwarded
    assert "trap 'kill -TERM \"$step\"" in script and "trap 'kill -USR1 \"$step\"" in script
    assert not (tmp_path / "runs").exists(), "a dry run writes nothing"


def test_gpu_geometry_sets_one_task_per_gpu(tmp_path):
    script = dry(f"run.root={tmp_path}", "slurm.gpus_per_node=4", "slurm.nodes=3")["script"]
    assert "#SBATCH --ntasks-per-node=4" in script and "#SBATCH --gpus-per-node=4" in script


@pytest.mark.parametrize("overrides,match", [
    (["trainer.num_nodes=3"], "trainer.num_nodes=3 conflicts with the slurm section"),
    (["trainer.devices=4"], "trainer.devices=4 conflicts"),
    # a GPU asked of a job without GPUs was quietly trained on the CPU
    (["trainer.accelerator=gpu"], "trainer.accelerator=gpu but the job asks for no GPU"),
    (["trainer.accelerator=cuda"], r"trainer.accelerator=cuda but .*\(slurm.gpus_per_node=0\)"),
    (["run.name=x$(reboot)"], r"run.name='x\$\(reboot\)' contains"),
    (["run.name=x`id`"], "backtick"),
    (["slurm.partition=gpu$(id)"], "slurm.partition"),
    (["slurm.setup=[\"module load x`id`\"]"], "slurm.setup"),
])
def test_conflicts_and_shell_injection_are_refused(tmp_path, overrides, match):
    with pytest.raises((ConfigError, UserError), match=match):
        dry(f"run.root={tmp_path}", *overrides)


def test_gpu_only_settings_are_checked_against_the_jobs_nodes_not_the_login_node(tmp_path):
    """This machine has no GPU; a GPU job's fp16 is the job's business, a CPU job's is refused
    (Lightning would quietly train it in bf16)."""
    gpu = dry(f"run.root={tmp_path}", "slurm.gpus_per_node=1", "trainer.precision=16-mixed")
    assert "#SBATCH --gpus-per-node=1" in gpu["script"]
    with pytest.raises(UserError, match="16-mixed needs a CUDA GPU"):
        dry(f"run.root={tmp_path}", "trainer.precision=16-mixed")


def test_a_newline_in_a_recipe_value_is_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text('run:\n  name: "x\\nhostname"\n')
    with pytest.raises(ConfigError, match="run.name"):
        submit([*LOCAL, str(bad)], [f"run.root={tmp_path}"], dry_run=True)


def test_paths_with_spaces_are_quoted(tmp_path):
    root = tmp_path / "a b"
    script = dry(f"run.root={root}")["script"]
    srun = [line for line in script.splitlines() if line.startswith("srun ")][0]
    assert str(root) in shlex.split(srun)[-2]
    assert f'#SBATCH --output="{root}' in script


@pytest.mark.parametrize("key,value", [("run.root", "{tmp}/sr\\uns"), ("run.root", "{tmp}/a'b"),
                                       ("run.name", "a'b"), ("run.name", 'a"b'),
                                       ("slurm.extra", "[--comment=a\\b]")])
def test_a_quote_or_backslash_on_an_sbatch_line_is_refused_naming_its_key(tmp_path, key, value):
    """sbatch reads quotes and backslashes on #SBATCH lines itself: `run.root=/x/sr\\uns` lost
    its backslash, so the job's log went nowhere reslab said and the job failed with no log; a
    lone ' passed the dry run and sbatch then refused the job."""
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)} puts .* on an #SBATCH line"):
        dry(f"run.root={tmp_path}", f"{key}={value.format(tmp=tmp_path)}")


def test_no_secret_reaches_the_script(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "canary-3f9a1c")
    assert "canary-3f9a1c" not in dry(f"run.root={tmp_path}")["script"]


def test_arrays_get_one_run_directory_per_task(tmp_path):
    out = dry(f"run.root={tmp_path}", "slurm.nodes=1", array="seed=0,1,2")
    assert len(set(out["run_dirs"])) == 3
    assert "#SBATCH --array=0-2" in out["script"]
    assert '"${RUNS[$SLURM_ARRAY_TASK_ID]}"' in out["script"]
    for key in ("slurm.nodes", "trainer.accelerator"):
        with pytest.raises(UserError, match=f"cannot vary {key}"):
            dry(f"run.root={tmp_path}", array=f"{key}=1,2")
    with pytest.raises(UserError, match="KEY=V1,V2"):
        dry(f"run.root={tmp_path}", array="seed")


def test_a_one_value_array_is_a_plain_job(tmp_path):
    """`--array seed=0` recorded the log as slurm-<job>_%a.out: SLURM runs one task as a plain
    job (it wrote slurm-<job>_4294967294.out), so that file never existed."""
    out = dry(f"run.root={tmp_path}", "slurm.nodes=1", array="seed=7")
    run, = out["run_dirs"]
    assert "--array" not in out["script"] and f"--output={run}/slurm/slurm-%j.out" in out["script"]
    plain = dry(f"run.root={tmp_path}", "slurm.nodes=1", "seed=7")
    assert out["script"].replace(run, "RUN") == plain["script"].replace(plain["run_dirs"][0],
                                                                        "RUN")


@pytest.mark.parametrize("value", ["12;rm -rf ~", "$(id)", "12\n13", "abc"])
def test_a_malformed_job_id_is_refused_before_any_command(monkeypatch, value):
    monkeypatch.setenv("SLURM_JOB_ID", value)
    with pytest.raises(UserError, match="not a job id"):
        environment.job_id()
    with pytest.raises(UserError, match="not a job id"):
        stopping.requeue(value)


def test_max_restarts_ends_the_loop_with_a_sentence(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    assert stopping.preempted_status(max_restarts=2)["status"] == "preempted"
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    out = stopping.preempted_status(max_restarts=2)
    assert out["status"] == "failed" and "slurm.max_restarts=2" in out["error"]


@pytest.mark.slurm  # shellcheck comes with the SLURM test tooling (make slurm-up)
def test_rendered_job_scripts_pass_shellcheck(tmp_path):
    scripts = {"run": dry(f"run.root={tmp_path}")["script"],
               "array": dry(f"run.root={tmp_path}", "slurm.nodes=1", array="seed=0,1")["script"],
               "sweep": submit_sweep("sweeps/degradation_digits.yaml", LOCAL[1:],
                                     [f"run.root={tmp_path}"], dry_run=True)["script"]}
    for name, script in scripts.items():
        out = subprocess.run(["shellcheck", "-s", "bash", "-"], input=script, text=True,
                             capture_output=True)
        assert out.returncode == 0, f"{name}:\n{out.stdout}"


@pytest.mark.parametrize("array,match", [
    ("seed=00,0", "gives seed=0 and seed=00, the same value"),
    ("optim.lr=0.1,0.10", "the same value"),
    ("seed=0,,1", "no value empty"),
    ("seed=", "no value empty"),
    ("seed=" + ",".join(map(str, range(1001))), "1001 values; at most 1000"),
])
def test_array_values_are_each_a_task_of_their_own(tmp_path, array, match):
    with pytest.raises(UserError, match=match):
        dry(f"run.root={tmp_path}", "slurm.nodes=1", array=array)


@pytest.mark.parametrize("line,match", [
    ("--no-requeue", "sets --no-requeue, which reslab decides itself; reslab always sets it"),
    ("--no-req", "sets --no-requeue"),  # sbatch takes a start of an option for it
    ("--out=/tmp/x.out", "sets --output"), ("--parti=debug", "sets --partition"),
    ("--gres=gpu:4", "sets --gres, .* set slurm.gpus_per_node instead"),
    ("--output=/tmp/x.out", "sets --output, .* set run.root instead"),
    ("-o /tmp/x.out", "sets --output"),
    ("-N 3", "sets --nodes, .* set slurm.nodes instead"),
    ("--signal=B:USR1@1", "sets --signal, .* slurm.signal_margin_s"),
    ("--time=1", "sets --time"),
    ("#SBATCH --mail-type=END", "must be one sbatch option"),
    ("mail-type=END", "must be one sbatch option"),
])
def test_extra_lines_cannot_undo_what_reslab_writes(tmp_path, line, match):
    with pytest.raises(ConfigError, match=match):
        dry(f"run.root={tmp_path}", f"slurm.extra=[{line!r}]")


def test_extra_lines_add_other_options(tmp_path):
    extra = ["--mail-type=END", "-x node3", "--time-min=10", "--mem-per-cpu=1G"]
    script = dry(f"run.root={tmp_path}", f"slurm.extra={extra}")["script"]
    assert all(f"#SBATCH {line}" in script for line in extra)


def test_an_extra_value_with_a_space_is_quoted(tmp_path):
    """`--comment=a b` passed the dry run; sbatch then refused the bare `b` as a directive."""
    extra = ["--comment=a b", '--comment="c d"', "--mail-user  x y"]
    script = dry(f"run.root={tmp_path}", f"slurm.extra={extra}")["script"]
    for line in ('--comment="a b"', '--comment="c d"', '--mail-user "x y"'):
        assert f"#SBATCH {line}\n" in script, script


def test_a_percent_in_the_run_s_path_is_not_a_slurm_pattern(tmp_path):
    out = dry(f"run.root={tmp_path}/100%", "run.name=a%jb")
    output, = [line for line in out["script"].splitlines() if line.startswith("#SBATCH --output")]
    assert output == f"#SBATCH --output={out['run_dirs'][0].replace('%', '%%')}/slurm/slurm-%j.out"


@pytest.mark.parametrize("args,match", [
    (["--sweep", "degradation_digits", "--array", "seed=0,1"], "--array and --sweep do not go"),
    (["--array", "seed=0", "--array", "seed=1"], "--array is given 2 times; give it once"),
    (["--sweep", ""], "empty path"),
])
def test_submit_options_that_cannot_all_hold_are_refused(tmp_path, cli, args, match):
    r = cli("submit", *LOCAL, f"run.root={tmp_path}", "--dry-run", *args)
    assert r.returncode == 2 and re.search(match, r.stderr), r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and list(tmp_path.iterdir()) == []


def test_a_sweep_is_not_submitted_over_one_that_ran(tmp_path, cli):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: s\nbase:\n  recipes: [{LOCAL[0]}]\n  overrides: "
                    f"['run.root={tmp_path}/runs']\nspace:\n  model.depth: [8]\n")
    (tmp_path / "runs/s").mkdir(parents=True)
    (tmp_path / "runs/s/sweep.csv").write_text("trial,status\n")
    r = cli("submit", LOCAL[1], "--sweep", spec, "--dry-run")
    assert r.returncode == 2 and "already holds a sweep" in r.stderr and "--resume" in r.stderr
