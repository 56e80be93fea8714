"""Learning-rate schedules and parameter groups, as functions of the optimizer config."""

from __future__ import annotations

import math

import pytest

from reslab.config import load as C
from reslab.tasks.optim import Schedule


def _optim(*overrides):
    return C.load([], [f"optim.{o}" for o in overrides]).optim


def test_paper_schedule_divides_by_ten_at_the_milestones():
    s = Schedule(_optim("schedule=paper", "milestones=[32000,48000]"), 64000)
    assert [s(0), s(31999), s(32000), s(47999), s(48000), s(63999)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])


def test_resnet110_rule_holds_lr_until_released():
    s = Schedule(_optim("schedule=paper", "lr=0.1", "warmup_lr=0.01"), 64000)
    assert s(10) == pytest.approx(0.1)  # 0.01 / 0.1: lr 0.01 while warm
    s.warm = False  # the task releases it once training error < 80 %
    assert s(11) == pytest.approx(1.0)


def test_linear_warmup_and_cosine_and_onecycle_shapes():
    s = Schedule(_optim("schedule=cosine", "warmup_steps=10"), 100)
    assert s(0) == pytest.approx(0.1)  # warm-up: (step + 1) / 10 of the cosine value
    assert s(9) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.09)))
    assert s(100) == pytest.approx(0.0, abs=1e-9)
    one = Schedule(_optim("schedule=onecycle"), 100)
    assert one(0) == 0 and one(25) == pytest.approx(1.0) and one(100) == pytest.approx(0.0)
