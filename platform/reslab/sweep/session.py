"""The sweep driver's Ray: a private local instance, or the cluster at --address (checked to
answer first), started and run with the driver's own signal handlers kept (Ctrl-C and SIGTERM
unwind the driver, cli.py): Ray's core and Tune install theirs over them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import tempfile
import threading
from pathlib import Path

from reslab.compat import ray_local_init_args
from reslab.errors import UserError, reason


def start_ray(address: str | None, cpus: int | None) -> Path | None:
    """A private local Ray (own temp dir, localhost only, never someone else's instance), or the
    cluster at `address`. Returns the private instance's temp dir."""
    import logging

    import ray

    logging.getLogger("ray").setLevel(logging.ERROR)  # Ray's start-up notices; errors still show
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    with driver_signals():  # Ray's core installs a crash handler over SIGTERM's
        if address:
            ray.init(address=address, log_to_driver=False)
            return None
        tmp = Path(tempfile.gettempdir()) / f"reslab-ray-{os.getuid()}-{os.getpid()}"
        ray.init(address="local", num_cpus=cpus or os.cpu_count(), include_dashboard=False,
                 log_to_driver=False, configure_logging=False, **ray_local_init_args(tmp))
        return tmp


# An HTTP/2 client's preface and an empty SETTINGS frame: a gRPC server (Ray's GCS) answers
# with its own SETTINGS frame (frame type 4, the fourth byte).
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """A gRPC server (what Ray's GCS is) answers at HOST:PORT: else ray.init retries for
    minutes, deaf to Ctrl-C, at a port that refuses or at one that is some other service."""
    host, _, port = address.rpartition(":")
    try:
        s = socket.create_connection((host, int(port)), timeout=timeout)
    except OSError as e:
        raise UserError(f"no Ray cluster answers at --address {address} ({reason(e)}); start "
                        "one there (`ray start --head`), or leave --address out for a private "
                        "Ray on this machine") from None
    try:
        with s:
            s.sendall(HTTP2_PREFACE)
            answer = s.recv(9)
    except OSError:  # reset, or silent until the timeout
        answer = b""
    if len(answer) < 4 or answer[3] != 4:
        raise UserError(f"--address {address} answers, but not as a Ray cluster (no gRPC "
                        "server there); give the address `ray start --head` printed (its GCS, "
                        "port 6379 by default)")


@contextlib.contextmanager
def driver_signals():
    """The driver's signal handlers (Ctrl-C and SIGTERM unwind it, cli.py) put back after the
    block, whatever Ray installed meanwhile."""
    handlers = signal_handlers()
    try:
        yield
    finally:
        put_back(handlers)


def signal_handlers() -> dict:
    """SIGINT's, SIGTERM's and SIGUSR1's handlers ({} outside the main thread: none are set)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)}


def put_back(handlers: dict) -> None:
    for signum, handler in handlers.items():
        if handler is not None:  # None: a handler not set from Python, which cannot be put back
            signal.signal(signum, handler)


def DriverSignals():  # noqa: N802 - see TuneReport
    from ray.tune import Callback

    class _DriverSignals(Callback):
        """Tuner.fit installs its own handlers on SIGINT and SIGUSR1 (they end the running trials
        as a scheduler's stop would, and fit returns as if the sweep were done); set up after
        them, this puts back the driver's, as they were when it was made."""

        def __init__(self):
            self.handlers = signal_handlers()

        def setup(self, **info):
            put_back(self.handlers)

    return _DriverSignals()
