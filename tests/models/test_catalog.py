"""The catalogue (torch-free, so listing and validating never import torch) states what each
builder takes; this test holds it to the builders' real signatures, so a variant's options are
declared once in effect: change a builder and the catalogue must follow."""

from __future__ import annotations

import importlib
import inspect

import pytest

from reslab.config.validate import BUILDER_KEYS
from reslab.models import MODELS, info


def accepted(fn) -> set[str]:
    """The keyword names `fn` takes, following **kwargs into the class it forwards them to."""
    params = inspect.signature(fn).parameters
    names = {n for n, p in params.items() if p.kind is not p.VAR_KEYWORD}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        target = inspect.signature(fn).return_annotation
        module = importlib.import_module(fn.__module__)
        cls = getattr(module, target) if isinstance(target, str) else target
        names |= {n for n, p in inspect.signature(cls.__init__).parameters.items()
                  if p.kind is p.POSITIONAL_OR_KEYWORD and n != "self"}
    return names


@pytest.mark.parametrize("name", MODELS.names())
def test_catalogue_options_are_the_builders_config_keywords(name):
    entry = info(name)
    module, attr = entry.builder.split(":")
    builder = getattr(importlib.import_module(f"reslab.models.{module}"), attr)
    takes = accepted(builder)
    assert set(entry.options) == takes & set(BUILDER_KEYS), (name, sorted(entry.options), sorted(takes))
    assert set(entry.fixed) <= takes, (name, entry.fixed)
