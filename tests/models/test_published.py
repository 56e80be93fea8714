"""A published CIFAR checkpoint (akamaster/pytorch_resnet_cifar10's format) loads through
`model.weights` and gives the outputs of the network it was saved from.

The reference network is written here from that reproduction's published description, not its
code: a 3x3 stem (conv1, bn1), stages layer1..3 of basic blocks (conv1, bn1, conv2, bn2,
`shortcut`), option A = the identity subsampled by 2 with `planes // 4` zero channels padded on
each side, global average pooling and a classifier named `linear`; saved from a DataParallel
wrapper (`module.` keys) inside `{"state_dict": ..., "best_prec1": ...}`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reslab import models
from reslab.models import published
from reslab.run import weights


class RefBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pad = planes // 4 if stride != 1 or inplanes != planes else None

    def shortcut(self, x):
        if self.pad is None:
            return x
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class RefResNet(nn.Module):
    def __init__(self, depth: int, num_classes: int = 10):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        inplanes = 16
        for i, planes in enumerate((16, 32, 64)):
            blocks = []
            for j in range(n):
                blocks.append(RefBlock(inplanes, planes, 2 if i and not j else 1))
                inplanes = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.linear = nn.Linear(64, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return self.linear(F.avg_pool2d(out, out.size(3)).flatten(1))


def published_file(tmp_path, depth: int) -> tuple[RefResNet, str]:
    torch.manual_seed(depth)
    ref = RefResNet(depth)
    for m in ref.modules():  # trained-looking BN statistics, so every channel's place matters
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    path = tmp_path / f"resnet{depth}-12fca82f.th"
    state = {f"module.{k}": v for k, v in ref.state_dict().items()}
    torch.save({"state_dict": state, "best_prec1": 91.73}, path)
    return ref.eval(), str(path)


@pytest.mark.parametrize("depth", [20, 56])
def test_published_checkpoint_gives_the_reference_outputs(tmp_path, depth):
    ref, path = published_file(tmp_path, depth)
    net = models.build_model(f"resnet{depth}")
    weights.load_into(net, weights.source(path, f"resnet{depth}", depth), models.info(f"resnet{depth}"))
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), ref(x), atol=1e-5, rtol=0)


def test_without_the_channel_permutation_outputs_differ(tmp_path):
    """The conversion is what makes them equal: renaming alone loads but computes another net."""
    ref, path = published_file(tmp_path, 20)
    state = torch.load(path, weights_only=True)["state_dict"]
    net = models.build_model("resnet20")
    net.load_state_dict({published.rename(k): v for k, v in state.items()})
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        assert (net.eval()(x) - ref(x)).abs().max() > 1e-2


def test_the_permutation_is_the_documented_layout():
    """Stage 2: reslab's identity channels 0-15 are the published 8-23; stage 3: 0-31 are 16-47
    (composed with stage 2's order)."""
    state = {f"layer{s + 1}.0.conv2.weight": torch.zeros(w, w, 3, 3)
             for s, w in enumerate((16, 32, 64))}
    p1, p2, p3 = published.stream_permutations(state)
    assert p1.tolist() == list(range(16))
    assert p2.tolist() == [*range(8, 24), *range(8), *range(24, 32)]
    assert p3[:32].tolist() == [16 + c for c in p2.tolist()]
    assert sorted(p3.tolist()) == list(range(64))


def test_a_published_checkpoint_that_does_not_fit_is_one_sentence(tmp_path):
    _, path = published_file(tmp_path, 20)
    with pytest.raises(Exception, match=r"does not fit model resnet56"):
        weights.load_into(models.build_model("resnet56"), weights.source(path, "resnet56", 56),
                          models.info("resnet56"))


@pytest.mark.parametrize("damage, message", [
    (lambda s: {k: s[k] for k in ("module.linear.weight", "module.conv1.weight")},
     "no layer1.0.conv2.weight"),
    (lambda s: {**s, "module.layer2.0.conv2.weight": torch.zeros(20, 32, 3, 3)},
     r"layer2.0.bn2.weight has shape \[32\], not 20 channels"),
    (lambda s: {**s, "module.layer2.0.conv2.weight": torch.zeros(17, 32, 3, 3)},
     "stage 2 is 17 channels wide after 16: option A pads an even number"),
    (lambda s: {**s, "module.layer3.0.conv2.weight": torch.zeros(64)},
     r"layer3.0.conv2.weight has shape \[64\], not a convolution's 4 dimensions"),
    (lambda s: {**s, "module.layer2.0.conv1.weight": torch.zeros(32, 8, 3, 3)},
     r"layer2.0.conv1.weight has shape \[32, 8, 3, 3\], not 16 channels in dimension 1"),
    (lambda s: {**s, "module.linear.weight": torch.zeros(10, 32)},
     r"fc.weight has shape \[10, 32\], not 64 channels"),
])
def test_a_file_with_its_keys_but_not_its_network_is_a_layout_error(tmp_path, damage, message):
    _, path = published_file(tmp_path, 20)
    state = damage(torch.load(path, weights_only=True)["state_dict"])
    assert published.is_akamaster(state)
    with pytest.raises(published.LayoutError, match=message):
        published.from_akamaster(state)
