"""The sweep's timing: wall time against Σ trial time ÷ the trials that fit at once."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from reslab.sweep import results, tune
from reslab.tracking.records import write_summary
from reslab.tracking.rundir import SweepDir


def _trials(tmp_path, walls: dict[str, float], trial_s: dict[str, float] | None = None,
            windows: dict[str, list] | None = None) -> SweepDir:
    out = SweepDir(tmp_path / "sweep")
    for name, wall in walls.items():
        out.trial(name).path.mkdir(parents=True)
        extra = {"trial_s": trial_s[name]} if trial_s and name in trial_s else {}
        if windows and name in windows:
            extra["trial_window"] = windows[name]
        write_summary(out.trial(name), {"status": "completed", "wall_s": wall, **extra})
    return out


def test_overhead_is_wall_time_over_the_trials_time_per_slot(tmp_path):
    out = _trials(tmp_path, {"a": 30.0, "b": 10.0, "c": 20.0})
    t = results.timing(out, ["a", "b", "c"], {}, wall_s=36.0, slots=2)
    assert (t["trials"], t["concurrency"], t["trial_s_sum"], t["ideal_s"]) == (3, 2, 60.0, 30.0)
    assert t["overhead"] == pytest.approx(0.2) and t["longest_trial_s"] == 30.0
    assert t["overhead_vs_packing_bound"] == pytest.approx(0.2)  # max(30, 30)
    # A resumed trial counts only this invocation's training; one slot per trial at most.
    t = results.timing(out, ["a"], {"a": 25.0}, wall_s=6.0, slots=4)
    assert (t["concurrency"], t["trial_s_sum"], t["overhead"]) == (1, 5.0, pytest.approx(0.2))
    results.write_timing(out, t)
    assert json.loads(out.timing.read_text()) == t
    assert "overhead +20.0 %" in results.format_timing(t)


def test_trial_time_is_the_trial_functions_and_training_alone_is_shown_too(tmp_path):
    out = _trials(tmp_path, {"a": 20.0, "b": 20.0}, trial_s={"a": 25.0, "b": 25.0})
    t = results.timing(out, ["a", "b"], {}, wall_s=30.0, slots=2)
    assert (t["trial_s_sum"], t["train_s_sum"]) == (50.0, 40.0)
    assert t["overhead"] == pytest.approx(0.2) and t["overhead_vs_training"] == pytest.approx(0.5)


def test_the_wall_time_splits_into_start_up_trials_running_and_teardown(tmp_path):
    # Sweep began at t=1000, took 40 s: trials ran from 1008 to 1036 (two at once, 26 s each).
    windows = {"a": [1008.0, 1034.0], "b": [1010.0, 1036.0],
               "c": [900.0, 910.0]}  # an earlier invocation's attempt: not this sweep's
    out = _trials(tmp_path, {"a": 25.0, "b": 25.0, "c": 5.0},
                  trial_s={"a": 26.0, "b": 26.0, "c": 10.0}, windows=windows)
    t = results.timing(out, ["a", "b", "c"], {}, wall_s=40.0, slots=2, started=1000.0)
    assert (t["startup_s"], t["running_s"], t["teardown_s"]) == (8.0, 28.0, 4.0)
    assert t["overhead_while_running"] == pytest.approx(28.0 / 31.0 - 1, abs=1e-4)  # ideal 62/2
    assert "start-up 8.0 s" in results.format_timing(t) and "teardown 4.0 s" in results.format_timing(t)
    # No start time (or no windows): no split, and the line says nothing of one.
    assert "startup_s" not in results.timing(out, ["a", "b"], {}, wall_s=40.0, slots=2)
    t = results.timing(out, ["c"], {}, wall_s=40.0, slots=2, started=1000.0)
    assert "startup_s" not in t and "start-up" not in results.format_timing(t)


def test_concurrency_is_what_the_resources_fit_capped_by_max_concurrent():
    def spec(cpu=1.0, gpu=0.0, max_concurrent=0):
        return SimpleNamespace(cpu=cpu, gpu=gpu, max_concurrent=max_concurrent)  # a Spec's fields
    assert tune.concurrency(spec(), {"CPU": 2.0}) == 2
    assert tune.concurrency(spec(cpu=2), {"CPU": 3.0}) == 1
    assert tune.concurrency(spec(max_concurrent=1), {"CPU": 8.0}) == 1
    assert tune.concurrency(spec(gpu=1), {"CPU": 8.0, "GPU": 2.0}) == 2
    assert tune.concurrency(spec(cpu=4), {"CPU": 2.0}) == 1
