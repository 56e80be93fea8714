"""Configs: every shipped recipe loads and validates; bad input is one sentence naming the key."""

from __future__ import annotations

import dataclasses

import pytest

from reslab.config import load as C
from reslab.config import recipes, validate
from reslab.config.schema import Config, LRSchedule, select
from support import ROOT

RECIPES = sorted((ROOT / "configs").rglob("*.yaml"))


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_recipe_loads_and_validates(path):
    cfg = C.load([path])
    assert cfg.run.name and cfg.model.name


def test_recipes_and_overrides_merge_in_order(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("model:\n  depth: 32\noptim:\n  lr: 0.05\n")
    cfg = C.load([ROOT / "configs/quickstart.yaml", extra], ["model.depth=56", "seed=3"])
    assert (cfg.model.depth, cfg.optim.lr, cfg.seed) == (56, 0.05, 3)


@pytest.mark.parametrize("overrides,message", [
    (["model.dpeth=56"], r"unknown config key 'model.dpeth' .*\(did you mean 'model.depth'\?\)"),
    (["model.depth=abc"], r"model\.depth"),
    (["model.depth=57"], r"model.depth must be 6n\+2 for cifar stems, got 57 \(did you mean 56\?\)"),
    (["model.shortcut=D"], r"model.shortcut must be one of A, B, C, none"),
    (["model.name=resnet65"], r"unknown model 'resnet65' \(did you mean 'resnet56'\?\)"),
    (["model.name=resnet50", "model.depth=34"], r"contradicts model.name=resnet50"),
    (["model.name=imagenet_resnet", "model.depth=20"], r"depth must be one of 18, 34, 50"),
    (["data.name=cifar11"], r"unknown dataset 'cifar11' \(did you mean 'cifar10'\?\)"),
    (["optim.schedule=step"], r"optim.schedule must be one of paper, cosine, onecycle, constant, "
                              r"got 'step'"),
    (["optim.schedule=cosin"], r"got 'cosin' \(did you mean 'cosine'\?\)"),
    (["trainer.precision=bf16"], r"trainer.precision must be one of"),
    (["run.name=a/b"], r"run.name must be a single printable path component"),
    (["run.name=..\n"], r"run.name"),
    (["depth"], r"must look like KEY=VALUE"),
    # the one nullable choice named its domain "a number"
    (["logger.wandb.mode=Offline"], r"logger.wandb.mode must be null or one of offline, online, "
                                    r"disabled, got 'Offline' \(did you mean 'offline'\?\)"),
    # sbatch refuses a --signal time above 65535 s (the dry run had printed it)
    (["slurm.signal_margin_s=65536"], r"slurm.signal_margin_s must be a whole number >= 0 and "
                                      r"<= 65535, got 65536"),
    # the warning at the start of every attempt: checkpoint, requeue, again
    (["slurm.signal_margin_s=3600", "slurm.time=00:30:00"],
     r"slurm.signal_margin_s=3600 is not shorter than slurm.time=00:30:00 \(1800 s\)"),
    (["slurm.signal_margin_s=120", "slurm.time=2"], r"slurm.time=2 \(120 s\)"),
])
def test_bad_values_are_refused_with_a_sentence(overrides, message):
    with pytest.raises(C.ConfigError, match=message) as e:
        C.load([], ["model.name=cifar_resnet", *overrides] if "model.name" not in overrides[0]
               else overrides)
    assert "\n" not in str(e.value).rstrip("\n") or "run.name" in message


@pytest.mark.parametrize("text,message", [
    ("model: !!python/object/apply:os.system ['echo pwned']\n", "not valid YAML"),
    ("a: &a [1, 2]\nb: *a\n", "aliases"),
    ("- just\n- a list\n", "must hold a mapping"),
])
def test_unsafe_or_malformed_yaml_is_refused(tmp_path, text, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(C.ConfigError, match=message):
        C.load([bad])


def test_missing_recipe_file_is_refused(tmp_path):
    with pytest.raises(C.ConfigError, match="does not exist"):
        C.load([tmp_path / "nope.yaml"])


def test_a_recipe_that_is_a_link_loop_is_said_so(tmp_path):
    """It was "does not exist and is not a shipped recipe name", then every shipped name."""
    (tmp_path / "loop.yaml").symlink_to(tmp_path / "loop.yaml")
    with pytest.raises(C.ConfigError, match=r"is a link to nothing, or a loop of links; give") as e:
        recipes.resolve(tmp_path / "loop.yaml")
    assert "shipped" not in str(e.value)


def test_flatten_gives_dashboard_keys():
    flat = C.flatten(C.to_dict(C.load([], ["model.depth=56"])))
    assert flat["model.depth"] == 56 and "logger.wandb.mode" in flat


def test_the_loaded_config_is_typed_and_frozen():
    cfg = C.load([ROOT / "configs/quickstart.yaml"])
    assert isinstance(cfg, Config) and cfg.optim.schedule is LRSchedule(cfg.optim.schedule)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.model.depth = 56
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.trainer = None


def test_derive_returns_a_new_validated_config_and_leaves_the_old_one():
    cfg = C.load([ROOT / "configs/quickstart.yaml"])
    new = C.derive(cfg, {"trainer.max_steps": 7, "run.name": "x y 'z'"})
    assert (new.trainer.max_steps, new.run.name) == (7, "x y 'z'")
    assert cfg.trainer.max_steps == -1
    with pytest.raises(C.ConfigError, match="model.depth must be 6n"):
        C.derive(cfg, {"model.depth": 57})


def test_no_recipe_means_the_schema_defaults_not_the_quickstart():
    assert C.load([]) == Config()
    assert C.load([]).run.name != C.load([ROOT / "configs/quickstart.yaml"]).run.name


@pytest.mark.parametrize("override,value", [
    ("slurm.time=3:30", "3:30"),            # YAML 1.1 would read 210 (base 60)
    ("run.name=007", "007"),                # YAML would read the int 7
    ("model.shortcut=none", "none"),        # the plain network, not null
    ("model.shortcut=null", None),
    ("data.classes=[0, 1]", [0, 1]),
    ("slurm.setup=['module load x']", ["module load x"]),
])
def test_text_keys_keep_the_characters_typed(override, value):
    key = override.split("=")[0]
    assert select(C.load([], ["model.name=cifar_resnet", override]), key) == value


@pytest.mark.parametrize("where", ["override", "recipe"])
def test_interpolation_is_refused_so_no_recipe_reads_the_environment(tmp_path, monkeypatch, where):
    monkeypatch.setenv("WANDB_API_KEY", "canary-0b1c")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("logger:\n  wandb:\n    tags: ['${oc.env:WANDB_API_KEY}']\n")
    args = ([], ["run.name=${oc.env:WANDB_API_KEY}"]) if where == "override" else ([recipe], [])
    with pytest.raises(C.ConfigError, match="interpolation") as e:
        C.load(*args)
    assert "canary" not in str(e.value)


def test_a_binary_recipe_is_a_sentence(tmp_path):
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(C.ConfigError, match="is not text"):
        C.load([bad])


@pytest.mark.parametrize("text,seconds", [
    ("30", 1800), ("30:15", 1815), ("01:00:00", 3600), ("2-12", 216000), ("2-12:30", 217800),
    ("2-12:30:15", 217815), ("0", 0)])
def test_slurm_times_in_seconds(text, seconds):
    assert validate.time_seconds(text) == seconds
    C.load([], [f"slurm.time={text}", "slurm.signal_margin_s=0"])  # a margin of 0 always fits
