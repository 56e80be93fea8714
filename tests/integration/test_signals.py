"""Ctrl-C and SIGTERM on a real `reslab train` process: the run stops at a step boundary with
last.ckpt written, exits 130 / 143 with the sentence that says how to resume, records status
`interrupted`, and the resumed run ends bit for bit where an uninterrupted one does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from support import ROOT, TINY, default_sigint, run_dir, wait_for

pytestmark = pytest.mark.integration

COMMON = [*TINY, "optim.schedule=constant", "logger.wandb.mode=disabled", "run.test=false",
          "trainer.max_epochs=40"]


def train_process(*args: str, root) -> subprocess.Popen:
    # Every side in a fresh process: a run's float results depend on the process's settings
    # (threads), so an in-process reference would not be bit-comparable.
    return subprocess.Popen([sys.executable, "-m", "reslab", "train", *args, f"run.root={root}"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    proc = train_process(*COMMON, root=root)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()[-2000:]
    return torch.load(run_dir(root) / "checkpoints/last.ckpt", weights_only=True)


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_at_a_step_boundary_and_the_resume_is_exact(reference, tmp_path, signum,
                                                                   code):
    proc = train_process(*COMMON, root=tmp_path)
    last = wait_for(lambda: next(tmp_path.rglob("last.ckpt"), None), 120, "the first last.ckpt",
                    interval=0.02)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    run = last.parent.parent
    assert proc.returncode == code, err[-2000:]
    sentence = err.strip().splitlines()[-1]
    assert "interrupted at step" in sentence and f"reslab train --resume {run}" in sentence
    step = int(sentence.split("interrupted at step ")[1].split(";")[0])
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["global_step"] == step
    assert torch.load(last, weights_only=True)["global_step"] == step
    assert 0 < step < reference["global_step"]

    resumed = subprocess.run([sys.executable, "-m", "reslab", "train", "--resume", str(run)],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    state = torch.load(last, weights_only=True)
    assert state["global_step"] == reference["global_step"]
    for k, v in reference["state_dict"].items():
        assert torch.equal(v, state["state_dict"][k]), k


def handles(pid: int, signum: int) -> bool:
    """The process has installed a handler for `signum` (its SigCgt mask in /proc)."""
    status = open(f"/proc/{pid}/status").read()
    caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt")), 16)
    return bool(caught >> (signum - 1) & 1)


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.mark.parametrize("cpu_s", [0, 12], ids=["at-start", "in-lightning-fit"])
@pytest.mark.parametrize("signum,code,word", [(signal.SIGINT, 130, "interrupted"),
                                              (signal.SIGTERM, 143, "terminated")])
def test_a_signal_ends_any_other_command_with_its_exit_code(signum, code, word, cpu_s):
    """Outside training (here a long `reslab bench`, whose first loop is reslab's Lightning path),
    SIGTERM unwinds as Ctrl-C does: 143, not death by the signal (-15) nor Lightning's exit 1,
    with one line that says so. Sent once reslab handles it, or after `cpu_s` of CPU time."""
    proc = subprocess.Popen([sys.executable, "-m", "reslab", "bench", "configs/bench/cifar_cpu.yaml",
                             "model.depth=8", "trainer.compile=false", "--steps", "100000",
                             "--rounds", "1", "--no-pipelines"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint)
    try:
        wait_for(lambda: proc.poll() is not None or (
            handles(proc.pid, signal.SIGTERM) and cpu_seconds(proc.pid) >= cpu_s), 300,
            f"reslab's SIGTERM handler and {cpu_s} s of CPU")
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()  # never left running when the test fails
    assert proc.returncode == code, err[-2000:]
    assert err.strip().splitlines()[-1] == f"reslab bench: {word}"
