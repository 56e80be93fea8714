"""Every subcommand's --help shows examples that the parser accepts; shell completion (argcomplete)
offers subcommands, options and the names of the shipped recipes and sweep specs."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from reslab import cli as reslab_cli
from reslab.config import recipes

SUBCOMMANDS = sorted(reslab_cli.build_parser()._subparsers._group_actions[0].choices)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_help_has_examples_the_parser_accepts(cli, name):
    r = cli(name, "--help")
    assert r.returncode == 0
    examples = r.stdout.split("\nexamples:\n")[1].splitlines()
    assert len(examples) >= 2, r.stdout
    parser = reslab_cli.build_parser()
    for line in examples:
        command = re.split(r"\s{2,}", line.strip())[0]  # the comment after two spaces
        argv = shlex.split(command)
        assert argv[:2] == ["reslab", name], line
        args, extra = parser.parse_known_args(argv[1:])
        assert args.command == name and not [e for e in extra if e.startswith("-")], line


def test_every_subcommand_has_an_entry_in_the_examples_table():
    assert sorted(reslab_cli.EXAMPLES) == SUBCOMMANDS


def complete(line: str, tmp_path) -> list[str]:
    """What the shell would offer for `line` (argcomplete's protocol, as bash drives it)."""
    out = tmp_path / "completions"
    env = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
           "_ARGCOMPLETE_STDOUT_FILENAME": str(out)}
    r = subprocess.run([sys.executable, "-m", "reslab"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return out.read_text().split("\013")


def test_shell_completion_offers_commands_options_and_shipped_names(tmp_path):
    pytest.importorskip("argcomplete")
    assert complete("reslab exp", tmp_path) == ["export "]
    assert complete("reslab export --fo", tmp_path) == ["--format", "--force"]
    assert complete("reslab export --form", tmp_path) == ["--format "]
    names = [n.strip() for n in complete("reslab train experiment/cifar10_p", tmp_path)]
    assert "experiment/cifar10_paper" in names
    assert names == [n for n in recipes.names() if n.startswith("experiment/cifar10_p")]
    assert complete("reslab sweep degradation_d", tmp_path) == ["degradation_digits "]
