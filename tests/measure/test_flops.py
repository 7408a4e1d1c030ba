"""FLOPs in both conventions: the paper networks' known totals, hand counts from layer shapes, routed sums."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pcsr_lightning.config import backbone_names as arch_names
from pcsr_lightning.inference.reference import RoutedGraph
from pcsr_lightning.inference.router import class_counts
from pcsr_lightning.measure.flops import count_flops, fvcore_macs
from pcsr_lightning.measure.meter import FlopsMeter, all_on, build_arch

ORIGINAL_32 = {"fsrcnn": 468_017_152, "carn": 1_156_448_256, "srresnet": 5_193_990_144}
BACKBONE_32_M = {"fsrcnn": 20.5, "carn": 477.6, "srresnet": 1987.4}
PER_PIXEL = {  # heavy, light, classifier (paper convention, per HR pixel)
    "fsrcnn": (26_564, 1_500, 208),
    "carn": (41_588, 3_960, 1_360),
    "srresnet": (195_500, 11_600, 3_360),
}


def test_arch_names():
    assert arch_names() == ["carn", "fsrcnn", "srresnet"]
    with pytest.raises(ValueError, match="unknown backbone 'edsr'"):
        build_arch("edsr")


@pytest.mark.parametrize("name", sorted(ORIGINAL_32))
def test_paper_oracles(name):
    lr = torch.zeros(1, 3, 32, 32)
    assert count_flops(build_arch(name, original=True), lr, convention="paper") == ORIGINAL_32[name]
    pcsr = build_arch(name)
    meter = FlopsMeter(pcsr)
    assert round(sum(meter.network((32, 32), "paper").values()) / 1e6, 1) == BACKBONE_32_M[name]
    heavy, light, classifier = PER_PIXEL[name]
    assert [meter.per_query(u, "paper") for u in pcsr.upsamplers] == [heavy, light]
    assert meter.per_query(pcsr.classifier, "paper") == classifier
    # fvcore counts MACs of the same Linear layers: exactly half.
    assert [meter.per_query(u, "fvcore") for u in pcsr.upsamplers] == [heavy // 2, light // 2]


def hand_macs(name: str) -> int:
    """True multiply-adds per LR pixel of the x4 original, from its layer shapes (BN, PReLU: 1 per element)."""
    if name == "fsrcnn":
        d, s, m = 56, 12, 4
        head = 5 * 5 * 3 * d + d
        body = d * s + s + m * 3 * 3 * s * s + s + s * d + d
        deconv = 9 * 9 * d * 3  # true cost: every LR pixel meets the 9x9x3 kernel once per input channel
        return head + body + deconv
    if name == "carn":
        nf, g = 64, 4
        grouped = 3 * 3 * (nf // g) * nf
        erb = 2 * grouped + nf * nf
        fusions = sum(c * nf * nf + nf for c in (2, 3, 4))  # bias-free 1x1 + BatchNorm
        block = 3 * erb + fusions
        tail = 3 * 3 * (nf // g) * 4 * nf * (1 + 4) + 3 * 3 * nf * 3 * 16
        return 3 * 3 * 3 * nf + 3 * block + fusions + tail
    nf = 64  # srresnet
    return 3 * 3 * 3 * nf + 32 * 9 * nf * nf + 9 * nf * 4 * nf * (1 + 4) + 9 * nf * nf * 16 + 9 * nf * 3 * 16


@pytest.mark.parametrize("name", sorted(ORIGINAL_32))
@pytest.mark.parametrize("size", [(8, 8), (7, 5)])
def test_fvcore_original_equals_hand_count(name, size):
    model = build_arch(name, original=True)
    assert fvcore_macs(model, torch.zeros(1, 3, *size)) == hand_macs(name) * size[0] * size[1]


@pytest.mark.parametrize("name", sorted(ORIGINAL_32))
def test_routed_sum_equals_the_whole_traced_forward(name):
    """backbone + classifier x H*W + sum_j n_j x cost_j == a counter run over the whole routed forward."""
    model = build_arch(name)
    lr = torch.rand(1, 3, 6, 5)
    classes = torch.randint(0, 2, (1, 24, 20), generator=torch.Generator().manual_seed(1))
    counts = class_counts(classes, 2)
    assert 0 < counts[0] < 480
    meter = FlopsMeter(model)
    for convention in ("paper", "fvcore"):
        traced = count_flops(RoutedGraph(model, classes), lr, convention=convention)
        parts = meter.routed((6, 5), 4, counts, convention)
        assert sum(parts.values()) == traced, convention
        q = meter.per_query
        expected = (
            sum(meter.network((6, 5), convention).values())
            + 480 * q(model.classifier, convention)
            + counts[0] * q(model.upsamplers[0], convention)
            + counts[1] * q(model.upsamplers[1], convention)
        )
        assert traced == expected
    assert meter.image((6, 5), 4, all_on(2, 480, 1), "paper") < meter.image((6, 5), 4, counts, "paper")


def test_routed_counts_must_cover_the_output():
    meter = FlopsMeter(build_arch("fsrcnn"))
    with pytest.raises(ValueError, match="do not cover the 24x20 output"):
        meter.routed((6, 5), 4, [10, 10], "paper")
    with pytest.raises(ValueError, match="unknown FLOPs convention 'macs'"):
        meter.image((6, 5), 4, [480, 0], "macs")


class Ops(nn.Module):
    """The ops fvcore skips or mis-counts here: each has a stated rule."""

    def __init__(self):
        super().__init__()
        self.prelu = nn.PReLU()
        self.bn = nn.BatchNorm2d(3)

    def forward(self, x):
        free = F.softmax(x, 1) + F.interpolate(x, scale_factor=2, mode="bilinear").mean()
        grid = torch.zeros(1, 4, 1, 2)
        free = free + F.grid_sample(x, grid, mode="nearest", align_corners=False).sum()
        free = free + F.leaky_relu(x, 0.1) - x.index_select(2, torch.tensor([0, 1]))
        return self.prelu(x) + self.bn(x) + free


def test_fvcore_rules_for_skipped_ops():
    x = torch.rand(1, 3, 2, 4)
    # PReLU: one multiply per element; BatchNorm at inference: one multiply-add per element; the rest free.
    assert fvcore_macs(Ops().eval(), x) == 24 + 24
    # The paper convention: PReLU numel, BatchNorm 2 x numel.
    assert count_flops(Ops().eval(), x, convention="paper") == 24 + 48


def test_fvcore_refuses_an_op_without_a_rule():
    class Odd(nn.Module):
        def forward(self, x):
            return torch.cumsum(x, 1)

    with pytest.raises(TypeError, match="no rule for \\['aten::cumsum'\\]"):
        fvcore_macs(Odd(), torch.rand(1, 3))
