"""What values a config key may take. Each field of the schema declares its domain beside it,
`lr: float = value(0.1, gt=0, lt=100)`, and `check` is the one place that enforces a domain, so a
key cannot be added without saying what it accepts. Imports nothing from reslab.

Numbers are finite (never nan or inf) and bounded on both sides; text is printable (no control,
zero-width or bidi characters, no NUL) and of a declared kind; lists have a length and a domain
for their elements."""

from __future__ import annotations

import dataclasses
import math
import re
import typing
import unicodedata
from dataclasses import dataclass, field
from typing import Any

NAME, PATH, LINE = "name", "path", "line"  # text kinds: one path component, a path, one line
MAX_PATH = 4096                            # bytes: Linux's PATH_MAX
MAX_NAME = 200                             # bytes: a directory name (255 at most) and a job name
MAX_LINE = 1000                            # characters: a tag, a shell line, a title


@dataclass(frozen=True)
class Domain:
    ge: float | None = None     # value >= ge
    gt: float | None = None     # value > gt
    le: float | None = None     # value <= le
    lt: float | None = None     # value < lt
    special: tuple = ()         # allowed besides the range (-1: no limit)
    choices: tuple = ()         # the allowed values
    text: str | None = None     # NAME | PATH | LINE
    pattern: str | None = None  # text: a regular expression the whole value must match
    shape: str = ""             # text: what the pattern allows, in words
    min_len: int = 0            # lists
    max_len: int | None = None
    each: Domain | None = None  # lists: every element's domain
    distinct: bool = False      # lists: no element twice
    increasing: bool = False    # lists: each element larger than the one before


def value(default: Any = None, **domain: Any):
    """A schema field with its domain: `value(0.1, gt=0, lt=100)`; a list default is copied per
    instance."""
    meta = {"domain": Domain(**domain)}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def domain_of(f) -> Domain | None:
    """The domain a dataclass field declares, None for a section (a nested dataclass)."""
    return f.metadata.get("domain")


def first_violation(section: Any, prefix: str = "") -> str | None:
    """The sentence for the first value of a schema instance (sections walked) outside the
    domain its field declares; None when every value is in its domain. A field that declares no
    domain and is no section is its owner's to check (a sweep's `space`)."""
    hints = typing.get_type_hints(type(section))
    for f in dataclasses.fields(section):
        x, key, d = getattr(section, f.name), prefix + f.name, domain_of(f)
        if d is None:
            if dataclasses.is_dataclass(x) and (sentence := first_violation(x, key + ".")):
                return sentence
            continue
        kinds = typing.get_args(hints[f.name]) or (hints[f.name],)
        whole = int in kinds or list[int] in kinds
        if sentence := check(key, x, d, optional=type(None) in kinds, whole=whole):
            return sentence
    return None


def check(key: str, x: Any, d: Domain, optional: bool = False, whole: bool = False) -> str | None:
    """None when `x` is in `d`, else the sentence that refuses it (key, value, what is allowed).
    `whole`: the field holds integers (said so in the sentence)."""
    if x is None:
        return None if optional else f"{key} must be {describe(d, whole)}, got null"
    if not allows(x, d):
        null = "null or " if optional else ""
        return f"{key} must be {null}{describe(d, whole)}, got {shown(x)}"
    return None


def allows(x: Any, d: Domain) -> bool:
    if x in d.special and not isinstance(x, bool):
        return True
    if d.choices:
        return any(x == c and type(x) is type(c) or str(x) == str(c) and isinstance(c, str)
                   for c in d.choices)
    if isinstance(x, (list, tuple)):
        return in_list(x, d)
    if isinstance(x, bool):
        return True  # a bool field (its type was checked by the schema)
    if isinstance(x, (int, float)):
        return in_range(x, d)
    if isinstance(x, str):
        return is_text(x, d)
    return False


