"""A sweep's trials rebuilt from its spec and its trial directories, never from Ray Tune's state:
which trials a resume runs, random samples drawn once and recovered from the trials' config.yaml,
what marks a sweep as started. In this process, without Ray."""

from __future__ import annotations

import json
import math
import pickle
import random

import pytest
import yaml

from reslab.config.load import derive
from reslab.errors import TrainingError, UserError
from reslab.sweep import spec as S
from reslab.sweep import trials as T
from reslab.sweep import tune, worker
from reslab.tracking import records
from reslab.tracking.records import open_run, write_summary
from support import ROOT

GRID = "space:\n  model.depth: [8, 14]\n  model.shortcut: [none, A]\n"
RANDOM = """space:
  model.depth: [8, 14]
  optim.lr: {loguniform: [0.01, 0.5]}
  optim.weight_decay: {uniform: [0.0, 0.001]}
search: random
num_samples: 3
"""


def load(tmp_path, body: str, overrides: tuple[str, ...] = ()):
    path = tmp_path / "spec.yaml"
    path.write_text(f"name: s\nbase:\n  recipes: [{ROOT}/configs/quickstart.yaml]\n"
                    f"  overrides: {[f'run.root={tmp_path}/runs', *overrides]}\n" + body)
    spec = S.load_spec(path)
    return spec, S.sweep_dir(spec)


def make_trial(spec, point: dict, status: str | None = None):
    run = open_run(spec.trial_cfg(point), S.sweep_dir(spec).trial(S.trial_name(point)))
    if status:
        write_summary(run, {"status": status})
    return run


def names(points: list[dict]) -> list[str]:
    return [S.trial_name(p) for p in points]


def test_a_grid_sweep_is_every_point_and_a_resume_runs_all_but_the_completed(tmp_path):
    spec, out = load(tmp_path, GRID)
    points = T.all_trials(spec, out)
    assert names(points) == names(S.grid_points(spec))
    assert not T.started(out) and not any(T.completed(out, p) for p in points)
    make_trial(spec, points[0], "completed")
    make_trial(spec, points[1], "running")
    make_trial(spec, points[2], "failed")
    (out.tune).mkdir()
    (out.tune / "tuner.pkl").write_bytes(pickle.dumps({"never": "read"}))
    again = T.all_trials(spec, out)
    assert T.started(out) and again == points
    assert [p for p in again if not T.completed(out, p)] == points[1:]


@pytest.mark.parametrize("mark", ["tune", "sweep.csv", "trial"])
def test_tune_s_folder_sweep_csv_or_a_trial_directory_mark_a_started_sweep(tmp_path, mark):
    spec, out = load(tmp_path, GRID)
    out.path.mkdir(parents=True)
    (out.path / "notes").mkdir()  # a folder that is not a trial directory marks nothing
    assert not T.started(out)
    if mark == "trial":
        make_trial(spec, T.all_trials(spec, out)[0])
    else:
        (out.path / mark).write_text("x")
    assert T.started(out)


def test_random_samples_are_drawn_once_and_recovered_from_the_trial_directories(tmp_path):
    spec, out = load(tmp_path, RANDOM)
    first = T.all_trials(spec, out)
    assert len(first) == 6 and len(set(names(first))) == 6
    assert [p["_sample"] for p in first] == [0, 1, 2] * 2
    assert all(0.01 <= p["optim.lr"] <= 0.5 and 0 <= p["optim.weight_decay"] <= 0.001
               for p in first)
    assert T.all_trials(spec, out) == first, "the draws are seeded"
    assert "sample=1" in names(first)[1] and names(first)[1].startswith("depth=8,lr=")

    # Sample 1 of depth 8 ran with values drawn elsewhere (Ray Tune, before): they are kept.
    ran = {**first[1], "optim.lr": 0.123456789, "optim.weight_decay": 0.000321}
    make_trial(spec, ran, "running")
    # A directory with values the space cannot draw (here lr outside it) is not a sample.
    bad = {**first[4], "optim.lr": 5.0}
    (out.path / S.trial_name(bad)).mkdir()
    (out.path / S.trial_name(bad) / "config.yaml").write_text(yaml.safe_dump(
        {"model": {"depth": 14}, "optim": {"lr": 5.0, "weight_decay": bad["optim.weight_decay"]},
         "seed": 0}))
    # Neither is an unreadable config.yaml.
    (out.path / "junk").mkdir()
    (out.path / "junk" / "config.yaml").write_text("[unclosed")
    again = T.all_trials(spec, out)
    assert again[1] == ran and S.trial_name(again[1]) == S.trial_name(ran)
    assert [p for i, p in enumerate(again) if i != 1] == [p for i, p in enumerate(first) if i != 1]


