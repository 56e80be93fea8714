"""The docs cannot drift from the code: every command in README.md and docs/*.md runs.

Commands come from the ```bash and ```console blocks (```text blocks are illustrations). Each
`reslab` command runs in this process (`support.run_main`), in a temporary directory, on tiny
settings: fresh trains for one epoch of two batches, `--dry-run` for submit and sweep, a few
steps for bench. A command that needs what this machine lacks (CIFAR, ImageNet, your own
folders, a GPU) is checked with `reslab config` and the same arguments instead. A console block's
output must equal the command's. Anything else is in SKIP with the reason, and a command that is
neither run nor skipped fails."""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from reslab.config import recipes, schema
from support import ROOT, Result, run_main

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# Commands that cannot run in a test, by their first words, with the reason.
SKIP = {
    ("make", "run"): "installs the venv: what the whole suite runs in",
    ("make", "test"): "the whole suite, this test included",
    ("make", "test-fast"): "the whole suite without SLURM and Ray",
    ("make", "lint"): "CI runs it (.ci/run)",
    ("make", "docs"): "CI runs it (.ci/run)",
    ("sudo",): "starts the local SLURM cluster as root (tests/slurm does, marked slurm)",
    ("scancel",): "needs a running SLURM job (tests/slurm/test_cluster.py)",
    ("scontrol",): "needs a running SLURM job (tests/slurm/test_cluster.py)",
    ("pip",): "builds and installs a wheel (tests/test_wheel.py does)",
    ("cd",): "the installed wheel's quickstart (tests/test_wheel.py does)",
    ("eval",): "shell completion in the user's shell",
    ("export",): "sets the user's environment",
    ("python", "-c"): "downloads torchvision's ImageNet weights (internet)",
    ("wandb", "sync"): "uploads to W&B's servers (internet, an account)",
    ("WANDB_MODE=online", "reslab"): "logs to W&B's servers (internet, an account)",
    ("reslab", "compare", "--wandb"): "reads W&B's servers (tests/report/test_wandb_compare.py fakes them)",
}

# Paths the reader supplies, and what stands in for them here.
STAND_INS = {"configs/slurm/mycluster.yaml": "configs/slurm/local.yaml"}
BENCHMARK_FOLDERS = ("/data/benchmark/Set5", "/data/benchmark/Urban100")  # made tiny (HR/*.png)

TRAIN = ["trainer.max_epochs=1", "trainer.limit_train_batches=2"]
SR_TRAIN = ["model.depth=3"]  # whole-image validation of a 20-layer net costs seconds
BENCH = ["data.batch_size=16", "--steps", "2", "--rounds", "1", "--warmup", "1", "--no-pipelines"]
SYNTHETIC = ["data.size=256"]  # the bench's CIFAR-size data: 8192 images by default
ID = r"\d{8}-\d{6}-[0-9a-f]{6}"  # a run id: 20261122-185145-af5d58
RUN_ID = re.compile(rf"^(?P<dir>runs/[\w.-]+)/{ID}(?P<rest>/.*)?$")
VALUED = {"--array", "--sweep", "--steps", "--rounds", "--warmup", "--threads", "--cpus",
          "--address", "--resume"}  # options that take a value
NOT_HERE = {"cifar10", "cifar100", "imagefolder", "sr_folder"}  # data.name: files not here


@dataclass
class Command:
    where: str                # README.md:12
    words: list[str]
    output: str | None = None  # a console block's expected output


def commands(path: Path) -> list[Command]:
    """The commands of `path`'s bash and console blocks, in order."""
    found, block, lines = [], None, path.read_text().splitlines()
    for n, line in enumerate(lines, 1):
        if line.startswith("```"):
            block = line[3:].strip() if block is None else None
        elif block == "bash" and line.strip():
            found += [Command(f"{path.name}:{n}", words) for words in split(line)]
        elif block == "console" and line.startswith("$ "):
            found.append(Command(f"{path.name}:{n}", shlex.split(line[2:], comments=True), ""))
        elif block == "console" and found and found[-1].output is not None:
            found[-1].output += line.rstrip() + "\n"
    return found


