"""`reslab train` as a terminal shows it: the real command in a fresh process on a pseudo-terminal
of 80, 100 and 160 columns (the terminal is what is tested, so not in-process). What the screen
holds at the end is rebuilt from the bytes (a carriage return redraws its line).

`python tests/test_terminal.py 80 [ARGS...]` prints that screen for a run of the quickstart
(docs/img/terminal-80.txt is one)."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import sys
import termios
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from support import RESLAB, TINY  # noqa: E402

TIMEOUT_S = 300


def run_on_terminal(columns: int, args: list[str], cwd: Path) -> tuple[int, bytes]:
    """`reslab ARGS` on a fresh pty `columns` wide (no COLUMNS variable: the size is the pty's);
    its exit status and every byte it wrote."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the pty is its stdin, stdout and stderr
        try:
            os.chdir(cwd)
            env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
            os.execve(RESLAB[0], [*RESLAB, *args], {**env, "TERM": "xterm"})
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    return read_until_exit(pid, fd)


def read_until_exit(pid: int, fd: int) -> tuple[int, bytes]:
    out = bytearray()
    try:
        while select.select([fd], [], [], TIMEOUT_S)[0]:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the pty (EIO on Linux)
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(fd)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), bytes(out)


def screen(raw: bytes) -> list[str]:
    """The lines a terminal shows after `raw`: each line as its last redraw left it."""
    lines = []
    for line in raw.decode().replace("\r\n", "\n").split("\n"):
        shown = ""
        for draw in line.split("\r"):
            shown = draw + shown[len(draw):]
        lines.append(shown.rstrip())
    return [line for line in lines if line]


def drawn(raw: bytes) -> list[str]:
    """Every line and every redraw of the bar, as each was written."""
    return [d.rstrip() for d in raw.decode().replace("\r\n", "\n").replace("\r", "\n").split("\n")
            if d.strip()]


@pytest.mark.parametrize("columns", [80, 100, 160])
def test_a_run_reads_well_on_a_terminal(columns, tmp_path):
    """No line or redraw reaches the last column (a full line wraps on many terminals); the
    whole bar, the ETA and val/err are on every redraw; each epoch has its line, with val/err;
    the summary follows."""
    code, raw = run_on_terminal(columns, ["train", *TINY, "trainer.max_epochs=2",
                                          "logger.wandb.mode=disabled", "run.root=runs"], tmp_path)
    assert code == 0, raw.decode()[-2000:]
    writes = [w for w in drawn(raw) if not w.startswith("run directory: ")]  # a path: any length
    assert all(len(w) < columns for w in writes), [w for w in writes if len(w) >= columns]
    bars = [w for w in writes if "%" in w and "ETA" in w]
    assert bars and all(w.count("|") == 2 and "val/err=" in w for w in bars)
    assert all(len(w.split("|")[1]) >= 16 for w in bars)
    shown = screen(raw)
    epoch_lines = [line for line in shown if " step " in line and "|" not in line]
    assert [line.split()[:4] for line in epoch_lines] == [["epoch", "1/2", "step", "5"],
                                                          ["epoch", "2/2", "step", "10"]]
    assert all("val/err=" in line and "train/loss=" in line for line in epoch_lines)
    final_bar = shown[shown.index(epoch_lines[-1]) + 1]
    assert final_bar.startswith("epoch 2/2 100% |") and final_bar.endswith(
        epoch_lines[-1].split("val/err=")[1][:6]) and "loss_step=" in final_bar
    summary = shown[shown.index(final_bar) + 1:]
    assert [line.split()[0] for line in summary[:2]] == ["status", "epoch"]
    assert any(line.split() == ["global_step", "10"] for line in summary)


if __name__ == "__main__":
    code, raw = run_on_terminal(int(sys.argv[1]), ["train", *sys.argv[2:]], Path.cwd())
    print("\n".join(screen(raw)))
    sys.exit(code)
