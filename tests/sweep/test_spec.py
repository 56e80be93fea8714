"""Sweep specs: every shipped spec validates; typos are sentences; trial names and plans."""

from __future__ import annotations

import pytest

from reslab.errors import UserError
from reslab.sweep import spec as S
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


@pytest.mark.parametrize("text,match", [
    ("nmae: x\n", r"unknown sweep key 'nmae' in .*s\.yaml \(did you mean 'name'\?\)"),
    ("space:\n  model.dpeth: [20]\n", r"'model.dpeth' is not a config key .*model.depth"),
    ("space:\n  optim.lr: {normal: [0, 1]}\n", "must be a list .* or one of choice"),
    ("space:\n  optim.lr: {loguniform: [0.01, 1]}\n", "use search: random"),
    ("space:\n  model.depth: [20, 57]\n", r"6n\+2 .* got 57"),
    ("scheduler: {name: hyperband}\n", "scheduler.name must be one of fifo, asha"),
    ("num_samples: 3\n", "for replicates of a grid use seeds"),
    ("resources_per_trial: {cpu: 0}\n", "cpu > 0"),
    ("resources_per_trial: {cpu: 1, gpu: 2}\n", "multi-GPU trials .* not supported yet"),
    ("seeds: [0, 0]\n", r"trial seed=0 twice"),
    ("space:\n  model.depth: [20, 20]\n", r"trial depth=20,seed=0 twice"),
    ("seeds: [0, x]\n", "seeds must be a count or a list of integers"),
    ("num_samples: many\n", r"num_samples"),
    ("space:\n  optim.lr: {uniform: [1, 0.1]}\n", r"uniform takes \[lo, hi\].* lo < hi"),
    ("space:\n  optim.lr: {loguniform: [0, 1]}\n", r"loguniform .* 0 < lo"),
    ("space:\n  data.batch_size: {randint: [8, 64.5]}\n", r"randint .* integers"),
    ("space:\n  optim.lr: {choice: []}\n", r"choice takes a non-empty list"),
])
def test_spec_typos_are_refused_with_a_sentence(tmp_path, text, match):
    base = "base:\n  recipes: [configs/quickstart.yaml]\n"
    with pytest.raises(UserError, match=match):
        S.load_spec(_spec(tmp_path, base + text))


def test_trial_names_are_short_and_unambiguous():
    assert S.trial_name({"model.depth": 56, "model.shortcut": "none", "seed": 1}) == \
        "depth=56,shortcut=none,seed=1"
    assert S.trial_name({"optim.lr": 0.0123456, "model.lr": 1, "seed": 0}) == \
        "optim.lr=0.01235,model.lr=1,seed=0"
