"""Every config value has a domain, declared beside its field in the schema: a walk over every
field checks the declaration, then feeds each key the values a stranger would try."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from enum import Enum

import pytest

from reslab.config import domain
from reslab.config.load import load
from reslab.config.schema import Config, select
from reslab.errors import ConfigError

HOSTILE = ["nan", "inf", "-inf", "-1", "0", "1e30", "99999999999999999999999", "abc", "[[[1]]]",
           "[1, 2]", "{a: 1}", "true", "''", "null", "-0.5", "0.5", "1.5", "[]", "\u200b",
           "a/b", "..", "x" * 5000]


def leaves(schema: type = Config, prefix: str = "") -> list[tuple[str, dataclasses.Field, object]]:
    """(dotted key, field, annotated type) for every value of the schema."""
    out = []
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        if dataclasses.is_dataclass(hints[f.name]):
            out += leaves(hints[f.name], f"{prefix}{f.name}.")
        else:
            out.append((prefix + f.name, f, hints[f.name]))
    return out


def kinds(hint) -> tuple:
    """The types a field may hold besides null (`int | None` -> (int,); `list[int]` itself)."""
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return tuple(a for a in (typing.get_args(hint) if union else (hint,)) if a is not type(None))


def bounded(d: domain.Domain) -> bool:
    return (d.ge is not None or d.gt is not None) and (d.le is not None or d.lt is not None)


@pytest.mark.parametrize("key, f, hint", leaves(), ids=[k for k, _, _ in leaves()])
def test_every_field_declares_its_domain(key, f, hint):
    d = domain.domain_of(f)
    assert d is not None, f"{key} has no domain: declare it with value(default, ...)"
    k = kinds(hint)
    if any(isinstance(t, type) and issubclass(t, Enum) for t in k) or k == (bool,):
        return  # the Enum's members, or true/false, are the domain
    if d.choices:
        return
    if k in ((int,), (float,)):
        assert bounded(d), f"{key}: a number needs a lower and an upper bound"
    elif k == (str,):
        assert d.text or d.pattern, f"{key}: text needs a kind (name, path, line) or a pattern"
    else:  # lists
        assert d.max_len is not None and d.each is not None, \
            f"{key}: a list needs a length and an element domain"
        assert d.each.choices or bounded(d.each) or d.each.text or d.each.pattern, key


def test_the_default_config_is_inside_every_domain():
    for key, f, hint in leaves():
        optional = type(None) in typing.get_args(hint)
        assert domain.check(key, select(Config(), key), domain.domain_of(f), optional) is None, key


@pytest.mark.parametrize("key", [k for k, _, _ in leaves()])
def test_hostile_values_are_refused_in_one_sentence_or_inside_the_domain(key):
    """The loader is the one place that refuses a value (the CLI prints its sentence, exit 2:
    tests/test_bad_input.py); whatever it accepts is inside the field's declared domain."""
    f, hint = {k: (f, h) for k, f, h in leaves()}[key]
    for raw in HOSTILE:
        try:
            got = select(load([], [f"{key}={raw}"]), key)
        except ConfigError as e:
            sentence = str(e)
            assert "\n" not in sentence and key.split(".")[-1] in sentence, (key, raw, sentence)
            continue
        optional = type(None) in typing.get_args(hint)
        assert domain.check(key, got, domain.domain_of(f), optional) is None, (key, raw, got)
        assert not (isinstance(got, float) and not math.isfinite(got)), (key, raw, got)
        assert not (isinstance(got, int) and abs(got) >= 10**12 and not isinstance(got, bool)), (key, raw)


def test_domain_sentences_name_the_key_the_value_and_what_is_allowed():
    cases = {"optim.lr=nan": "optim.lr must be a number > 0 and < 100, got nan",
             "data.shape=[3]": "data.shape must be a list of exactly 3: a whole number >= 1",
             "data.std=[0,0,0]": "data.std must be null or a list of 1 to 3: a number > 0",
             "trainer.max_steps=0": "trainer.max_steps must be -1 or a whole number >= 1",
             "model.preact=3": "model.preact must be true or false, got 3",
             "seed=1.5": "seed must be a whole number >= 0 and < 4294967296, got 1.5",
             "data.split_seed=99999999999999999999999": "got 99999999999999999999999$",
                 "seed=" + "9" * 1000: "got a whole number of 1000 digits",
             "trainer.channels_last=maybe": "one of true, false, auto, got 'maybe'"}
    for override, expected in cases.items():
        with pytest.raises(ConfigError, match=expected.replace("[", r"\[").replace("+", r"\+")):
            load([], [override])
