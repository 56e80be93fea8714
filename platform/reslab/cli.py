"""The `reslab` command: thin argument parsing that dispatches to the modules.

Bad input exits with status 2 and one sentence on stderr; nothing is written for a refused
command."""

from __future__ import annotations

import argparse
import functools
import glob
import importlib
import os
import sys
from collections.abc import Callable

from reslab import __version__, environment
from reslab.compat import ParagraphFormatter, parser_actions
from reslab.config import recipes as shipped
from reslab.errors import (
    Interrupted,
    Terminated,
    TrainingError,
    UserError,
    machine_fault,
    one_line_warnings,
    signals_held,
    sigterm_unwinds,
)

EPILOG = """\
examples:
  reslab train                                   ResNet-20 on the embedded digits (quickstart)
  reslab train experiment/cifar10_paper model.depth=56 data.root=/data   a shipped recipe by name
  reslab train --resume runs/quickstart/20261122-101500-a1b2c3
  reslab test runs/quickstart/20261122-101500-a1b2c3
  reslab models 'resnet*'
  reslab config configs/quickstart.yaml model.shortcut=none
  reslab submit configs/quickstart.yaml configs/slurm/local.yaml --dry-run
  reslab sweep sweeps/degradation_digits.yaml && reslab compare runs/degradation_digits
  reslab bench configs/bench/cifar_cpu.yaml model.depth=56
  reslab export runs/quickstart/20261122-101500-a1b2c3 --format onnx

Arguments containing '=' are KEY=VALUE overrides (see `reslab config` for every key); the
others are recipe files, or the names of the recipes shipped with reslab (`reslab config
--list`), merged in order onto the defaults. Each command's --help has its own examples."""

RUN = "runs/quickstart/20261122-101500-a1b2c3"
EXAMPLES = {
    "train": ["reslab train                                  the quickstart: ResNet-20 on digits",
              "reslab train experiment/cifar10_paper data.root=/data model.depth=110",
              "reslab train my_recipe.yaml trainer.max_epochs=5 seed=1",
              f"reslab train --resume {RUN} trainer.max_epochs=40"],
    "test": [f"reslab test {RUN}",
             f"reslab test {RUN}/checkpoints/last.ckpt data.batch_size=512"],
    "models": ["reslab models", "reslab models 'resnet*'", "reslab models 'plain*'"],
    "config": ["reslab config                                 the quickstart, resolved",
               "reslab config experiment/cifar10_paper model.depth=56 model.shortcut=B",
               "reslab config --list                          the shipped recipe names"],
    "submit": ["reslab submit quickstart slurm/local --dry-run",
               "reslab submit experiment/cifar10_paper slurm.partition=gpu slurm.nodes=2",
               "reslab submit quickstart slurm/local --array seed=0,1,2",
               "reslab submit slurm/local --sweep degradation_digits"],
    "sweep": ["reslab sweep degradation_digits --dry-run      a shipped spec by name",
              "reslab sweep sweeps/depth_shortcut.yaml data.root=/data --cpus 8",
              "reslab sweep degradation_digits --resume"],
    "compare": ["reslab compare runs/degradation_digits",
                "reslab compare runs/a runs/b --by model.depth,model.shortcut --metric test/err",
                "reslab compare --wandb my-team/reslab"],
    "bench": ["reslab bench bench/cifar_cpu model.depth=56", "reslab bench --steps 50 --json"],
    "status": ["reslab status", f"reslab status {RUN}", "reslab status --root /scratch/runs"],
    "export": [f"reslab export {RUN}",
               f"reslab export {RUN} --format onnx --out deploy/resnet20.onnx",
               f"reslab export {RUN}/checkpoints/last.ckpt --format state_dict"],
}