def split(line: str) -> list[list[str]]:
    """`a && b  # comment` -> [[a...], [b...]]."""
    words = shlex.split(line, comments=True)
    parts = [list(g) for is_and, g in itertools.groupby(words, lambda w: w == "&&") if not is_and]
    return [p for p in parts if p]


def all_commands() -> list[Command]:
    return [c for path in DOCS for c in commands(path)]


def skip_reason(words: list[str]) -> str | None:
    return next((why for head, why in SKIP.items() if tuple(words[:len(head)]) == head), None)


class Docs:
    """Runs the documented commands in a temporary directory, remembering what they made."""

    def __init__(self, tmp: Path):
        self.tmp = tmp
        for folder in BENCHMARK_FOLDERS:
            hr_folder(tmp / folder.lstrip("/"))

    def run(self, c: Command) -> Result:
        words = [self.stand_in(w) for w in c.words]
        sub, args = words[1], words[2:]
        if sub == "train" and "--resume" not in args:
            return self.train(args)
        if sub == "train":
            return run_main("train", *self.resumed(args))
        if sub in ("submit", "sweep"):
            return self.dry_run(sub, args)
        if sub == "bench":
            cfg = self.config(items(args))
            tiny = BENCH + (SYNTHETIC if cfg["data"]["name"] == "synthetic" else []) + \
                (["model.depth=8"] if cfg["model"]["name"] == "cifar_resnet" else [])
            return self.if_here("bench", items(args), args + tiny, cfg)
        if sub == "compare":
            for d in args:
                if d.startswith("runs/") and not (self.tmp / d).exists():
                    self.sweep_stand_in(d.removeprefix("runs/"))
        # The docs compare and export the same runs more than once: a repeat writes over.
        return run_main(*words[1:], *["--force"] * (sub in ("compare", "export")))

    def stand_in(self, word: str) -> str:
        if m := RUN_ID.match(word):
            runs = sorted(p for p in (self.tmp / m["dir"]).glob("*") if re.fullmatch(ID, p.name))
            assert runs, f"no run under {m['dir']} for {word}: a command must make it first"
            return str(runs[-1]) + (m["rest"] or "")
        if word.split("=")[-1] in BENCHMARK_FOLDERS:
            key, folder = word.split("=")
            return f"{key}={self.tmp / folder.lstrip('/')}"
        return STAND_INS.get(word, word)

    def train(self, args: list[str]) -> Result:
        cfg = self.config(args)
        tiny = TRAIN + (SR_TRAIN if cfg["model"]["name"] in ("vdsr", "edsr") else [])
        return self.if_here("train", args, args + tiny, cfg)

    def resumed(self, args: list[str]) -> list[str]:
        """A resume trains one epoch more than the run has, whatever epochs the docs give."""
        run = Path(args[args.index("--resume") + 1])
        done = json.loads((run / "summary.json").read_text())["epoch"]
        return [f"trainer.max_epochs={done + 1}" if a.startswith("trainer.max_epochs=") else a
                for a in args]

    def dry_run(self, sub: str, args: list[str]) -> Result:
        args = args if "--dry-run" in args else [*args, "--dry-run"]
        if sub == "submit" and "--sweep" not in args:
            return self.if_here("submit", items(args), args)
        # A sweep's dry run refuses what the run would: a resume needs the sweep (its stand-in),
        # a first run a place that holds none (the docs' compare made stand-ins there).
        if "--resume" in args:
            name = Path(args[0]).stem
            if not (self.tmp / "runs" / name).exists():
                self.sweep_stand_in(name)
        else:
            args = [*args, f"run.root={self.tmp / 'first-runs'}"]
        return run_main(sub, *args)

    def if_here(self, sub: str, config_args: list[str], args: list[str], cfg=None) -> Result:
        """`reslab SUB ARGS`, or where the config needs what is not here, its `reslab config`."""
        cfg = cfg or self.config(config_args)
        gpu = cfg["trainer"]["accelerator"] in ("gpu", "cuda") and not torch.cuda.is_available()
        weights = cfg["model"]["weights"]  # not a path here: torchvision's, from the internet
        download = weights != "none" and not Path(weights).exists()
        if gpu or download or cfg["data"]["name"] in NOT_HERE:
            return Result(0, "", "")  # self.config checked it
        return run_main(sub, *args)

    def config(self, args: list[str]) -> dict:
        r = run_main("config", *args)
        assert r.returncode == 0, r.stderr
        return yaml.safe_load(r.stdout)

    def sweep_stand_in(self, name: str) -> None:
        """Two tiny runs of a sweep's first grid points in place of the sweep (Ray is tested in
        tests/sweep): what a compare of its directory reads."""
        spec = yaml.safe_load(recipes.shipped(name, "sweep spec").read_text())
        base = spec["base"].get("recipes", []) + spec["base"].get("overrides", [])
        axes = [[f"{k}={v}" for v in values] for k, values in spec["space"].items()]
        for point in itertools.islice(itertools.product(*axes), 2):
            r = self.train([*base, *point, f"run.root=runs/{name}"])
            assert r.returncode == 0, r.stderr


