"""Read W&B's offline transaction log (`run-<id>.wandb`) back: a LevelDB-style log of
protobuf `Record`s after a 7-byte ':W&B' header. Used to check what reslab sent to W&B."""

from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK, HEADER = 32768, 7


def records(path: Path):
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, parts = HEADER, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        chunk, pos = data[pos + HEADER:pos + HEADER + length], pos + HEADER + length
        if kind == 0:
            pos += left - HEADER - length
            continue
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(parts)
            yield rec


def run_info(path: Path) -> dict:
    """id, group, job_type, display name and config of the run in a .wandb file."""
    info: dict = {"config": {}}
    for rec in records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            info.update(id=r.run_id, group=r.run_group, job_type=r.job_type, name=r.display_name)
            info["config"].update({i.key: json.loads(i.value_json) for i in r.config.update})
        elif kind == "config":
            info["config"].update({i.key: json.loads(i.value_json) for i in rec.config.update})
    return info
