"""The one rule for what a command writes outside training (`export --out`, `compare --out`):
never into a run's or a sweep's records, never over a device, a FIFO or a folder, over an
existing file or into a non-empty folder only with --force."""

from __future__ import annotations

from pathlib import Path

from reslab.errors import UserError
from reslab.fileio import check_new_file, check_new_folder
from reslab.tracking.rundir import check_writable, holds_records, resolved


def output_path(path: str | Path, option: str, *, folder: bool, force: bool, area: str,
                owner: Path | None = None) -> Path:
    """Where a command writes outside training (`export --out`, `compare --out`): resolved, and
    refused in a run's or a sweep's records (anywhere in one but the command's own `area`
    folder, of the `owner` run where one is given: one run's export is not written into
    another's), over a device, a FIFO or a folder, and over an existing file or into a
    non-empty folder without --force. The one rule for every such output."""
    p = resolved_output(path, option, folder)
    for parent in (p, *p.parents):
        if holds_records(parent):  # the innermost one: a sweep's trial is a run directory
            inside = p.relative_to(parent).parts
            if not inside or inside[0] != area or owner not in (None, parent):
                mine = f"its own run's {area} folder" if owner else f"its {area} folder"
                raise UserError(f"{option} {p} is inside the records of {parent}; write "
                                f"elsewhere or into {mine}")
            break
    (check_new_folder if folder else check_new_file)(p, option, force)
    check_writable(p.parent, option)
    return p


def resolved_output(path: str | Path, option: str, folder: bool) -> Path:
    """`path` resolved (rundir.resolved); `-`, which names standard output to most tools, is
    refused rather than written as a file named '-'."""
    if str(path) == "-":
        raise UserError(f"{option} - would be a {'folder' if folder else 'file'} named '-' "
                        f"(this command writes files, not standard output); give a path")
    return resolved(path, option)
