"""One small registry: names map to entries (a model's `ModelInfo`, a dataset's `DatasetInfo`)."""

from __future__ import annotations

import difflib
import fnmatch
from typing import Generic, TypeVar

from reslab.errors import UserError

T = TypeVar("T")


class RegistryError(UserError, KeyError):
    """An unknown or duplicate name."""


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise RegistryError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
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
