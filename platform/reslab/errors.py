"""Errors that are the user's to fix: the CLI prints the message (one sentence) and exits 2.
The machine's own faults (a full disk, a read-only or failing file system) are one sentence and
exit 1: `machine_fault`."""

import contextlib
import errno
import signal
import sys
import threading
import warnings


class UserError(Exception):
    """Bad input: a sentence naming the offending value and what is allowed. Printed on one line
    with control characters escaped: a NUL, newline or escape sequence in a value the user gave
    (a path, a name) never reaches the terminal raw."""

    def __str__(self) -> str:  # KeyError subclasses would repr() the message
        return escaped(str(self.args[0])) if self.args else ""


def escaped(text: str, limit: int | None = None) -> str:
    """`text` with each non-printable character as its Python escape (`\\x00`, `\\n`); at most
    `limit` characters of it, the rest cut to `…` (a damaged file's 100 000-character value)."""
    text = text if limit is None or len(text) <= limit else text[:limit - 1] + "…"
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def reason(e: BaseException) -> str:
    """An exception's first line (at most 160 characters), or its type's name: for a sentence."""
    text = str(e).strip()
    return text.splitlines()[0][:160] if text else type(e).__name__


# What the machine, not reslab's code, does wrong while a command writes: no space or quota
# left, a file-size limit (ulimit -f), a file system that turned read-only or unreadable,
# permissions changed under a run.
MACHINE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO, errno.EACCES,
                  errno.EPERM}


def machine_fault(e: BaseException) -> str | None:
    """One sentence for an OSError the machine caused (MACHINE_ERRNOS), else None: any other
    error is a bug, whose traceback is kept."""
    if not isinstance(e, OSError) or e.errno not in MACHINE_ERRNOS:
        return None
    what = e.strerror or reason(e)
    return escaped(f"{e.filename}: {what}" if e.filename else what)


class ConfigError(UserError, ValueError):
    """A bad config value: one sentence naming the key, the value and what is allowed."""


class DataError(UserError):
    """A dataset that is missing or malformed on disk."""


class Warned(UserWarning):
    """reslab's own warning (W&B unreachable: the run goes on): the CLI prints it as one line,
    `reslab COMMAND: warning: ...`, not with the source line that raised it."""


class TrainingError(Exception):
    """Training stopped for a reason the run itself caused (a NaN loss): a sentence, exit 1."""


class Interrupted(Exception):
    """A signal stopped the run at a step boundary with its last state saved: exit 128 + signal
    (130 for Ctrl-C, 143 for SIGTERM), with the sentence that says how to resume."""

    def __init__(self, signum: int, step: int, run: str):
        super().__init__(f"interrupted at step {step}; resume with `reslab train --resume {run}`")
        self.exit_code = 128 + signum


class Terminated(KeyboardInterrupt):
    """SIGTERM where no training loop handles it (test, export, compare, a sweep's driver): it
    unwinds like Ctrl-C, which no `except Exception` swallows, and the command exits 143."""


@contextlib.contextmanager
def sigterm_unwinds(received: list[int]):
    """SIGTERM (`kill`, `timeout`, a container stop) unwinds the command as Ctrl-C does: its
    writes are atomic and its lock goes with the process, so nothing is left half-written; exit
    143. Each SIGTERM is appended to `received`. Training installs its own handlers over this
    one (stop at a step boundary, save)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        received.append(signum)
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def one_line_warnings(prog: str):
    """reslab's own warnings (errors.Warned) as one line, `PROG: warning: ...`, without the
    source line that raised them (which read like a crash); other libraries' as Python shows
    them."""
    shown = warnings.showwarning

    def show(message, category, *args, **kwargs):
        if issubclass(category, Warned):
            print(f"{prog}: warning: {message}", file=sys.stderr)
        else:
            shown(message, category, *args, **kwargs)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


@contextlib.contextmanager
def signals_held():
    """Ctrl-C and SIGTERM wait for the block to end, then act as they would have (the first one
    is raised again, to the handlers in place before). Blocking the signals instead did not hold
    them: another thread of the process took them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    got: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = [signal.signal(s, lambda signum, frame: got.append(signum)) for s in held]
    try:
        yield
    finally:
        for s, handler in zip(held, previous):
            signal.signal(s, handler)
    for s in got[:1]:
        signal.raise_signal(s)
