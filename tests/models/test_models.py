import math

import pytest
import torch
from torch import nn

from factories import pcsr_net
from pcsr_lightning.inference.session import upscale
from pcsr_lightning.io import checkpoint
from pcsr_lightning.models import CARN, FSRCNN, PCSR, OriginalSR, SRResNet, model_classes, register
from pcsr_lightning.models.sampler import make_cell, make_coord

BACKBONES = {
    "fsrcnn": lambda scale=None: FSRCNN(d=16, s=8, m=2, scale=scale),
    "carn": lambda scale=None: CARN(nf=16, group=4, scale=scale),
    "srresnet": lambda scale=None: SRResNet(nf=16, nb=2, scale=scale),
}


@pytest.mark.parametrize("name", sorted(BACKBONES))
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_original_network_shapes(name, scale):
    model = OriginalSR(BACKBONES[name](scale))
    assert model(torch.rand(2, 3, 9, 11)).shape == (2, 3, 9 * scale, 11 * scale)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_original_network_rejects_non_integer_scale(name):
    with pytest.raises(ValueError, match="supports scales"):
        BACKBONES[name](2.5)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_trunk_keeps_lr_size(name):
    trunk = BACKBONES[name]()
    assert trunk(torch.rand(1, 3, 9, 11)).shape == (1, trunk.out_dim, 9, 11)


def tiny_pcsr(name="carn", m=2):
    return pcsr_net(BACKBONES[name](), [[24, 24]] + [[8]] * (m - 1), [8], rgb_mean=(0.4, 0.4, 0.4)).eval()


@pytest.mark.parametrize("name", sorted(BACKBONES))
@pytest.mark.parametrize("scale", [2, 3, 4, 2.5])
def test_pcsr_shapes(name, scale):
    model = tiny_pcsr(name)
    lr = torch.rand(2, 3, 9, 11)
    out = upscale(model, lr, scale)
    hh, ww = round(9 * scale), round(11 * scale)
    assert out.sr.shape == (2, 3, hh, ww) and out.classes.shape == (2, hh, ww)
    coord = make_coord((hh, ww))[None].expand(2, -1, -1)
    pred, probs = model(lr, coord, make_cell((hh, ww), hh * ww)[None].expand(2, -1, -1))
    assert pred.shape == (2, hh * ww, 3) and probs.shape == (2, hh * ww, 2)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, hh * ww))


def test_pcsr_rejects_backbone_with_tail():
    with pytest.raises(ValueError, match="without its upsampling tail"):
        PCSR(CARN(nf=16, scale=4), [[8]], [])


def test_soft_forward_with_fewer_active_classes():
    model = tiny_pcsr(m=3)
    coord = make_coord((8, 8))[None]
    pred, probs = model(torch.rand(1, 3, 4, 4), coord, make_cell((8, 8), 64)[None], num_active=1)
    assert probs.shape == (1, 64, 1) and torch.all(probs == 1)
    _, probs = model(torch.rand(1, 3, 4, 4), coord, make_cell((8, 8), 64)[None], num_active=2)
    assert probs.shape == (1, 64, 2)


# ------------------------------------------------------------------ initial weights


def release_scaled_convs(net: nn.Module) -> list[nn.Conv2d]:
    """The convolutions the release initialises He-normal x0.1 (all others keep PyTorch's defaults)."""
    if isinstance(net, FSRCNN):
        return [m for part in (net.head_conv, net.body_conv) for m in part.modules() if isinstance(m, nn.Conv2d)]
    if isinstance(net, SRResNet):
        return [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    return []


@pytest.mark.parametrize("build", [
    lambda init: FSRCNN(56, 12, 4, scale=4, init=init), lambda init: FSRCNN(48, 12, 4, init=init),
    lambda init: SRResNet(64, 16, scale=4, init=init), lambda init: SRResNet(58, 16, init=init),
    lambda init: CARN(64, 4, scale=4, init=init), lambda init: CARN(52, 4, init=init),
])
def test_release_initialisation_per_layer(build):
    torch.manual_seed(0)
    net = build("release")
    scaled = release_scaled_convs(net)
    for conv in scaled:  # kaiming_normal_(a=0, fan_in) then x0.1: std = 0.1 * sqrt(2 / fan_in), bias 0
        fan_in = conv.weight[0].numel()
        expected = 0.1 * math.sqrt(2.0 / fan_in)
        n = conv.weight.numel()
        assert conv.weight.std().item() == pytest.approx(expected, rel=6 / math.sqrt(n) + 0.02), conv
        assert conv.weight.mean().abs().item() < 6 * expected / math.sqrt(n)
        assert torch.all(conv.bias == 0)
    others = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
              and all(m is not s for s in scaled)]
    for conv in others:  # PyTorch's default: uniform(+-1/sqrt(fan_in)) -> std 1/sqrt(3 fan_in)
        fan_in = conv.weight.shape[1] * conv.weight[0, 0].numel()
        expected = 1 / math.sqrt(3 * fan_in)
        assert conv.weight.std().item() == pytest.approx(expected, rel=6 / math.sqrt(conv.weight.numel()) + 0.02)
        if conv.bias is not None:
            assert conv.bias.abs().max() > 0
    for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    for prelu in (m for m in net.modules() if isinstance(m, nn.PReLU)):
        assert prelu.weight.numel() == 1 and prelu.weight.item() == pytest.approx(0.25)
    if isinstance(net, CARN):
        assert not scaled and others  # the release keeps PyTorch's defaults for CARN
    else:
        assert scaled


def test_pytorch_initialisation_keeps_the_defaults_and_bad_schemes_fail():
    torch.manual_seed(0)
    net = FSRCNN(48, 12, 4, init="pytorch")
    first = net.head_conv[0]
    assert first.weight.std().item() == pytest.approx(1 / math.sqrt(3 * 75), rel=0.1)
    assert first.bias.abs().max() > 0
    with pytest.raises(ValueError, match="unknown init 'xavier'"):
        SRResNet(8, 1, init="xavier")


def test_pcsr_mlps_keep_pytorch_defaults():
    torch.manual_seed(0)
    net = PCSR(FSRCNN(48, 12, 4), [[58] * 4, [10] * 3])
    for mlp in (*net.upsamplers, net.classifier):
        for lin in mlp.linears:
            expected = 1 / math.sqrt(3 * lin.in_features)
            assert lin.weight.std().item() == pytest.approx(expected, rel=6 / math.sqrt(lin.weight.numel()) + 0.05)
            assert lin.bias.abs().max() > 0


def test_the_registry_is_the_allow_list_io_asks():
    names = ("PCSR", "OriginalSR", "FSRCNN", "CARN", "SRResNet", "LearnedGate", "LinearFill")
    classes = model_classes()
    short = {f"pcsr_lightning.models.{n}" for n in names}
    assert short <= set(classes) and len(classes) == 2 * len(names)  # each by its short and its module path
    assert {f"{c.__module__}.{c.__qualname__}" for c in classes.values()} | short == set(classes)
    assert checkpoint.model_classes is model_classes  # io asks the models' registry, it keeps no list
    classes.clear()  # a copy: the allow-list itself is unchanged
    assert len(model_classes()) == 2 * len(names)
    with pytest.raises(TypeError, match="only torch.nn.Module classes"):
        register(dict)

    class PCSR(torch.nn.Module):  # another class under a registered short name
        pass

    with pytest.raises(ValueError, match="registered already"):
        register(PCSR)
    assert model_classes()["pcsr_lightning.models.PCSR"].__module__ == "pcsr_lightning.models.pcsr"
