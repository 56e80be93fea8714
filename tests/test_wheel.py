"""The wheel carries its recipes. Built from a copy of this tree (no download: --no-build-isolation
with the project venv's setuptools) and installed with --no-deps into a fresh venv that borrows the
project venv's libraries (torch is not installed twice) but not its editable reslab, `reslab
config`, `reslab sweep --dry-run` and a 1-step `reslab train` work from an empty directory with the
recipes inside the installed package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from support import ROOT, run_dir

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def sh(*args, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    r = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout, env=env)
    assert r.returncode == 0, f"{args}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # a copy: building writes build/ and *.egg-info, not into the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("configs", "sweeps"):
        shutil.copytree(ROOT / name, src / name)
    shutil.copytree(ROOT / "platform", src / "platform", symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
       "-q", "-w", tmp / "dist", src)
    wheel, = (tmp / "dist").glob("reslab-*.whl")
    venv = tmp / "venv"
    sh(sys.executable, "-m", "venv", "--without-pip", venv)
    site = Path(sh(venv / "bin/python", "-c", "import sysconfig; print(sysconfig.get_paths()"
                   "['purelib'])").stdout.strip())
    # The project venv's site-packages as a plain path: its .pth files (the editable reslab's
    # among them) are not processed, so the only reslab this venv can import is the wheel's.
    (site / "project_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    sh(sys.executable, "-m", "pip", "--python", venv / "bin/python", "install", "--no-deps",
       "--no-index", "--ignore-installed", "-q", wheel)
    work = tmp / "work"  # an empty directory, far from the repository's configs/
    work.mkdir()
    return {"wheel": wheel, "venv": venv, "site": site, "work": work}


def test_the_wheel_holds_the_recipes_as_files(installed):
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    for f in ("reslab/recipes/configs/quickstart.yaml",
              "reslab/recipes/configs/experiment/cifar10_paper.yaml",
              "reslab/recipes/sweeps/degradation_digits.yaml", "reslab/slurm/ray_cluster.sh"):
        assert f in names, f
    shipped = {n.removeprefix("reslab/recipes/") for n in names if n.startswith("reslab/recipes/")}
    in_tree = {p.relative_to(ROOT).as_posix() for d in ("configs", "sweeps")
               for p in (ROOT / d).rglob("*.yaml")}
    assert shipped == in_tree


def test_installed_reslab_is_the_wheels_with_its_own_recipes(installed):
    r = sh(installed["venv"] / "bin/python", "-c", "import reslab, reslab.config.recipes as r; "
           "print(reslab.__file__); print(r.root())", cwd=installed["work"])
    module, recipes = map(Path, r.stdout.split())
    assert module.is_relative_to(installed["site"]) and recipes.is_relative_to(installed["site"])


def test_config_and_sweep_by_name_from_an_empty_directory(installed):
    reslab, work = installed["venv"] / "bin/reslab", installed["work"]
    r = sh(reslab, "config", cwd=work)
    assert "name: quickstart" in r.stdout and "depth: 20" in r.stdout
    r = sh(reslab, "config", "experiment/cifar10_paper", "data.root=/nonexistent", cwd=work)
    assert "name: cifar10" in r.stdout
    r = sh(reslab, "config", "--list", cwd=work)
    assert str(installed["site"]) in r.stdout and "  experiment/cifar10_paper\n" in r.stdout
    r = sh(reslab, "sweep", "degradation_digits", "--dry-run", cwd=work)
    assert "6 trials" in r.stdout


def test_one_step_train_with_the_packaged_quickstart(installed):
    work = installed["work"]
    r = sh(installed["venv"] / "bin/reslab", "train", "trainer.max_steps=1", "run.test=false",
           "logger.wandb.mode=disabled", "trainer.progress_bar=false", cwd=work, timeout=600)
    run = run_dir(work / "runs")
    assert run.is_relative_to(work / "runs/quickstart"), r.stdout
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["global_step"] == 1
    assert (run / "checkpoints/last.ckpt").is_file()