def items(args: list[str]) -> list[str]:
    """The recipes and KEY=VALUE items of a command line, without its options."""
    out, value = [], False
    for a in args:
        if not value and not a.startswith("--"):
            out.append(a)
        value = not value and a in VALUED
    return out


def hr_folder(path: Path) -> None:
    """A benchmark folder in Set5's layout: HR/*.png."""
    (path / "HR").mkdir(parents=True)
    for i in range(2):
        Image.effect_noise((48, 48), 40 + i).convert("RGB").save(path / "HR" / f"img{i}.png")


@pytest.fixture
def docs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "disabled")  # W&B's own files are tested elsewhere
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # steadier than 2 on a shared machine, and as fast for tiny nets
    yield Docs(tmp_path)
    torch.set_num_threads(threads)


def order(cmds: list[Command]) -> list[Command]:
    """Fresh trains first, so every run a later command names exists; otherwise in order."""
    fresh = [c for c in cmds if c.words[:2] == ["reslab", "train"] and "--resume" not in c.words]
    return fresh + [c for c in cmds if c not in fresh]


@pytest.mark.slow
def test_every_documented_command_runs(docs):
    failed, cmds = [], all_commands()
    unknown = [c.where for c in cmds if not skip_reason(c.words) and c.words[0] != "reslab"]
    assert not unknown, f"commands neither run by this test nor in its SKIP list: {unknown}"
    results = {}  # a command the docs show twice (README and a page) runs once
    for c in order([c for c in cmds if not skip_reason(c.words)]):
        try:
            r = results[key] if (key := tuple(c.words)) in results else docs.run(c)
        except AssertionError as e:  # a stand-in or its config check failed
            failed.append(f"{c.where}: {shlex.join(c.words)}: {e}")
            continue
        results[key] = r
        if r.returncode != 0:
            failed.append(f"{c.where}: {shlex.join(c.words)} -> exit {r.returncode}: "
                          f"{r.stderr.strip()[-300:]}")
        elif c.output is not None and lines(r.stdout) != lines(c.output):
            failed.append(f"{c.where}: {shlex.join(c.words)} printed\n{r.stdout}not\n{c.output}")
    assert not failed, "\n".join(failed)


def lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.strip("\n").splitlines()]


def test_every_skip_entry_is_still_documented():
    heads = {head for head in SKIP
             if any(tuple(c.words[:len(head)]) == head for c in all_commands())}
    assert heads == set(SKIP), f"SKIP entries no doc uses: {set(SKIP) - heads}"


