"""Every preset is the model it names, from any recipe: built from the default recipe with only
`model.name` set, it has the preset's depth, block type, pre-activation and shortcut, and the
parameter count that its architecture gives (counted here from the papers' description, not
from reslab's modules)."""

from __future__ import annotations

import pytest

from reslab import models
from reslab.commands import DEFAULT_RECIPE
from reslab.config.load import load
from reslab.models.blocks import BasicBlock, Bottleneck
from reslab.models.profile import count_params
from reslab.run import build

CIFAR_PRESETS = [n for n in models.list_models()
                 if models.info(n).family == "cifar" and models.info(n).depth]


def conv(i: int, o: int, k: int) -> int:
    return i * o * k * k


def expected_params(depth: int, block: str, preact: bool, shortcut: str, in_channels: int,
                    classes: int) -> int:
    """He et al. 2015 §4.2 (basic, 6n+2) and 2016 (bottleneck, 9n+2) CIFAR nets: a 3x3 stem,
    stages of widths 16/32/64 (x4 out for bottlenecks), BN (2 parameters a channel) after
    each conv, or before it when pre-activated (plus one final BN); B projects where the shape
    changes, C everywhere, with a BN unless pre-activated; A and none add nothing."""
    bottleneck = block == "bottleneck"
    n, expansion = (depth - 2) // (9 if bottleneck else 6), 4 if bottleneck else 1
    total = conv(in_channels, 16, 3) + (0 if preact else 32)
    inplanes = 16
    for stage, planes in enumerate((16, 32, 64)):
        out = planes * expansion
        for j in range(n):
            if bottleneck:
                convs = [(inplanes, planes, 1), (planes, planes, 3), (planes, out, 1)]
            else:
                convs = [(inplanes, planes, 3), (planes, planes, 3)]
            total += sum(conv(*c) + 2 * (c[0] if preact else c[1]) for c in convs)
            changes = inplanes != out or (stage > 0 and j == 0)
            if shortcut == "C" or (shortcut == "B" and changes):
                total += conv(inplanes, out, 1) + (0 if preact else 2 * out)
            inplanes = out
    return total + (2 * inplanes if preact else 0) + inplanes * classes + classes


@pytest.mark.parametrize("name", CIFAR_PRESETS)
def test_every_cifar_preset_builds_what_it_names_from_the_default_recipe(name):
    cfg = load([DEFAULT_RECIPE], [f"model.name={name}"])
    fixed = models.info(name).fixed
    assert (cfg.model.depth, cfg.model.shortcut, cfg.model.block, cfg.model.preact) == (
        fixed["depth"], fixed["shortcut"], fixed["block"], fixed["preact"])
    net = build.build_net_and_data(cfg, device="meta", open_data=False).net
    kind = Bottleneck if fixed["block"] == "bottleneck" else BasicBlock
    blocks = net.blocks()
    assert all(type(b) is kind and b.preact == fixed["preact"] for b in blocks)
    per_block = 3 if kind is Bottleneck else 2
    assert len(blocks) * per_block + 2 == fixed["depth"]
    if fixed["shortcut"] == "none":
        assert all(b.downsample is None and b.shortcut == "none" for b in blocks)
    else:
        assert any(b.downsample is not None for b in blocks)
    assert count_params(net) == expected_params(
        fixed["depth"], fixed["block"], fixed["preact"], fixed["shortcut"],
        in_channels=net.conv1.in_channels, classes=net.fc.out_features)


# He et al. 2016, Table 3 (1.7M, 10.2M), exactly as the reference implementation counts them
# (option-B projections); the paper's 1001 figure is rounded and counts no BN.
PAPER_2016 = {"preact_resnet164": 1_703_258, "preact_resnet1001": 10_327_706,
              "resnet164": 1_704_154, "resnet1001": 10_328_602, "preact_resnet110": 1_727_962}


@pytest.mark.parametrize("name", PAPER_2016)
def test_2016_presets_have_the_papers_parameter_counts(name):
    net = models.build_model(name)
    assert count_params(net) == PAPER_2016[name]
    i = models.info(name)
    assert count_params(net) == expected_params(i.depth, i.fixed["block"], i.fixed["preact"],
                                                i.fixed["shortcut"], 3, 10)


def test_a_preset_wins_over_lower_layers_and_is_refused_against_its_own_layer(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {name: cifar_resnet, depth: 20, shortcut: A, preact: true}\n")
    cfg = load([recipe], ["model.name=plain56"])
    assert (cfg.model.depth, cfg.model.shortcut, cfg.model.preact) == (56, "none", False)
    assert load([recipe], ["model.name=resnet110"]).model.depth == 110
    # ResNet-56 with option B is still ResNet-56: a residual shortcut may be chosen.
    assert load([recipe], ["model.name=resnet56", "model.shortcut=B"]).model.shortcut == "B"
    # A later layer that names the family again starts from the family's defaults.
    assert load([recipe], ["model.name=cifar_resnet"]).model.depth == 20
    named = tmp_path / "p.yaml"
    named.write_text("model: {name: resnet56, shortcut: B}\n")
    assert load([named], ["model.name=resnet56"]).model.shortcut == "B"  # same name: kept


@pytest.mark.parametrize("overrides,message", [
    (["model.name=plain20", "model.shortcut=A"],
     "model.shortcut=A contradicts model.name=plain20, a plain net (shortcut none); "
     "model.name=resnet20 is the residual net"),
    (["model.name=resnet56", "model.shortcut=none"], "model.name=plain56 is the plain net"),
    (["model.name=resnet20", "model.depth=56"],
     "model.depth=56 contradicts model.name=resnet20 (depth 20); use model.name=resnet56"),
    (["model.name=resnet20", "model.depth=14"], "name the family (model.name=cifar_resnet)"),
    (["model.name=resnet164", "model.block=basic"], "model.block=basic contradicts"),
    (["model.name=preact_resnet164", "model.preact=false"], "model.preact=false contradicts"),
    (["model.depth=164"], "model.depth=164 is a bottleneck depth (9n+2, He et al. 2016): set "
                          "model.block=bottleneck"),
    (["model.depth=1001"], "set model.block=bottleneck"),
    (["model.depth=58", "model.block=bottleneck"], "9n+2"),
    (["model.block=bottlenek"], "did you mean 'bottleneck'"),
    (["model.name=resnet50", "data.name=synthetic", "model.block=basic"],
     "applies to CIFAR ResNets only"),
])
def test_contradictions_are_one_sentence(cli, overrides, message):
    r = cli("config", DEFAULT_RECIPE, *overrides)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(err) == 1 and message in err[0] and not r.stdout


def test_an_explicit_basic_block_builds_164_basic_layers():
    cfg = load([DEFAULT_RECIPE], ["model.depth=164", "model.block=basic"])
    net = build.build_net_and_data(cfg, device="meta", open_data=False).net
    assert len(net.blocks()) == 81 and all(type(b) is BasicBlock for b in net.blocks())
