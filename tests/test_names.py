"""Every dotted name `reslab.x.y` that README.md and docs/*.md mention resolves: a module, or an
attribute of one (a function, a class, a constant, a method). A doc that names a module or a
function that moved or was renamed fails here, with the list of names that do not resolve."""

from __future__ import annotations

import importlib
import re

from support import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `reslab.` then dotted identifiers; a trailing `.py`, `(` or `[` is not part of the name.
DOTTED = re.compile(r"(?<![\w./-])reslab(?:\.[A-Za-z_]\w*)+")


def mentioned() -> dict[str, list[str]]:
    """Each dotted name, with the documents that mention it."""
    names: dict[str, list[str]] = {}
    for doc in DOCS:
        for name in DOTTED.findall(doc.read_text()):
            name = name.removesuffix(".py")
            names.setdefault(name, []).append(doc.name)
    return names


def resolves(name: str) -> bool:
    """The longest importable module prefix, then attributes for the rest."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_the_docs_mention_names():
    names = mentioned()
    assert any(name.startswith("reslab.run.") for name in names), "no dotted name found"


def test_every_dotted_name_in_the_docs_resolves():
    broken = [f"{name} ({', '.join(sorted(set(docs)))})"
              for name, docs in sorted(mentioned().items()) if not resolves(name)]
    assert not broken, "names that do not resolve:\n" + "\n".join(broken)


# A source file a doc points to by its path inside the package (`run/trainer.py`, the layout
# and the "Where is X?" map of DESIGN.md): `tests/...` and top-level paths are not the package's.
SOURCE_PATH = re.compile(r"`((?:[a-z_]+/)+[a-z_]+\.py)`")


def test_every_source_file_the_design_names_exists():
    package = ROOT / "platform" / "reslab"
    text = (ROOT / "docs" / "DESIGN.md").read_text()
    paths = {p for p in SOURCE_PATH.findall(text) if not p.startswith(("tests/", "platform/"))}
    assert paths, "no source path found"
    missing = sorted(p for p in paths if not (package / p).is_file())
    assert not missing, f"DESIGN.md names files that do not exist: {missing}"
