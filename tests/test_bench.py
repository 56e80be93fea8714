"""`reslab bench` measures; it asserts no speed. These tests check that the loops really train
the requested steps on the same setup, that the report carries each loop's rounds and the
ratios' spread, and that no ratio is printed between loops that did different work."""

from __future__ import annotations

import json

import pytest
import torch

from reslab.bench import loops, spread
from reslab.data.memory import MemoryLoader

# Digits (8x8) with a ResNet-8: the bench's machinery, not a benchmark.
SMALL = ["model.depth=8", "data.batch_size=64", "logger.wandb.mode=disabled",
         "trainer.progress_bar=false", "--steps", "3", "--rounds", "2", "--warmup", "2",
         "--no-pipelines", "--json"]


def test_bench_reports_every_loop_per_round_and_the_ratios_spread(cli):
    r = cli("bench", "configs/quickstart.yaml", "trainer.channels_last=true",
            "trainer.precision=32-true", *SMALL)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert set(result["sides"]) == {"reslab", "plain", "naive"}  # channels_last: naive differs
    for name, s in result["sides"].items():
        assert len(s["images_per_s"]) == 2 and s["min"] <= s["median"] <= s["max"], name
        assert s["min"] > 0 and s["cpu_ms_per_step"] > 0, name
        # Measured inside each round's window: the optimizer steps each loop really took, the
        # images it fed and the forward calls it made (a step that did not train shows here).
        assert [w["optimizer_steps"] for w in s["work"]] == [3, 3], name
        assert [w["images"] for w in s["work"]] == [3 * 64, 3 * 64], name
        assert [w["forward_calls"] for w in s["work"]] == [3, 3], name
        assert {w["dtype"] for w in s["work"]} == {"float32"}, name
        assert {w["autocast"] for w in s["work"]} == {"off"}, name
        assert s["faults_per_step"] >= 0, name
    fmt = {n: s["work"][0]["memory_format"] for n, s in result["sides"].items()}
    assert fmt["reslab"] == fmt["plain"] != fmt["naive"]
    assert "weights channels_last" in fmt["reslab"] and "weights contiguous" in fmt["naive"]
    for name in ("plain", "naive"):
        q = result["ratios"][name]
        assert q["min"] <= q["ratio"] * 1.0001 and q["ratio"] <= q["max"] * 1.0001, name
        assert len(q["rounds"]) == 2
    assert result["fast_path"]["channels_last"] is True
    assert result["fast_path"]["compile"] is False  # auto: 5 steps never repay compiling
    assert "refused" not in result


@pytest.mark.parametrize("gpu", [False, True])
def test_the_loops_take_turns_every_step_on_a_cpu_and_every_round_on_a_gpu(cli, monkeypatch, gpu):
    # Who ran when: reslab's optimizer steps (its task's) and each plain loop's turns. `gpu`:
    # the GPU's turn length, on this CPU.
    if gpu:
        monkeypatch.setattr(loops, "steps_per_turn", lambda device, steps: steps)
    turns, run, start = [], loops.Yardstick.run, loops.Interleaved.on_train_start

    def logged_run(stick, steps):
        turns.append((id(stick), steps))
        run(stick, steps)

    def logged_start(timer, trainer, task):
        start(timer, trainer, task)
        trainer.optimizers[0].register_step_post_hook(lambda *_: turns.append(("reslab", 1)))

    monkeypatch.setattr(loops.Yardstick, "run", logged_run)
    monkeypatch.setattr(loops.Interleaved, "on_train_start", logged_start)
    r = cli("bench", "configs/quickstart.yaml", "trainer.channels_last=true",
            "trainer.precision=32-true", *SMALL)
    assert r.returncode == 0, r.stderr
    assert turns[:2] == [("reslab", 1)] * 2  # its warm-up (the plain loops warm up untimed)
    timed = turns[2:]
    sticks = [t[0] for t in timed if t[0] != "reslab"]
    a, b = sorted(set(sticks), key=sticks.index)
    # 2 rounds x 3 steps: both plain loops (their order reversed every turn), then reslab's
    # steps, a turn at a time; then the one step past the last round, untimed.
    if gpu:
        assert timed == [(a, 3), (b, 3), *[("reslab", 1)] * 3, (b, 3), (a, 3),
                         *[("reslab", 1)] * 4]
    else:
        assert timed == [(a, 1), (b, 1), ("reslab", 1), (b, 1), (a, 1), ("reslab", 1)] * 3 + \
            [("reslab", 1)]
    result = json.loads(r.stdout)
    assert result["turn"] == (3 if gpu else 1) and "refused" not in result


