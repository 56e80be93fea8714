"""A sweep's results: sweep.csv (a row per trial), best_config.yaml, the printed table, in
grid order (the variants of one depth side by side), and the sweep's timing (timing.json: its
wall time against the trials' own time divided by how many ran at once)."""

from __future__ import annotations

import json
import shutil

from reslab.fileio import write_atomic, write_csv
from reslab.metrics import COLUMNS
from reslab.report.table import format_table as aligned
from reslab.report.table import sort_key
from reslab.sweep.spec import Spec, trial_name
from reslab.tracking.records import read_summary
from reslab.tracking.rundir import SweepDir

RESULT_KEYS = ("train/loss", *COLUMNS)  # the columns `reslab compare` shows, and the loss


def write_results(spec: Spec, out: SweepDir, points: list[dict], results: dict) -> list[dict]:
    """sweep.csv, best_config.yaml and the rows for the printed table: a row per trial in
    `points`, from its summary.json and, for the trials this run gave Tune, Tune's result
    (`results`: trial name -> Result; a trial a resumed sweep did not rerun has none)."""
    rows = []
    for point in points:
        name = trial_name(point)
        r = results.get(name)
        error = r.error if r is not None else None
        summary = read_summary(out.trial(name))
        row = {"trial": name, **{k: v for k, v in point.items() if not k.startswith("_")},
               "status": "ERROR" if error else summary.get("status", "stopped"),
               **{k: v for k in RESULT_KEYS
                  if (v := summary.get(k, ((r and r.metrics) or {}).get(k))) is not None},
               "epoch": summary.get("epoch"), "wall_s": summary.get("wall_s"),
               "error": _sentence(error) if error else ""}
        rows.append(row)
    rows.sort(key=lambda r: [sort_key(r.get(k)) for k in spec.grid_keys()] + [r["trial"]])
    columns = list(dict.fromkeys(k for r in rows for k in r))
    write_csv(out.results, columns, rows)
    scored = [r for r in rows if isinstance(r.get(spec.metric), (int, float))]
    if scored:
        pick = min if spec.mode == "min" else max
        best = pick(scored, key=lambda r: r[spec.metric])
        shutil.copyfile(out.trial(best["trial"]).config, out.best_config)
    return rows


def _sentence(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[-1] if text else type(error).__name__)[:300]


def format_table(rows: list[dict]) -> str:
    cols = ["trial", "status", *[k for k in RESULT_KEYS if any(r.get(k) is not None for r in rows)],
            "wall_s"]
    return aligned(cols, [[_fmt(r.get(c)) for c in cols] for r in rows])


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def timing(out: SweepDir, names: list[str], before: dict[str, float], wall_s: float,
           slots: int, started: float | None = None) -> dict:
    """The sweep's wall time against Σ trial time ÷ concurrency, for the trials this
    invocation ran. Trial time is each trial function's own time (`trial_s` in its summary.json:
    building, W&B, training, testing), so `overhead` is Ray's share: start-up, worker processes
    and their imports, scheduling, shutdown. `overhead_vs_training` counts against the training
    time alone (`wall_s`, less what an earlier attempt had recorded). Uneven packing shows as
    the longest trial, a bound no schedule beats. With `started` (the sweep's start, Unix time)
    and the trials' `trial_window`s, the wall time splits into start-up (until the first trial
    function ran: Ray, Tune, worker processes importing torch and Lightning), the trials running
    (`overhead_while_running`: Ray's bookkeeping between trials, and uneven packing) and
    teardown."""
    summaries = {n: read_summary(out.trial(n)) for n in names}
    train_s = {n: max(0.0, (s.get("wall_s") or 0.0) - before.get(n, 0.0))
               for n, s in summaries.items()}
    trial_s = {n: s.get("trial_s") or train_s[n] for n, s in summaries.items()}
    at_once = max(1, min(slots, len(names)))
    total, trained = sum(trial_s.values()), sum(train_s.values())
    ideal = total / at_once
    bound = max(ideal, max(trial_s.values(), default=0.0))
    t = {"wall_s": round(wall_s, 2), "trials": len(names), "concurrency": at_once,
         "trial_s_sum": round(total, 2), "ideal_s": round(ideal, 2),
         "overhead": _over(wall_s, ideal), "train_s_sum": round(trained, 2),
         "overhead_vs_training": _over(wall_s, trained / at_once),
         "longest_trial_s": round(max(trial_s.values(), default=0.0), 2),
         "overhead_vs_packing_bound": _over(wall_s, bound)}
    windows = [w for s in summaries.values() if isinstance(w := s.get("trial_window"), list)
               and started is not None and w[0] >= started]  # this invocation's attempts
    if windows:
        first, last = min(w[0] for w in windows), max(w[1] for w in windows)
        t.update(startup_s=round(first - started, 2), running_s=round(last - first, 2),
                 teardown_s=round(started + wall_s - last, 2),
                 overhead_while_running=_over(last - first, ideal))
    return t


def _over(wall: float, ideal: float) -> float | None:
    return round(wall / ideal - 1, 4) if ideal > 0 else None


def write_timing(out: SweepDir, t: dict) -> None:
    write_atomic(out.timing, json.dumps(t, indent=2) + "\n")


def format_timing(t: dict) -> str:
    if t["overhead"] is None:
        return f"[sweep] wall {t['wall_s']:.1f} s; the trials recorded no training time"
    return (f"[sweep] wall {t['wall_s']:.1f} s vs Σ trial time {t['trial_s_sum']:.1f} s ÷ "
            f"{t['concurrency']} at once = {t['ideal_s']:.1f} s: Ray's overhead "
            f"{100 * t['overhead']:+.1f} % (vs the training alone, Σ {t['train_s_sum']:.1f} s: "
            f"{100 * t['overhead_vs_training']:+.1f} %; longest trial {t['longest_trial_s']:.1f} s)"
            + (f"\n[sweep] = start-up {t['startup_s']:.1f} s (Ray, workers importing torch and "
               f"Lightning) + trials running {t['running_s']:.1f} s "
               f"({100 * t['overhead_while_running']:+.1f} % over the ideal) + teardown "
               f"{t['teardown_s']:.1f} s" if "startup_s" in t else ""))
