"""Writing files so that nothing is half-done: the one atomic write (a temporary file in the same
directory, fsync, rename over the target, fsync the directory: a crash mid-write leaves the
previous file intact, never a torn one), and the checks and clean-up of a command's outputs
outside run directories (what may be replaced, folders created only for as long as the write
succeeds)."""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from reslab.errors import UserError


def write_atomic(path: str | Path, data: str | bytes | Callable[[IO[bytes]], None]) -> None:
    """Write `data` (text, bytes, or a function that writes into a binary file) to `path`; a
    failed write (a full disk) names `path`."""
    with naming(path), replacing(Path(path)) as (tmp,), open(tmp, "wb") as f:
        if callable(data):
            data(f)
        else:
            f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())


@contextlib.contextmanager
def naming(path: str | Path) -> Iterator[None]:
    """An OSError in the block that names no file (a write or flush on a full disk) names
    `path`, so its one sentence says which file could not be written."""
    try:
        yield
    except OSError as e:
        if e.filename is not None:
            raise
        raise OSError(e.errno, e.strerror, str(path)) from None


@contextlib.contextmanager
def replacing(*paths: Path) -> Iterator[list[Path]]:
    """Temporary files beside `paths` for the block to write; when it succeeds each renames over
    its path (atomically; the folders are fsynced), when it fails they are removed."""
    tmps = [p.with_name(f".{p.name}.tmp-{os.getpid()}") for p in paths]
    try:
        yield tmps
        for tmp, path in zip(tmps, paths):
            os.replace(tmp, path)
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
    for folder in {p.parent for p in paths}:
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_csv(path: str | Path, columns: list[str], rows: list[dict]) -> None:
    """A header and one line per row, written atomically."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, columns)
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, text.getvalue())


def read_regular(path: str | Path) -> bytes:
    """The bytes of a regular file. Anything else is refused (OSError) without waiting on it: a
    FIFO opened for reading waits for a writer, /dev/zero never ends."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a folder, FIFO, device or socket)")
        with open(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


def check_new_file(path: Path, option: str, force: bool) -> None:
    """`path` may become a regular file: nothing is there, or (with --force) a regular file is.
    A folder, a device, a FIFO or a socket is never replaced: `--out /dev/null` made root's
    /dev/null a regular file."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir():
        raise UserError(f"{option} {path} is a folder where the file would go; give a file name "
                        "or another folder")
    if not path.is_file():
        raise UserError(f"{option} {path} is a device, FIFO or socket, not a regular file; give "
                        "a new file name")
    if not force:
        raise UserError(f"{option} {path} exists; pass --force to replace it, or give a new name")


def check_new_folder(path: Path, option: str, force: bool) -> None:
    """`path` may receive a command's files: nothing is there, an empty folder, or (with --force)
    a folder with files in it."""
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir():
        raise UserError(f"{option} {path} is a file, not a folder; give a folder for the outputs")
    if not force and any(path.iterdir()):
        raise UserError(f"{option} {path} is a folder that is not empty; pass --force to write "
                        "into it (files of the same name are replaced), or give another")


@contextlib.contextmanager
def writing_to(folder: Path, option: str) -> Iterator[None]:
    """Create `folder` (and its missing parents) for the writes in the block. If the block
    fails, the folders it created are removed again, so a failed command leaves nothing; an
    OSError (a read-only place, /proc, a full disk) becomes one sentence naming the folder."""
    created = [p for p in [folder, *folder.parents] if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        yield
    except OSError as e:
        remove_folders(created)
        raise UserError(f"{option} {folder}: cannot write there ({e.strerror or e})") from None
    except BaseException:
        remove_folders(created)
        raise


def remove_folders(created: list[Path]) -> None:
    """The folders a failed write created, deepest first, while they are empty (the write's own
    temporary files are gone by then; anything else is someone else's)."""
    for p in created:
        try:
            p.rmdir()
        except OSError:
            break


@contextlib.contextmanager
def staged_folder(folder: Path) -> Iterator[Path]:
    """A temporary folder beside `folder` for the block to write files into; when it succeeds
    each file moves into `folder` (an atomic rename each, over a namesake), when it fails the
    temporary folder is removed. `folder` must exist (writing_to)."""
    stage = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    stage.mkdir()
    try:
        yield stage
        for f in sorted(stage.iterdir()):
            os.replace(f, folder / f.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