def test_the_extraction_sees_commands_comments_and_output(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("```bash\nreslab train a=1  # why\nx && reslab test 'r *'\n```\n"
                    "```console\n$ reslab models 'v*'\nname\nvdsr\n```\n```text\nreslab no\n```\n")
    got = [(c.where, c.words, c.output) for c in commands(page)]
    assert got == [("page.md:2", ["reslab", "train", "a=1"], None),
                   ("page.md:3", ["x"], None), ("page.md:3", ["reslab", "test", "r *"], None),
                   ("page.md:6", ["reslab", "models", "v*"], "name\nvdsr\n")]


def schema_keys(cls=schema.Config, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
        if dataclasses.is_dataclass(default):
            keys += schema_keys(type(default), f"{prefix}{f.name}.")
        else:
            keys.append(prefix + f.name)
    return keys


def test_every_config_key_is_documented_and_no_other():
    text = (ROOT / "docs" / "configuration.md").read_text()
    keys = schema_keys()
    missing = [k for k in keys if f"`{k}`" not in text]
    sections = "|".join(re.escape(k.rsplit(".", 1)[0]) for k in keys if "." in k)
    named = set(re.findall(rf"`((?:{sections})\.[a-z_]+)`", text))
    assert not missing, f"keys docs/configuration.md does not document: {missing}"
    assert not named - set(keys), f"docs/configuration.md names keys that do not exist: " \
                                  f"{sorted(named - set(keys))}"


def test_readme_is_short_starts_with_make_run_and_lists_every_recipe():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    assert [c.words for c in commands(ROOT / "README.md")[:2]] == [["make", "run"], ["make", "test"]]
    table = readme[readme.index("## Recipes"):readme.index("## The keys people change")]
    missing = [n for n in recipes.names() if f"`{n}`" not in table]
    assert not missing, f"recipes README's table leaves out: {missing}"


def test_readme_links_point_at_files():
    readme = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    missing = [t for t in links if "://" not in t and not (ROOT / t).exists()]
    assert links and not missing, missing


def test_make_docs_builds_the_site_and_fails_on_a_broken_link(tmp_path):
    """What CI runs (`make docs`) on a copy of the docs: it passes, and a broken link fails it
    (`mkdocs build --strict --quiet` passes with one: --quiet drops the warnings --strict counts)."""
    recipe = re.search(r"^docs:.*\n\t(.+)$", (ROOT / "Makefile").read_text(), re.M)[1]
    command = recipe.replace("$(VENV)", str(Path(sys.executable).parent.parent))
    shutil.copy(ROOT / "mkdocs.yml", tmp_path)
    for folder in ("docs", "sweeps"):  # sweeps/README.md is included in docs/sweeps.md
        shutil.copytree(ROOT / folder, tmp_path / folder)

    def build() -> subprocess.CompletedProcess:
        return subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True,
                              timeout=120)

    built = build()
    assert built.returncode == 0 and (tmp_path / "site" / "index.html").is_file(), built.stderr
    with (tmp_path / "docs" / "index.md").open("a") as page:
        page.write("\n[a page that is not there](missing.md)\n")
    broken = build()
    assert broken.returncode != 0 and "missing.md" in broken.stderr


def test_recipes_compose_as_configuration_md_says(tmp_path, monkeypatch):
    """docs/configuration.md: no recipe file = the quickstart; a recipe file starts from the
    schema's defaults; the paper's ResNet-110 warm-up comes only with cifar10_resnet110."""
    monkeypatch.chdir(tmp_path)
    Path("my.yaml").write_text("model:\n  depth: 8\n")

    def resolved(*args) -> dict:
        r = run_main("config", *args)
        assert r.returncode == 0, r.stderr
        c = yaml.safe_load(r.stdout)
        return {"depth": c["model"]["depth"], "schedule": c["optim"]["schedule"],
                "wd": c["optim"]["weight_decay"], "name": c["run"]["name"],
                "warmup_lr": c["optim"]["warmup_lr"]}

    quickstart = {"schedule": "onecycle", "wd": 5e-4, "name": "quickstart", "warmup_lr": None}
    assert resolved("model.depth=8") == {"depth": 8, **quickstart}
    assert resolved("quickstart", "my.yaml") == {"depth": 8, **quickstart}
    assert resolved("my.yaml") == {"depth": 8, "schedule": "cosine", "wd": 1e-4,
                                   "name": "default", "warmup_lr": None}
    assert resolved("experiment/cifar10_paper", "model.depth=110")["warmup_lr"] is None
    assert resolved("experiment/cifar10_paper", "experiment/cifar10_resnet110")["warmup_lr"] == 0.01


def test_every_test_the_docs_cite_exists():
    """docs/reliability.md names the test behind each promise: a renamed test left a citation of
    one that no longer existed."""
    cited = {m for doc in DOCS for m in re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", doc.read_text())}
    assert len(cited) > 20
    missing = [f"{path}::{name}" for path, name in cited
               if not re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.M)]
    assert not missing, missing