def test_an_eager_nchw_path_is_its_own_naive_loop(cli):
    r = cli("bench", "configs/quickstart.yaml", "trainer.channels_last=false",
            "trainer.compile=false", "trainer.precision=32-true", *SMALL)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert set(result["sides"]) == {"reslab", "plain"}
    assert result["ratio_naive"] == result["ratio"]


@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16-true"])
def test_the_plain_loop_runs_reslabs_precision_and_the_naive_loop_fp32(cli, precision):
    # Eager NCHW but bf16: the naive loop (fp32) is not reslab's setup, so it is timed too.
    r = cli("bench", "configs/quickstart.yaml", "trainer.channels_last=false",
            "trainer.compile=false", f"trainer.precision={precision}", *SMALL)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    work = {name: s["work"][0] for name, s in result["sides"].items()}
    mixed = precision == "bf16-mixed"
    for name in ("reslab", "plain"):
        assert work[name]["autocast"] == ("bfloat16" if mixed else "off"), name
        assert work[name]["weight_dtype"] == ("float32" if mixed else "bfloat16"), name
        assert work[name]["dtype"] == "bfloat16", name  # the logits
    assert (work["naive"]["autocast"], work["naive"]["dtype"]) == ("off", "float32")
    assert result["precision"] == precision and "refused" not in result


def test_bench_refuses_a_ratio_when_the_loops_autocast_differs(cli, monkeypatch):
    monkeypatch.setattr(loops, "AUTOCAST", {})  # the plain loop forgets to autocast
    r = cli("bench", "configs/quickstart.yaml", "trainer.precision=bf16-mixed", *SMALL)
    assert r.returncode == 1
    result = json.loads(r.stdout)
    assert result["ratio"] is None and result["ratio_naive"] is not None
    assert "autocast bfloat16 vs off" in result["refused"]["plain"], result["refused"]


def test_the_recipes_epoch_limit_does_not_end_reslabs_path_before_the_window(cli):
    # 1 epoch of 3 batches (512 of ~1,300 digits), 2 + 3 steps wanted: reslab's path used to
    # stop after 3 steps with its window still open (a nonsense rate, then a refused ratio).
    args = [a if a != "data.batch_size=64" else "data.batch_size=512" for a in SMALL]
    r = cli("bench", "configs/quickstart.yaml", "trainer.max_epochs=1", *args)
    assert r.returncode == 0, r.stderr
    work = json.loads(r.stdout)["sides"]["reslab"]["work"]
    assert [w["optimizer_steps"] for w in work] == [3, 3]


def test_bench_refuses_a_ratio_when_the_loops_work_differs(cli, monkeypatch):
    def unflipped(dm):  # the plain loop reads the same images without the crop's padding
        base = dm.train_dataloader()
        return MemoryLoader(base.x, base.y, base.batch_size, shuffle=True, pad=0, flip=False)

    monkeypatch.setattr(loops, "plain_loader", unflipped)
    r = cli("bench", "configs/quickstart.yaml", *SMALL)
    assert r.returncode == 1
    result = json.loads(r.stdout)
    assert result["ratio"] is None and result["ratio_naive"] is None
    assert "augmentation pad=1" in result["refused"]["plain"]
    assert "no ratio" in r.stderr and "augmentation" in r.stderr
    text = spread.format_result(result)
    assert "REFUSED" in text and "ratio vs plain (same fast path)   1." not in text


