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


def offline_runs(run_dir: Path) -> list[Path]:
    """The .wandb files of a run directory, oldest first (one per attempt / `reslab test`)."""
    return sorted(Path(run_dir).glob("wandb/offline-run-*/run-*.wandb"))


def _apply(target: dict, item, value) -> None:
    path = [item.key] if item.key else list(item.nested_key)
    for k in path[:-1]:
        target = target.setdefault(k, {})
    target[path[-1]] = value


def replay(paths: list[Path]) -> dict:
    """What W&B holds after `wandb sync` of these files (in order): the run's identity, config,
    final summary, history rows, metric definitions and artifact records."""
    out: dict = {"config": {}, "summary": {}, "history": [], "metrics": [], "artifacts": [],
                 "tags": [], "project": None}
    for path in paths:
        for rec in records(path):
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                r = rec.run
                out.update(id=r.run_id, group=out.get("group") or r.run_group,
                           job_type=out.get("job_type") or r.job_type,
                           name=out.get("name") or r.display_name, project=r.project,
                           tags=out["tags"] or list(r.tags))
                out["config"].update({i.key: json.loads(i.value_json) for i in r.config.update})
            elif kind == "config":
                out["config"].update({i.key: json.loads(i.value_json) for i in rec.config.update})
            elif kind == "summary":
                for i in rec.summary.update:
                    _apply(out["summary"], i, json.loads(i.value_json))
            elif kind == "history":
                row: dict = {}
                for i in rec.history.item:
                    _apply(row, i, json.loads(i.value_json))
                out["history"].append(row)
            elif kind == "metric":
                out["metrics"].append(rec.metric)
            elif kind == "artifact":
                out["artifacts"].append(rec.artifact)
    return out


class FakeRun:
    """Exactly the public-API run surface `reslab compare --wandb` reads, from offline files."""

    def __init__(self, state: dict):
        self.id, self.name, self.group = state["id"], state["name"], state["group"]
        self.config = {k: {"value": v, "desc": None} for k, v in state["config"].items()}
        self.summary_metrics = state["summary"]
        self._history = state["history"]

    def scan_history(self, page_size: int = 1000):
        assert page_size > 0
        return iter(self._history)


class FakeApi:
    """`wandb.Api(timeout=...)` with `runs(path, filters=...)` over offline run directories."""

    projects: dict = {}  # "entity/project" -> list of run directories

    def __init__(self, *, timeout: int):
        assert timeout > 0
        self.calls: list = []

    def runs(self, path: str, filters: dict | None = None):
        if path not in self.projects:
            raise ValueError(f"Could not find project {path}")
        found = [FakeRun(replay(offline_runs(d))) for d in self.projects[path]]
        group = (filters or {}).get("group")
        return [r for r in found if group is None or r.group == group]