class Parser(argparse.ArgumentParser):
    """Usage errors as one sentence (what is wrong, and where the help is), exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def whole(most: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from 1 to `most` (None: no upper bound)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if value < 1 or (most is not None and value > most):
            allowed = "at least 1" if most is None else f"from 1 to {most}"
            raise argparse.ArgumentTypeError(f"must be {allowed}, got {value}")
        return value
    return parse


def ray_address(text: str) -> str:
    """An argparse type: a Ray cluster's HOST:PORT (its GCS, as `ray start --head` prints it)."""
    host, _, port = text.rpartition(":")
    if not host or any(c.isspace() or not c.isprintable() for c in host) \
            or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a Ray cluster's HOST:PORT (port 1 to 65535, "
                                         f"e.g. 10.0.0.5:6379), got {text!r}")
    if ":" in host or "[" in host:  # ray.init('[::1]:6379') connects to another address
        raise argparse.ArgumentTypeError(f"must be a host name or an IPv4 address and a port "
                                         f"(Ray does not connect to IPv6 addresses), got {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="reslab", description="Residual-network experiments: recipes, SLURM, sweeps, W&B.",
        epilog=EPILOG, formatter_class=ParagraphFormatter)
    p.add_argument("--version", action="version", version=f"reslab {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)

    t = sub.add_parser("train", help="train a recipe (default: configs/quickstart.yaml)",
                       description="Train a recipe; prints the run directory and a summary.")
    t.add_argument("items", nargs="*", metavar="RECIPE.yaml|KEY=VALUE")
    t.add_argument("--resume", metavar="RUN_DIR",
                   help="continue a run from its last checkpoint (same directory, same W&B run)")

    e = sub.add_parser("test", help="evaluate a run's best checkpoint (or the one given) on the "
                       "test split")
    e.add_argument("run", metavar="RUN_DIR|CKPT")
    e.add_argument("overrides", nargs="*", default=[], metavar="KEY=VALUE")  # else "required"

    m = sub.add_parser("models", help="list registered models: params and MACs")
    m.add_argument("pattern", nargs="?", default="*", help="glob, e.g. 'resnet*'")

    s = sub.add_parser("submit", help="submit a recipe as a SLURM job (sbatch)",
                       description="Render an sbatch script from the recipe (the slurm section "
                       "plus a cluster profile such as configs/slurm/local.yaml), write it into "
                       "the run's slurm/ folder and submit it. The job survives preemption: "
                       "USR1 -> checkpoint at the next step -> requeue -> resume.")
    s.add_argument("items", nargs="*", metavar="RECIPE.yaml|KEY=VALUE")
    s.add_argument("--dry-run", action="store_true", help="print the script, submit nothing")
    s.add_argument("--sweep", metavar="SPEC.yaml", action="append",
                   help="submit a sweep: a Ray cluster over the job's nodes runs its trials")
    s.add_argument("--array", metavar="KEY=V1,V2,...", action="append",
                   help="one sbatch --array job, a task (own run dir, own W&B run) per value")

    w = sub.add_parser("sweep", help="run a sweep spec with Ray Tune",
                       description="Run the trials of a sweep spec (sweeps/README.md) with Ray "
                       "Tune, each through the same training path; writes sweep.csv and "
                       "best_config.yaml in <run.root>/<sweep name>/.")
    w.add_argument("spec", metavar="SPEC.yaml")
    w.add_argument("items", nargs="*", metavar="RECIPE.yaml|KEY=VALUE",
                   help="extra recipes (e.g. a cluster profile) and overrides of the base config")
    w.add_argument("--dry-run", action="store_true", help="print the trials and resource plan")
    w.add_argument("--resume", action="store_true",
                   help="continue a killed sweep: finished trials are not rerun")
    w.add_argument("--address", type=ray_address, metavar="HOST:PORT",
                   help="join this Ray cluster instead of starting a private one")
    w.add_argument("--cpus", type=whole(), help="CPUs for the private Ray (default: all)")

    cp = sub.add_parser("compare", help="tables and figures over runs and sweeps (offline)",
                        description="Group runs (run or sweep directories) by the keys that "
                        "vary between them, print mean ± std over seeds, and write curves.png, "
                        "final.png, diagnostics.png (if measured) and report.html.")
    cp.add_argument("dirs", nargs="*", metavar="DIR")
    cp.add_argument("--by", metavar="KEY,KEY", help="group by these config keys "
                    "(default: the keys that vary, e.g. model.depth,model.shortcut)")
    cp.add_argument("--metric", help="main metric (default val/err; val/psnr for super-resolution)")
    cp.add_argument("--out", metavar="DIR", help="where figures go (default: a folder named "
                    "by the inputs in FIRST_DIR/compare/, e.g. sweep-0123456789ab)")
    cp.add_argument("--force", action="store_true",
                    help="write into an --out folder that is not empty (never into run records)")
    cp.add_argument("--wandb", metavar="ENTITY/PROJECT",
                    help="read runs through the W&B API (WANDB_BASE_URL, WANDB_API_KEY) instead "
                    "of directories; same table, figures and report (default --out ./compare)")
    cp.add_argument("--group", help="with --wandb: only this W&B group (a sweep, an array, run.name)")
    cp.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                    help="with --wandb: only runs whose config or summary has KEY=VALUE (repeatable)")
    cp.add_argument("--publish", action="store_true",
                    help="with --wandb: also save a W&B Report (needs wandb-workspaces)")

    b = sub.add_parser("bench", help="images/s of reslab's training path vs a plain PyTorch loop",
                       description="Time steady-state training steps of reslab's path (Trainer, "
                       "callbacks, logging), of a plain PyTorch loop with the same model, data, "
                       "optimizer, precision and fast path, and of the naive eager NCHW loop, "
                       "taking turns (every step on a CPU, every round on a GPU); each loop's "
                       "images/s per round (min/median/max) and the ratios, printed only when "
                       "the loops did the same work (else exit 1 with what differed); then the "
                       "input pipelines.")
    b.add_argument("items", nargs="*", metavar="RECIPE.yaml|KEY=VALUE")
    b.add_argument("--steps", type=whole(100_000), default=30,
                   help="timed steps per round (default 30, at most 100000)")
    b.add_argument("--rounds", type=whole(1000), default=3,
                   help="rounds, each one images/s per loop (default 3, at most 1000)")
    b.add_argument("--warmup", type=whole(10_000), default=12,  # reslab.bench.WARMUP
                   help="untimed steps of each loop before the first round, from 1 to 10000 "
                        "(default 12): the first steps allocate memory and pick kernels")
    b.add_argument("--threads", type=whole(os.cpu_count() or 1),
                   help="torch CPU threads, at most this machine's CPUs (default: torch's; 1 is "
                        "steadier on a shared machine)")
    b.add_argument("--no-pipelines", dest="pipelines", action="store_false",
                   help="skip timing the input pipelines alone")
    b.add_argument("--json", action="store_true", help="print the result as JSON")

    st = sub.add_parser("status", help="queue state, restarts, epoch and log tail of submitted runs")
    st.add_argument("runs", nargs="*", metavar="RUN_DIR")
    st.add_argument("--root", default="runs", help="where to look when no RUN_DIR is given")

    c = sub.add_parser("config", help="print the resolved, validated config")
    c.add_argument("items", nargs="*", metavar="RECIPE.yaml|KEY=VALUE")
    c.add_argument("--list", action="store_true", help="list the shipped recipe and sweep names")

    x = sub.add_parser("export", help="a run's model as TorchScript, ONNX or a state dict",
                       description="Write a run's network (best.ckpt, else last.ckpt, or the "
                       "checkpoint given) as a deployable file, with a JSON beside it that records "
                       "the preprocessing (normalisation, input size), the classes and the model; "
                       "then check that the exported model's outputs equal the checkpoint's.")
    x.add_argument("run", metavar="RUN_DIR|CKPT")
    x.add_argument("--format", default="torchscript", choices=("torchscript", "onnx", "state_dict"),
                   help="default torchscript; onnx needs `pip install 'reslab[export]'`")
    x.add_argument("--out", metavar="PATH", help="the model file, or a folder for it "
                   "(default: RUN_DIR/export/model.<format>.pt or model.onnx)")
    x.add_argument("--force", action="store_true",
                   help="replace an existing model file and its JSON (never run records)")
    for name, parser in sub.choices.items():
        parser.formatter_class = ParagraphFormatter
        parser.epilog = "examples:\n" + "\n".join(f"  {line}" for line in EXAMPLES[name])
        for action in parser_actions(parser):  # what shell completion offers (argcomplete)
            if action.dest in ("items", "spec"):
                kind = "sweep spec" if action.dest == "spec" else "recipe"
                action.completer = functools.partial(complete_recipe, kind=kind)
    return p