def _work(**changes) -> dict:
    work = {"optimizer_steps": 3, "images": 192, "forward_calls": 3, "batch_size": [64],
            "augmentation": "pad=1 flip=False shuffle=True", "autocast": "off",
            "dtype": "float32", "weight_dtype": "float32",
            "memory_format": "inputs either, weights channels_last", "compiled": False,
            "seconds": 0.1, "cpu_seconds": 0.1, "page_faults": 0}
    return {**work, **changes}


def test_each_difference_in_work_refuses_the_ratio_and_is_named():
    same = spread.side([_work(), _work()])
    assert spread.ratio(same, same, spread.WORK + spread.SETUP)["ratio"] == 1.0
    for change in ({"optimizer_steps": 2}, {"images": 128}, {"batch_size": [32, 64]},
                   {"dtype": "bfloat16"}, {"autocast": "bfloat16"}, {"autocast": "off+bfloat16"},
                   {"weight_dtype": "bfloat16"}, {"augmentation": "pad=0 flip=False shuffle=True"},
                   {"memory_format": "inputs either, weights contiguous"}, {"compiled": True}):
        other = spread.side([_work(), _work(**change)])
        q = spread.ratio(same, other, spread.WORK + spread.SETUP)
        key = next(iter(change))
        assert "ratio" not in q and "round 2" in q["refused"] and key in q["refused"], change
    # Against the naive loop only the work counts: its layout and compilation differ by design,
    # and its precision (fp32) too, but it must be the eager fp32 loop it is labelled as.
    bf16 = spread.side([_work(autocast="bfloat16", dtype="bfloat16")] * 2)
    naive = spread.side([_work(memory_format="inputs either, weights contiguous")] * 2)
    assert spread.ratio(bf16, naive, spread.WORK, spread.NAIVE)["ratio"] == 1.0
    for change in ({"autocast": "bfloat16"}, {"weight_dtype": "bfloat16"}, {"compiled": True}):
        wrong = spread.side([_work(**change)] * 2)
        q = spread.ratio(same, wrong, spread.WORK, spread.NAIVE)
        assert "not eager fp32" in q["refused"] and next(iter(change)) in q["refused"], change


def test_the_ratio_pairs_each_round_of_one_loop_with_the_same_round_of_the_other():
    # reslab ran at 0.9x the plain loop in rounds 1 and 3 and 1.05x in round 2. reslab's median
    # round is round 2, the plain loop's round 1: their ratio (0.9975) compares two moments.
    def rounds(*rates):
        return spread.side([_work(seconds=192 / rate) for rate in rates])

    q = spread.ratio(rounds(90, 99.75, 108), rounds(100, 95, 120), spread.WORK + spread.SETUP)
    assert [round(x, 3) for x in q["rounds"]] == [0.9, 1.05, 0.9]
    assert round(q["ratio"], 3) == 0.9 and (q["min"], q["max"]) == (min(q["rounds"]), max(q["rounds"]))


def test_the_window_records_the_autocast_dtype_in_force_across_its_openings():
    window = loops.Window(torch.device("cpu"))
    forward = window.wrap(torch.nn.Linear(2, 2))
    window.start()
    forward(torch.ones(1, 2))
    window.stop()
    forward(torch.ones(3, 2))  # closed: another loop's turn, not counted
    window.start()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        forward(torch.ones(1, 2))
    window.stop()
    record = window.take(torch.nn.Linear(2, 2), None, False)
    assert record["autocast"] == "bfloat16+off" and record["dtype"] == "bfloat16+float32"
    assert record["forward_calls"] == 2 and record["batch_size"] == [1]
    assert record["page_faults"] >= 0 and record["seconds"] > 0
    assert window.take(torch.nn.Linear(2, 2), None, False)["forward_calls"] == 0  # next round
