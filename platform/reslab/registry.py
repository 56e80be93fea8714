"""One small registry: names map to builders, with metadata for listings and validation."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reslab.errors import UserError


class RegistryError(UserError, KeyError):
    """An unknown or duplicate name."""


@dataclass(frozen=True)
class Entry:
    name: str
    builder: Callable[..., Any]
    meta: dict[str, Any] = field(default_factory=dict)


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, builder: Callable[..., Any], **meta: Any) -> Callable[..., Any]:
        if name in self._entries:
            raise RegistryError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = Entry(name, builder, meta)
        return builder

    def get(self, name: str) -> Entry:
        if name not in self._entries:
            raise RegistryError(f"unknown {self.kind} '{name}'{suggest(name, self._entries)}")
        return self._entries[name]

    def names(self, pattern: str = "*") -> list[str]:
        return [n for n in self._entries if fnmatch.fnmatchcase(n, pattern)]

    def __contains__(self, name: str) -> bool:
        return name in self._entries


def did_you_mean(word: str, choices) -> str:
    """' (did you mean 'x'?)' for the closest choice, or ''."""
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def suggest(word: str, choices) -> str:
    """The closest choice, or the whole list when it is short."""
    choices = list(choices)
    if hint := did_you_mean(word, choices):
        return hint
    return f" (choose from {', '.join(map(str, choices))})" if len(choices) <= 12 else ""
