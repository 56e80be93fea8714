"""Sweep specs: every shipped spec validates; typos are sentences; trial names and plans."""

from __future__ import annotations

import dataclasses

import pytest

from reslab.config import domain
from reslab.errors import UserError
from reslab.sweep import spec as S
from reslab.sweep.check import check_resources
from reslab.sweep.schema import SpecFile
from support import ROOT

SPECS = sorted((ROOT / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_shipped_spec_validates_and_plans(path):
    spec = S.load_spec(path)
    assert spec.name and f"sweep '{spec.name}'" in S.plan(spec, 2)


def test_the_degradation_grid_is_the_paper_comparison():
    spec = S.load_spec(ROOT / "sweeps/degradation_digits.yaml")
    names = [S.trial_name(p) for p in S.grid_points(spec)]
    assert len(names) == 6 and "depth=56,shortcut=none,seed=0" in names


def _spec(tmp_path, text):
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


RANDOM = "search: random\nspace:\n  "
LR_GRID = "[" + ", ".join(f"0.{i:02d}" for i in range(1, 41)) + "]"


@pytest.mark.parametrize("text,match", [
    ("nmae: x\n", r"unknown sweep key 'nmae' in .*s\.yaml \(did you mean 'name'\?\)"),
    ("space:\n  model.dpeth: [20]\n", r"'model.dpeth' is not a config key .*model.depth"),
    ("space:\n  optim.lr: {normal: [0, 1]}\n", "must be a list .* or one of choice"),
    ("space:\n  optim.lr: {loguniform: [0.01, 1]}\n", "use search: random"),
    ("space:\n  model.depth: [20, 57]\n", r"6n\+2 .* got 57"),
    ("scheduler: {name: hyperband}\n", "scheduler.name must be one of fifo, asha"),
    ("num_samples: 3\n", "for replicates of a grid use seeds"),
    ("resources_per_trial: {cpu: 0}\n", r"resources_per_trial.cpu must be a number >= 0.0001"),
    # Ray counts in units of 0.0001: a smaller share was a ValueError traceback inside Tune
    ("resources_per_trial: {cpu: 0.00001}\n", r"resources_per_trial.cpu must be a number >= 0.0001"),
    ("resources_per_trial: {gpu: 0.00001}\n", r"resources_per_trial.gpu must be 0 or a number >= 0.0001"),
    ("resources_per_trial: {cpu: 1, gpu: 2}\n", r"resources_per_trial.gpu .* <= 1, got 2"),
    ("seeds: [0, 0]\n", r"trial seed=0 twice"),
    ("space:\n  model.depth: [20, 20]\n", r"trial depth=20,seed=0 twice"),
    ("seeds: [0, x]\n", "seeds must be a count from 1 to 1000 or a list of whole numbers"),
    ("num_samples: many\n", r"num_samples"),
    ("space:\n  optim.lr: {uniform: [1, 0.1]}\n", r"uniform takes \[lo, hi\].* lo < hi"),
    ("space:\n  optim.lr: {loguniform: [0, 1]}\n", r"loguniform .* 0 < lo"),
    ("space:\n  data.batch_size: {randint: [8, 64.5]}\n", r"randint .* integers"),
    ("space:\n  optim.lr: {choice: []}\n", r"choice takes a list of 1 to 1000 values"),
    # Values, not only types (issue 23, item 8): each is a sentence before anything runs.
    ("space: [1, 2]\n", r"space must be a mapping of config key .* got \[1, 2\] in .*s.yaml"),
    ("space: null\n", r"space"),
    ("base: {recipes: {a: 1}}\n", r"base.recipes must be a list of at most 100: a printable"),
    ("base: {recipes: [configs/quickstart.yaml], overrides: [1, 2]}\n",
     r"override '1' must look like KEY=VALUE"),
    ("seeds: 0\n", r"seeds must be a count from 1 .* got 0"),
    ("seeds: -3\n", r"seeds must be a count .* got -3"),
    ("seeds: true\n", r"seeds must be a count .* got true"),
    ("seeds: [1.5]\n", r"seeds must be a count .* got \[1.5\]"),
    ("seeds: [-1]\n", r"seeds must be a list of 1 to 1000: .*>= 0.* got \[-1\]"),
    ("seeds: [4294967296]\n", r"seeds must be a list .*< 4294967296"),
    ("seeds: 1001\n", r"seeds must be a count from 1 to 1000"),
    (RANDOM + "optim.lr: {loguniform: [0.01, 0.1]}\nnum_samples: 0\n",
     r"num_samples must be a whole number >= 1 and <= 1000, got 0"),
    ("max_failures: -7\n", r"max_failures must be -1 or a whole number >= 0 .* got -7"),
    ("max_failures: .nan\n", r"max_failures"),
    ("max_concurrent: -3\n", r"max_concurrent must be a whole number >= 0 .* got -3"),
    ("resources_per_trial: {gpu: .nan}\n", r"resources_per_trial.gpu must be .* got nan"),
    ("resources_per_trial: {cpu: .nan}\n", r"resources_per_trial.cpu must be .* got nan"),
    ("resources_per_trial: {cpu: .inf}\n", r"resources_per_trial.cpu must be .* got inf"),
    ("resources_per_trial: {gpu: -0.5}\n", r"resources_per_trial.gpu must be 0 or a number >= 0.0001"),
    ("scheduler: {name: asha, grace_period: -1}\n", r"scheduler.grace_period must be .* >= 1"),
    ("scheduler: {name: asha, grace_period: 0}\n", r"scheduler.grace_period must be"),
    ("scheduler: {name: asha, reduction_factor: 1}\n", r"scheduler.reduction_factor .* > 1"),
    ("scheduler: {name: asha, grace_period: 31}\n",
     r"grace_period=31 is more than trainer.max_epochs=30: ASHA would never stop a trial"),
    ("metric: val/nope\n",
     r"metric 'val/nope' is not one the classification task \(data.name=digits\) reports .*val/err"),
    ("metric: test/err\n", r"metric 'test/err' is not one .* at each validation"),
    ("metric: val/psnr\nmode: max\n", r"metric 'val/psnr' is not one the classification task"),
    ("mode: max\n", r"mode: max would pick the worst trial: val/err is better when lower"),
    ("name: a/b\n", r"name must be null or a single printable path component .* got 'a/b'"),
    ("name: ''\n", r"name must be null or a single printable path component"),
    ("search: random\n", r"search: random draws from the space's distributions, and it has none"),
    ("space:\n  optim.lr: " + LR_GRID + "\n  optim.momentum: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, "
     "0.7, 0.8, 0.9, 0.95]\nseeds: 3\n", r"1200 trials \(40 x 10 x 3 x 1: .*at most 1000"),
    ("space:\n  model.depth: []\n", r"space.model.depth must be a list of 1 to 1000 values"),
    ("space:\n  model.depth: 20\n", r"space.model.depth must be a list of 1 to 1000 values"),
    # The sweep sets these in every trial: sweeping them would be silently undone.
    ("space:\n  run.name: [a, b]\n", r"space.run.name cannot be swept: the sweep sets it"),
    ("space:\n  run.root: [a, b]\n", r"space.run.root cannot be swept"),
    ("space:\n  trainer.devices: [1, 2]\n", r"space.trainer.devices cannot be swept"),
    ("space:\n  seed: [1, 2]\n", r"space.seed cannot be swept.*seeds:"),
    # Distributions that draw values no trial can take: each choice and both ends are checked.
    (RANDOM + "model.depth: {choice: [57, 58]}\n", r"space.model.depth: choice can draw 57"),
    (RANDOM + "optim.lr: {uniform: [-1, -0.5]}\n", r"space.optim.lr: uniform can draw -1.0"),
    (RANDOM + "optim.lr: {uniform: [0.1, 200]}\n", r"uniform can draw 200.0, .*optim.lr"),
    (RANDOM + "optim.lr: {loguniform: [0.1, .inf]}\n", r"loguniform takes \[lo, hi\]"),
    (RANDOM + "data.batch_size: {uniform: [8, 64]}\n", r"uniform can draw 8.0, .*whole number"),
    (RANDOM + "data.batch_size: {randint: [-5, 0]}\n", r"randint can draw -5"),
    (RANDOM + "model.depth: {randint: [8, 60]}\n", r"randint can draw 59, .*6n\+2"),
    (RANDOM + "optim.lr: {choice: [0.1, -1]}\n", r"choice can draw -1"),
    # Trial directories are named by the values: each name is one safe path component.
    ("space:\n  data.root: [a/b, c]\n", r"a trial's folder name must be a single .*'root=a/b"),
    ("space:\n  data.root: [/abs, c]\n", r"a trial's folder name .* got 'root=/abs,seed=0'"),
    ("space:\n  data.root: [" + "x" * 250 + "]\n", r"a trial's folder name .*at most 200"),
    (RANDOM + "data.root: {choice: [ok, ../up]}\n", r"a trial's folder name .*'root=../up"),
    # Two values a trial's name (4 significant digits) cannot tell apart; a value written twice.
    ("space:\n  optim.lr: [0.10001, 0.10002]\n",
     r"optim.lr=0.10001 and optim.lr=0.10002 would share the directory lr=0.1,seed=0"),
    ("space:\n  optim.lr: [0.1, 1e-1]\n", r"the sweep has trial lr=0.1,seed=0 twice"),
    # The sweep sets these in every trial: an override of them would be silently undone.
    ("base:\n  recipes: [configs/quickstart.yaml]\n  overrides: [seed=3]\n",
     r"override seed=... \(the spec's base.overrides .*\) has no effect in a sweep: .*from `seeds:`"),
    ("base:\n  recipes: [configs/quickstart.yaml]\n  overrides: [run.name=x]\n",
     r"override run.name=... \(the spec's base.overrides .*\) has no effect .*from `name:`"),
    ("base:\n  recipes: [configs/quickstart.yaml]\n  overrides: [trainer.num_nodes=2]\n",
     r"override trainer.num_nodes=... \(the spec's base.overrides .*\) has no effect in a sweep"),
    ("base:\n  recipes: [configs/quickstart.yaml]\n  overrides: [logger.wandb.name=n]\n",
     r"override logger.wandb.name=... \(the spec's base.overrides .* \(as the trial's name\)"),
    # ... and the space's own keys (the override was dropped: the plan showed the space's values).
    ("base:\n  recipes: [configs/quickstart.yaml]\n  overrides: [model.shortcut=B]\n"
     "space:\n  model.shortcut: [A, none]\n", r"its space sets model.shortcut in every trial"),
    ("space: {0: [2]}\n", r"space key 0 in .* is not a config key"),
    # YAML 1.1 would have read these as other numbers (0b101 is 5, 1:50 is 110).
    ("space:\n  data.batch_size: [0b101]\n", r"data.batch_size must be .* got '0b101'"),
    ("space:\n  trainer.max_epochs: [1:50]\n", r"trainer.max_epochs must be .* got '1:50'"),
    ("space:\n  model.weights: [null]\n", r"model.weights must be .* got null in space"),
])
def test_spec_values_are_refused_with_a_sentence(tmp_path, text, match):
    base = "" if text.startswith("base:") else "base:\n  recipes: [configs/quickstart.yaml]\n"
    with pytest.raises(UserError, match=match) as e:
        S.load_spec(_spec(tmp_path, base + text))
    assert len(str(e.value).splitlines()) == 1


def test_space_values_reach_a_trial_as_written(tmp_path):
    """Numbers as YAML 1.2 reads them (017 is 17, 1e-3 a number), null as None (it became the
    text 'None' through a KEY=VALUE override)."""
    s = S.load_spec(_spec(tmp_path, "base:\n  recipes: [configs/quickstart.yaml]\nspace:\n"
                                    "  optim.lr: [1e-3]\n  trainer.max_epochs: [017]\n"
                                    "  data.mean: [null]\n"))
    cfg = s.trial_cfg(S.grid_points(s)[0])
    assert (cfg.optim.lr, cfg.trainer.max_epochs, cfg.data.mean) == (0.001, 17, None)
    assert S.trial_name(S.grid_points(s)[0]) == "lr=0.001,max_epochs=17,mean=None,seed=0"


def test_every_spec_key_declares_its_domain_beside_it():
    """One generic walk checks a spec's keys (check.check_fields); a key without a domain would
    go unchecked, so every field of every section has one (`space` is checked key by key)."""
    def fields(cls, prefix=""):
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(f.default_factory if callable(f.default_factory) else None):
                yield from fields(f.default_factory, prefix + f.name + ".")
            else:
                yield prefix + f.name, domain.domain_of(f)

    declared = dict(fields(SpecFile))
    assert {k for k, d in declared.items() if d is None} == {"space"}
    assert len(declared) == 16


@pytest.mark.parametrize("text", [
    "max_failures: -1\n",  # no limit, as in Ray Tune
    "max_concurrent: 0\nseeds: 2\n",
    "resources_per_trial: {cpu: 0.5, gpu: 0}\n",
    "metric: train/loss\n",
    "metric: val/err_best\n",
    RANDOM + "optim.lr: {loguniform: [0.001, 0.5]}\n  model.shortcut: {choice: [A, B]}\n"
             "num_samples: 4\nscheduler: {name: asha, grace_period: 30, reduction_factor: 2}\n",
])
def test_values_inside_their_domains_are_accepted(tmp_path, text):
    base = "base:\n  recipes: [configs/quickstart.yaml]\n"
    spec = S.load_spec(_spec(tmp_path, base + text))
    assert S.plan(spec, 2)


def test_a_dry_run_refuses_a_trial_no_local_node_can_hold_and_writes_nothing(tmp_path, cli):
    spec = _spec(tmp_path, f"base:\n  recipes: [configs/quickstart.yaml]\n  overrides: "
                           f"['run.root={tmp_path}/runs']\nresources_per_trial: {{cpu: 64}}\n")
    r = cli("sweep", spec, "--dry-run", "--cpus", "2")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "resources_per_trial asks cpu=64 gpu=0 per trial, more than this machine's" in r.stderr
    assert not (tmp_path / "runs").exists()
    r = cli("sweep", spec, "--dry-run", "--cpus", "64")
    assert r.returncode == 0 and "1 trials" in r.stdout and not (tmp_path / "runs").exists()
    gpu = _spec(tmp_path, "base:\n  recipes: [configs/quickstart.yaml]\n"
                          "resources_per_trial: {gpu: 0.5}\n")
    with pytest.raises(UserError, match=r"gpu=0.5 per trial, more than the cluster has "
                                        r"\(cpu=16 gpu=0, cpu=8 gpu=0\)"):
        check_resources(S.load_spec(gpu), [{"CPU": 16}, {"CPU": 8, "GPU": 0}], "the cluster")
    check_resources(S.load_spec(gpu), [{"CPU": 16}, {"CPU": 1, "GPU": 1}], "the cluster")


def test_trial_names_are_short_and_unambiguous():
    assert S.trial_name({"model.depth": 56, "model.shortcut": "none", "seed": 1}) == \
        "depth=56,shortcut=none,seed=1"
    assert S.trial_name({"optim.lr": 0.0123456, "model.lr": 1, "seed": 0}) == \
        "optim.lr=0.01235,model.lr=1,seed=0"