def in_range(x: float, d: Domain) -> bool:
    if isinstance(x, float) and not math.isfinite(x):
        return False
    return not ((d.ge is not None and x < d.ge) or (d.gt is not None and x <= d.gt)
                or (d.le is not None and x > d.le) or (d.lt is not None and x >= d.lt))


def in_list(x: list | tuple, d: Domain) -> bool:
    if len(x) < d.min_len or (d.max_len is not None and len(x) > d.max_len):
        return False
    if d.each is not None and not all(not isinstance(e, (list, dict)) and e is not None
                                      and allows(e, d.each) for e in x):
        return False
    if d.distinct and len(set(map(str, x))) != len(x):
        return False
    return not d.increasing or all(a < b for a, b in zip(x, x[1:]))


def is_text(x: str, d: Domain) -> bool:
    if not x or not printable(x):
        return False
    if d.text == NAME and ("/" in x or "\\" in x or x in (".", "..") or
                           len(x.encode()) > MAX_NAME):
        return False
    if d.text == PATH and len(x.encode()) > MAX_PATH or len(x) > MAX_LINE and d.text != PATH:
        return False
    return d.pattern is None or re.fullmatch(d.pattern, x) is not None


def printable(text: str) -> bool:
    """No control, format (zero-width, bidi), private-use or line/paragraph separator
    characters: what a terminal, a file name or a job script shows differently."""
    return not any(unicodedata.category(c)[0] == "C" or unicodedata.category(c) in ("Zl", "Zp")
                   for c in text)


def describe(d: Domain, whole: bool = False) -> str:
    """The domain in words: `a number > 0 and < 100`, `one of A, B`, `a list of ...`."""
    if d.choices:
        words = f"one of {', '.join(shown(c) if isinstance(c, bool) else str(c) for c in d.choices)}"
    elif d.each is not None or d.max_len is not None:
        words = f"a list of {length(d)}{describe(d.each, whole) if d.each else 'values'}"
        words += ", distinct" if d.distinct else ""
        words += ", increasing" if d.increasing else ""
    elif d.shape:
        words = d.shape
    elif d.text is not None:
        words = TEXT_WORDS[d.text]
    else:
        words = f"{'a whole number' if whole else 'a number'} {bounds(d)}"
    special = " or ".join(map(str, d.special))
    return f"{special} or {words}" if special else words


TEXT_WORDS = {NAME: f"a single printable path component (no '/', '.' or '..', at most "
                    f"{MAX_NAME} bytes)",
              PATH: f"a printable path (no control characters, at most {MAX_PATH} bytes)",
              LINE: f"printable text on one line (at most {MAX_LINE} characters)"}


def bounds(d: Domain) -> str:
    parts = [f"{op} {shown(v)}" for op, v in ((">=", d.ge), (">", d.gt), ("<=", d.le), ("<", d.lt))
             if v is not None]
    return " and ".join(parts)


def length(d: Domain) -> str:
    if d.max_len is not None and d.min_len == d.max_len:
        return f"exactly {d.min_len}: "
    if d.max_len is None:
        return f"at least {d.min_len}: " if d.min_len else ""
    return f"{d.min_len} to {d.max_len}: " if d.min_len else f"at most {d.max_len}: "


def shown(x: Any) -> str:
    """A value as the user would type it: numbers plainly (a huge one by its length), text quoted and
    escaped (a NUL or newline is never printed raw)."""
    if isinstance(x, bool) or x is None:
        return "null" if x is None else str(x).lower()
    if isinstance(x, int) and abs(x) >= 10**30:
        try:
            return f"a whole number of {len(str(abs(x)))} digits"
        except ValueError:  # Python writes out at most 4300 digits
            return "a whole number of more than 4300 digits"
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(shown(e) for e in x[:8]) + (", ..." if len(x) > 8 else "") + "]"
    if isinstance(x, str):
        return repr(x[:120] + ("..." if len(x) > 120 else ""))
    return str(x)
