"""Helpers the tests share: the CLI in a fresh process (only where the process boundary is what
is tested), tiny settings, bounded polling, the run directory a test produced."""

from __future__ import annotations

import contextlib
import io
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from reslab import cli as reslab_cli

ROOT = Path(__file__).resolve().parents[1]
RESLAB = [sys.executable, "-m", "reslab"]


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def run_main(*args) -> Result:
    """`reslab.cli.main` in this process, with its exit status and what it printed."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = reslab_cli.main([str(a) for a in args])
        except SystemExit as e:  # argparse usage errors
            code = e.code if isinstance(e.code, int) else 1
    return Result(code, out.getvalue(), err.getvalue())


def reslab(*args: str, cwd: Path | None = None, timeout: float = 300, env: dict | None = None
           ) -> subprocess.CompletedProcess:
    """Run the real `reslab` command in a fresh process."""
    return subprocess.run([*RESLAB, *map(str, args)], cwd=cwd or ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


# Small, fast settings for end-to-end runs on the embedded digits.
TINY = ["model.name=cifar_resnet", "model.depth=8", "trainer.accelerator=cpu",
        "data.batch_size=256", "trainer.log_every_n_steps=1"]


def run_dir(root: Path) -> Path:
    """The one run directory under `root`."""
    dirs = [p.parent for p in Path(root).rglob("config.yaml")]
    assert len(dirs) == 1, dirs
    return dirs[0]


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    """Poll `predicate` until it returns something truthy, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def assert_resumes_mid_epoch(make_loader, epoch: int, skip: int) -> list:
    """A loader restored from another's state after `skip` batches of `epoch` yields exactly the
    remaining batches of an uninterrupted pass; returns that pass."""
    full = make_loader()
    full.set_epoch(epoch)
    expected = [tuple(t.clone() for t in batch) for batch in full]
    first = make_loader()
    first.set_epoch(epoch)
    stream = iter(first)
    for _ in range(skip):
        next(stream)
    resumed = make_loader()
    resumed.load_state_dict(first.state_dict())
    rest = list(resumed)
    assert len(rest) == len(expected) - skip
    for got, want in zip(rest, expected[skip:]):
        assert all(torch.equal(a, b) for a, b in zip(got, want))
    return expected


@contextlib.contextmanager
def file_size_limit(limit: int):
    """The kernel's own refusal to write past `limit` bytes (ulimit -f: EFBIG, as a full disk
    refuses with ENOSPC; Python ignores the SIGXFSZ that comes with it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def default_sigint() -> None:
    """A Popen preexec_fn. A job started in the background by a non-interactive shell (CI,
    `make test &`) ignores Ctrl-C, and so would the command under test: give it the default,
    as a terminal's foreground job has (a sweep driver then ran to its end, exit 0)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