def complete_recipe(prefix: str, kind: str, **_) -> list[str]:
    """Shipped names, YAML files and folders starting with `prefix`."""
    paths = [p + "/" if os.path.isdir(p) else p for p in glob.glob(glob.escape(prefix) + "*")]
    return [n for n in shipped.names(kind) if n.startswith(prefix)] + [
        p for p in paths if p.endswith(("/", ".yaml", ".yml"))]


def command(name: str):
    """The module of one subcommand (reslab.commands.<name>), imported when that command runs
    (`reslab config` does not pay for Lightning), with Ctrl-C and SIGTERM held until the import
    ends: one that landed inside numpy's import left it broken (a traceback, exit 1)."""
    with signals_held():
        return importlib.import_module(f"reslab.commands.{name}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # shell completion: README, "Shell completion"
        import argcomplete

        argcomplete.autocomplete(parser)
    # Recipes and KEY=VALUE may come after options too (`submit --dry-run x.yaml k=v`).
    args, extra = parser.parse_known_args(argv)
    if extra and (not hasattr(args, "items") or any(e.startswith("-") for e in extra)):
        prog = f"reslab {args.command}"  # the subcommand's options are the ones to look up
        parser.exit(2, f"{prog}: error: unrecognized arguments: {' '.join(extra)} (see "
                       f"`{prog} --help`)\n")
    if extra:
        args.items += extra
    terms: list[int] = []
    try:
        with sigterm_unwinds(terms), one_line_warnings(f"reslab {args.command}"):
            environment.check_numbers()  # Lightning reads some when imported: a traceback
            return command(args.command).run(args)
    except UserError as e:
        print(f"reslab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"reslab {args.command}: {e}", file=sys.stderr)
        return e.exit_code
    except TrainingError as e:
        print(f"reslab {args.command}: failed: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        if (fault := machine_fault(e)) is None:
            raise
        print(f"reslab {args.command}: failed: {fault}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        term = isinstance(e, Terminated) or bool(terms)  # Ray's core re-raises it as Ctrl-C
        resume = f"; resume with `reslab train --resume {e.run}`" if hasattr(e, "run") else ""
        print(f"reslab {args.command}: {'terminated' if term else 'interrupted'}{resume}",
              file=sys.stderr)
        return 143 if term else 130
