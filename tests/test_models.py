import pytest
import torch

from pcsr_lightning.models import CARN, FSRCNN, PCSR, OriginalSR, SRResNet
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
    return PCSR(BACKBONES[name](), [[24, 24]] + [[8]] * (m - 1), [8], rgb_mean=(0.4, 0.4, 0.4)).eval()


@pytest.mark.parametrize("name", sorted(BACKBONES))
@pytest.mark.parametrize("scale", [2, 3, 4, 2.5])
def test_pcsr_shapes(name, scale):
    model = tiny_pcsr(name)
    lr = torch.rand(2, 3, 9, 11)
    out = model.upscale(lr, scale)
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
