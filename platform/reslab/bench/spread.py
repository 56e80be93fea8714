"""From the rounds' records to the bench's numbers: each loop's images/s per round (min,
median, max), and a ratio only between loops that did the same work — otherwise a sentence
saying what differed, and no number."""

from __future__ import annotations

import statistics

# What must match for any ratio: the same training, step for step.
WORK = ("optimizer_steps", "images", "forward_calls", "batch_size", "augmentation")
# What must also match against the equally optimised loop: layout, compilation and precision
# (the autocast dtype in force at every forward call, the output's and the weights' dtypes).
SETUP = ("memory_format", "compiled", "autocast", "dtype", "weight_dtype")
# What the naive loop is by definition: the eager fp32 loop a user writes first.
NAIVE = {"compiled": False, "autocast": "off", "weight_dtype": "float32"}
LABELS = {"reslab": "reslab", "plain": "plain (same fast path)",
          "naive": "naive (eager NCHW fp32)"}


def side(records: list[dict]) -> dict:
    """One loop's rounds: images/s per round and its spread, ms and CPU ms per step, minor page
    faults per step."""
    rates = [r["images"] / r["seconds"] if r["seconds"] > 0 else 0.0 for r in records]
    steps = [max(1, r["optimizer_steps"]) for r in records]
    return {"images_per_s": rates, "min": min(rates), "median": statistics.median(rates),
            "max": max(rates),
            "ms_per_step": 1000 * statistics.median(r["seconds"] / n for r, n in zip(records, steps)),
            "cpu_ms_per_step": 1000 * statistics.median(r["cpu_seconds"] / n
                                                        for r, n in zip(records, steps)),
            "faults_per_step": statistics.median(r["page_faults"] / n
                                                 for r, n in zip(records, steps)),
            "work": records}


def differences(a: dict, b: dict, keys: tuple[str, ...]) -> list[str]:
    return [f"{k} {a[k]} vs {b[k]}" for k in keys if a[k] != b[k]]


def ratio(mine: dict, other: dict, keys: tuple[str, ...], expect: dict | None = None) -> dict:
    """`mine` / `other` images/s: each round's ratio (the two loops took turns within a round,
    so it compares them at the same moments of the machine) and their median — not the ratio of
    each loop's median round, which may be two different rounds — or `refused`: why there is no
    ratio, in one sentence. `expect`: what `other` must have done (the naive loop's
    definition)."""
    if len(mine["work"]) != len(other["work"]):
        return {"refused": f"no ratio: one loop ran {len(mine['work'])} rounds, the other "
                           f"{len(other['work'])}"}
    for r, (a, b) in enumerate(zip(mine["work"], other["work"])):
        if diff := differences(a, b, keys):
            return {"refused": f"no ratio: in round {r + 1} the two loops did not do the same "
                               f"work ({'; '.join(diff)})"}
        if diff := [f"{k} {b[k]}, not {v}" for k, v in (expect or {}).items() if b[k] != v]:
            return {"refused": f"no ratio: in round {r + 1} the naive loop was not eager fp32 "
                               f"({'; '.join(diff)})"}
    rounds = [a / b if b else 0.0 for a, b in zip(mine["images_per_s"], other["images_per_s"])]
    return {"ratio": statistics.median(rounds), "rounds": rounds, "min": min(rounds),
            "max": max(rounds)}


def ratios(sides: dict) -> dict:
    """reslab against the equally optimised plain loop (all of WORK and SETUP must match) and
    against the naive loop (WORK must match, and the naive loop must be eager fp32; it is the
    plain loop where reslab's path is eager NCHW fp32 itself)."""
    if "plain" not in sides:
        why = {"refused": "no ratio: reslab's path ended before its timed steps began"}
        return {"plain": why, "naive": why}
    return {"plain": ratio(sides["reslab"], sides["plain"], WORK + SETUP),
            "naive": ratio(sides["reslab"], sides.get("naive", sides["plain"]), WORK, NAIVE)}


def format_result(r: dict) -> str:
    fp = r["fast_path"]
    lines = [f"{r['model']} depth={r['depth']} batch={r['batch_size']} on {r['device']} "
             f"({r['precision']}, {r['threads']} threads), {r['rounds']} rounds x {r['steps']} "
             f"steps after {r['warmup']} warm-up, the loops taking turns every "
             f"{r['turn']} step{'s' * (r['turn'] > 1)}, load average {r['load_before']:.1f} -> "
             f"{r['load_after']:.1f}",
             f"  reslab's path: channels_last={fp['channels_last']} compile={fp['compile']} "
             f"({fp['compile_why']})",
             f"  precision {fp['precision']} ({fp['precision_why']})",
             f"  {'images/s':>43} {'min':>9} {'median':>9} {'max':>9}   ms/step  CPU ms/step"
             "  faults/step"]
    for name, s in r["sides"].items():
        lines.append(f"  {LABELS[name]:<33} {'':>9} {s['min']:9.1f} {s['median']:9.1f} "
                     f"{s['max']:9.1f}  {s['ms_per_step']:8.2f}  {s['cpu_ms_per_step']:8.2f}"
                     f"  {s['faults_per_step']:11.0f}")
    if "naive" not in r["sides"]:
        lines.append("  (reslab's path is eager NCHW fp32 here: the naive loop is the plain loop)")
    for name, q in r["ratios"].items():
        label = f"ratio vs {LABELS[name]}"
        if "refused" in q:
            lines.append(f"  {label:<33} REFUSED — {q['refused']}")
        else:
            lines.append(f"  {label:<33} {q['ratio']:.3f} (the rounds' median; rounds "
                         f"{q['min']:.3f} .. {q['max']:.3f})")
    if "compile_s" in r:
        lines.append(f"  compile: first step {r['compile_s']:.1f} s (compiling)")
    lines.append(f"  peak memory {r['peak_memory_mb']:.0f} MB (the loops together)" +
                 (f"   MFU {100 * r['mfu']:.1f} %" if "mfu" in r else ""))
    if "memory_images_per_s" in r:
        lines.append(f"  input pipeline: in-memory {r['memory_images_per_s']:,.0f} images/s vs "
                     f"DataLoader (per-sample, 2 workers) {r['dataloader_images_per_s']:,.0f} "
                     f"images/s = {r['pipeline_speedup']:.1f}x")
    return "\n".join(lines)