def test_draws_stay_inside_their_distributions_and_recorded_values_are_checked():
    rng = random.Random(0)
    draws = {kind: [T.draw({kind: args}, rng) for _ in range(500)] for kind, args in
             [("choice", ["a", 2]), ("uniform", [-1, 1]), ("loguniform", [1e-4, 1e-1]),
              ("randint", [3, 6])]}
    assert set(draws["choice"]) == {"a", 2}
    assert all(-1 <= v <= 1 for v in draws["uniform"])
    logs = [math.log10(v) for v in draws["loguniform"]]
    assert min(logs) >= -4 and max(logs) <= -1 and min(logs) < -3.5 and max(logs) > -1.5
    assert set(draws["randint"]) == {3, 4, 5}, "randint excludes hi, as in Ray Tune"
    check = T.recorded_value
    assert check({"choice": [1, "a"]}, 1.0) == (True, 1)
    assert check({"choice": [1, "a"]}, True)[0] is False
    assert check({"choice": [1, "a"]}, "1")[0] is False
    assert check({"randint": [3, 6]}, 5.0) == (True, 5)
    assert check({"randint": [3, 6]}, 6)[0] is False
    assert check({"uniform": [0, 1]}, float("nan"))[0] is False
    assert check({"uniform": [0, 1]}, "${oc.env:HOME}")[0] is False
    assert check({"loguniform": [0.01, 0.5]}, 0.2) == (True, 0.2)


def test_a_trial_that_failed_by_its_own_numerics_is_not_retried(tmp_path):
    """Ray's retry (or `--resume`) of a NaN trial would fail the same way and, finding no
    checkpoint, would overwrite why it failed with a resume refusal: it re-raises the record."""
    spec, _ = load(tmp_path, GRID)
    point = {"model.depth": 8, "model.shortcut": "none"}
    run = make_trial(spec, point)
    nan = "TrainingError: the training loss became NaN or Inf at step 1; stopped before saving"
    write_summary(run, {"status": "failed", "error": nan})
    before = run.summary.read_bytes()
    with pytest.raises(TrainingError, match="NaN or Inf at step 1.*not retried"):
        worker.run_trial({"point": point}, spec)
    assert run.summary.read_bytes() == before
    assert worker.failed_by_itself(run, spec.trial_cfg(point))
    # Another kind of failure, or the same trial with a changed config, is retried.
    assert not worker.failed_by_itself(run, derive(spec.trial_cfg(point), {"optim.lr": 0.01}))
    write_summary(run, {"status": "failed", "error": "OSError: [Errno 28] No space left"})
    assert not worker.failed_by_itself(run, spec.trial_cfg(point))


def test_a_trial_s_record_says_completed_once_and_is_final_then(tmp_path, monkeypatch):
    """A resumed sweep skips a trial whose summary.json says `completed`. The trial's timing
    used to be written after train.fit's completed record (W&B finishing in between), so a
    finished trial's record changed after it read as finished: the flaky resume test. Now the
    one completed write holds the timing, and nothing writes after it."""
    spec, out = load(tmp_path, "space:\n  model.depth: [8]\n",
                     ("trainer.max_epochs=1", "data.batch_size=256", "run.test=false"))
    point, = S.grid_points(spec)
    writes, write = [], records.write_summary
    monkeypatch.setattr(records, "write_summary",
                        lambda run, summary: (writes.append(dict(summary)), write(run, summary)))
    worker.run_trial({"point": point}, spec)
    statuses = [w.get("status") for w in writes]
    assert statuses.count("completed") == 1 and statuses[-1] == "completed", statuses
    final = json.loads(out.trial(S.trial_name(point)).summary.read_text())
    assert final["status"] == "completed" and final["trial_s"] > 0
    began, ended = final["trial_window"]
    assert began < ended and final["trial_s"] <= ended - began + 0.01


@pytest.mark.parametrize("kind", ["link", "file"])
def test_a_trial_folder_that_is_a_link_or_a_file_is_refused_before_ray(tmp_path, monkeypatch,
                                                                       kind):
    """A crafted sweep directory whose trial folder links to another run: the sweep would read
    that run's records as the trial's and train into them. Refused, nothing changed."""
    def no_ray(*_):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(tune, "start_ray", no_ray)
    spec, out = load(tmp_path, GRID)
    first, second = T.all_trials(spec, out)[:2]
    make_trial(spec, first, "running")
    elsewhere = open_run(derive(spec.trial_cfg(second), {"run.root": str(tmp_path / "other")}))
    write_summary(elsewhere, {"status": "running"})
    place = out.trial(S.trial_name(second)).path
    if kind == "link":
        place.symlink_to(elsewhere.path, target_is_directory=True)
    else:
        place.write_text("not a folder")
    files = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(UserError, match=f"sweep trial .*{S.trial_name(second)} is "
                                        f"{'a symbolic link' if kind == 'link' else 'not a dir'}"):
        tune.run(spec, resume=True, cpus=2)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == files
