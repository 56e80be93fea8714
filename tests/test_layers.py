"""The package's shape, checked: imports point down (import-linter's layers contract in
pyproject.toml), no reslab import hides inside a function (the CLI imports only the module of the
command it runs, reslab.commands.<name>, so `reslab config` does not import Lightning),
modules stay small, and `import reslab` and the config path import no heavy library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT

PACKAGE = ROOT / "platform" / "reslab"
MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_layers_contract_holds():
    lint = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"]
    out = subprocess.run(lint, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and "BROKEN" not in out.stdout, out.stdout[-3000:]


@pytest.mark.parametrize("path", MODULES,
                         ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_reslab_import_inside_a_function(path):
    tree = ast.parse(path.read_text())
    hidden = [f"line {node.lineno}" for fn in ast.walk(tree)
              if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
              for node in ast.walk(fn)
              if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("reslab")
              or isinstance(node, ast.Import) and any(a.name.startswith("reslab") for a in node.names)]
    assert not hidden, f"{path.name}: a reslab import inside a function ({', '.join(hidden)})"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_over_300_lines(path):
    assert len(path.read_text().splitlines()) <= 300


def test_the_config_path_imports_no_heavy_library():
    code = ("import sys, reslab.cli, reslab.commands.config, reslab.config.load, reslab.models, "
            "reslab.data; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'torch', 'lightning', 'torchvision', 'ray', 'wandb', 'matplotlib'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_top_level_holds_only_leaf_utilities():
    """Packages by concern (DESIGN.md §1): besides the entry points, only the few leaf utilities
    every layer uses sit directly in reslab/; anything else belongs in its concern's package."""
    entry = {"__init__.py", "__main__.py", "cli.py"}
    top = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in entry)
    assert len(top) <= 6, top


PACKAGES = sorted(p.parent for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE)


def top_level_names(tree: ast.Module) -> tuple[set[str], list[str] | None]:
    """The names a module binds at its top (defs, classes, assignments, imports) and its
    `__all__`, read without importing it (so the check imports no torch)."""
    bound, exported = set(), None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = {t.id for t in targets if isinstance(t, ast.Name)}
            bound |= names
            if "__all__" in names:
                exported = list(ast.literal_eval(node.value))
    return bound, exported


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_every_name_in_a_package_all_exists(package):
    """Each package says what other packages use of it (`__all__`), and each name is bound in
    its __init__ or is one of its modules."""
    bound, exported = top_level_names(ast.parse((package / "__init__.py").read_text()))
    assert exported, f"{package.name}/__init__.py has no __all__"
    missing = [n for n in exported if n not in bound and not (package / f"{n}.py").is_file()
               and not (package / n / "__init__.py").is_file()]
    assert not missing, f"{package.name}.__all__ names what does not exist: {missing}"
