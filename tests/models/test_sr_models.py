"""Super-resolution networks as their references define them: EDSR's dataset mean shift, its
residual scaling reachable from a config, and VDSR's size on the luma channel."""

from __future__ import annotations

import pytest
import torch

from reslab.config import load as C
from reslab.models import build_model
from reslab.models.profile import count_params
from reslab.run.build import build_net_and_data
from support import ROOT

EDSR_RECIPE = ROOT / "configs/experiment/sr_edsr_sample.yaml"


def _zero_convs(net: torch.nn.Module) -> None:
    for p in net.parameters():
        torch.nn.init.zeros_(p)


@pytest.mark.parametrize("channels,mean", [(3, (0.4488, 0.4371, 0.4040)), (1, (0.4379,))])
def test_edsr_subtracts_the_div2k_mean_before_the_head_and_adds_it_after_the_tail(channels, mean):
    net = build_model("edsr", depth=2, width=0.25, in_channels=channels)
    seen = []
    net.head.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    mean = torch.tensor(mean).view(1, channels, 1, 1)
    net(mean.expand(1, channels, 6, 6))
    assert seen[0].abs().max() < 1e-4  # the mean image enters the head as zeros
    _zero_convs(net)  # every learned layer outputs 0: what remains is the mean added back
    out = net(torch.rand(1, channels, 6, 6))
    torch.testing.assert_close(out, mean.expand(1, channels, 12, 12), atol=1e-4, rtol=0)


def test_the_mean_shift_is_a_constant_not_a_parameter_or_a_checkpoint_key():
    net = build_model("edsr")
    assert count_params(net) == 1_369_859  # the EDSR baseline at x2 (Lim et al. 2017: 1.37M)
    assert not [k for k in net.state_dict() if "mean" in k]
    assert all(not m.shift.requires_grad for m in (net.sub_mean, net.add_mean))


def test_res_scale_scales_every_residual_branch():
    torch.manual_seed(0)
    full = build_model("edsr", depth=3, width=0.25)
    scaled = build_model("edsr", depth=3, width=0.25, res_scale=0.1)
    scaled.load_state_dict(full.state_dict(), strict=True)
    h = torch.rand(2, 16, 5, 5)
    for a, b in zip(full.blocks(), scaled.blocks()):
        torch.testing.assert_close(b(h) - h, 0.1 * (a(h) - h))
    assert not torch.allclose(full(torch.rand(1, 3, 5, 5)), scaled(torch.rand(1, 3, 5, 5)))


def test_res_scale_is_set_from_the_config_and_refused_where_it_does_not_apply():
    net = build_net_and_data(C.load([EDSR_RECIPE], ["model.res_scale=0.1", "data.patch_size=24"])).net
    assert {b.res_scale for b in net.blocks()} == {0.1}
    assert {b.res_scale for b in build_net_and_data(C.load([EDSR_RECIPE], [])).net.blocks()} == {1.0}
    with pytest.raises(C.ConfigError, match=r"model.res_scale=0.1 does not apply to model.name=vdsr"):
        C.load([ROOT / "configs/experiment/sr_vdsr_sample.yaml"], ["model.res_scale=0.1"])
    with pytest.raises(C.ConfigError, match=r"model.res_scale must be a number > 0 and <= 10, got 0.0"):
        C.load([EDSR_RECIPE], ["model.res_scale=0"])


def test_vdsr_on_luma_has_the_papers_size():
    """VDSR (Kim et al. 2016): 20 layers of 64 3x3 filters on one channel: 665,921 parameters."""
    assert count_params(build_model("vdsr", in_channels=1)) == 665_921
    net = build_model("vdsr", depth=3, width=0.25, in_channels=1)
    assert net(torch.rand(2, 1, 6, 7)).shape == (2, 1, 12, 14)
