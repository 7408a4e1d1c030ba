"""Routed inference against the soft forward, the cost knob, refinement and ADM."""

import pytest
import torch

from factories import routing_pcsr
from pcsr_lightning.inference.reference import upscale_reference
from pcsr_lightning.inference.refinement import refine, refinement_mask
from pcsr_lightning.inference.router import kmeans_1d, route_adaptive, route_by_cost
from pcsr_lightning.inference.session import upscale
from pcsr_lightning.models import FSRCNN, PCSR
from pcsr_lightning.models.sampler import make_cell, make_coord


def soft_full(model, lr, scale):
    h, w = lr.shape[-2:]
    hh, ww = round(h * scale), round(w * scale)
    coord = make_coord((hh, ww))[None].expand(lr.shape[0], -1, -1)
    cell = make_cell((hh, ww), hh * ww)[None].expand(lr.shape[0], -1, -1)
    with torch.no_grad():
        pred, probs = model(lr, coord, cell)
    return pred.transpose(1, 2).reshape(lr.shape[0], 3, hh, ww), probs


def make_one_hot(model, lr, scale):
    """Centre the classifier's logit gap at its median over this image, then saturate the softmax."""
    last = model.classifier.linears[-1]
    _, probs = soft_full(model, lr, scale)
    gap = (torch.log(probs[..., 0]) - torch.log(probs[..., 1])).flatten().sort().values
    # Threshold in the widest space between neighbouring gaps of the middle half: a clear margin.
    n = gap.numel()
    middle = gap[n // 4 : 3 * n // 4 + 1]
    i = int((middle[1:] - middle[:-1]).argmax())
    with torch.no_grad():
        last.bias[0] -= (middle[i] + middle[i + 1]) / 2
        last.weight.mul_(1e6)
        last.bias.mul_(1e6)


@pytest.mark.parametrize("scale", [4, 2.5])
def test_routed_equals_soft_forward_when_classifier_is_one_hot(scale):
    model = routing_pcsr()
    lr = torch.rand(1, 3, 12, 10)
    make_one_hot(model, lr, scale)
    soft, probs = soft_full(model, lr, scale)
    assert bool(((probs < 1e-20) | (probs > 1 - 1e-7)).all())
    routed = upscale(model, lr, scale, refine=False)
    share = routed.heavy_share()
    assert 0.05 < share < 0.95, "the test needs both classes present"
    torch.testing.assert_close(routed.sr, soft, atol=1e-5, rtol=0)


def test_k_minus_25_is_all_heavy():
    model = routing_pcsr()
    lr = torch.rand(1, 3, 10, 10)
    out = upscale(model, lr, 4, k=-25, refine=False)
    assert out.heavy_share() == 1.0
    # All-heavy: the soft forward with only U_0 active.
    coord = make_coord((40, 40))[None]
    with torch.no_grad():
        heavy, _ = model(lr, coord, make_cell((40, 40), 1600)[None], num_active=1)
    torch.testing.assert_close(out.sr, heavy.transpose(1, 2).reshape(1, 3, 40, 40), atol=1e-5, rtol=0)


def test_heavy_share_never_grows_with_k():
    model = routing_pcsr()
    lr = torch.rand(1, 3, 16, 16)
    shares = [upscale(model, lr, 4, k=k, refine=False).heavy_share() for k in (-2, -1, -0.5, 0, 0.5, 1, 2, 4)]
    assert all(a >= b for a, b in zip(shares, shares[1:])), shares
    assert shares[0] > shares[-1]


def test_route_by_cost_threshold_matches_closed_form():
    # M = 2: heavy iff p_heavy > r^k / (1 + r^k), r = cost_heavy / cost_light.
    costs = torch.tensor([0.7, 0.3])
    p_heavy = torch.linspace(0.01, 0.99, 99)
    probs = torch.stack([p_heavy, 1 - p_heavy], -1)
    for k in (0.0, 0.5, 1.0, 2.0):
        r = (0.7 / 0.3) ** k
        expected = (p_heavy > r / (1 + r)).long()
        assert torch.equal((route_by_cost(probs, costs, k) == 0).long(), expected)


def test_ties_go_to_the_cheaper_upsampler():
    probs = torch.tensor([[0.5, 0.5]])
    assert route_by_cost(probs, torch.tensor([0.6, 0.4]), 0.0).item() == 1


@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("adaptive", [False, True])
def test_fast_path_equals_reference_path(m, adaptive):
    model = routing_pcsr(m)
    lr = torch.rand(2, 3, 13, 17)
    for scale in (4, 3, 2.5):
        fast = upscale(model, lr, scale, k=0.3, adaptive=adaptive)
        ref = upscale_reference(model, lr, scale, k=0.3, adaptive=adaptive, chunk=97)
        assert torch.equal(fast.classes, ref.classes)
        torch.testing.assert_close(fast.sr, ref.sr, atol=1e-5, rtol=0)


def test_reference_path_on_given_features_equals_whole_call():
    model = routing_pcsr()
    lr = torch.rand(1, 3, 9, 10)
    with torch.no_grad():
        feat = model.encode(model.normalize(lr))
    a, b = upscale_reference(model, lr, 4, k=0.3), upscale_reference(model, lr, 4, k=0.3, feat=feat)
    assert torch.equal(a.classes, b.classes) and torch.equal(a.sr, b.sr)
    other = upscale_reference(model, lr, 4, k=0.3, feat=torch.zeros_like(feat))  # the given features are used
    assert not torch.equal(a.sr, other.sr)


def test_fast_path_chunking_does_not_change_result():
    model = routing_pcsr()
    lr = torch.rand(1, 3, 12, 12)
    a = upscale(model, lr, 4)
    b = upscale(model, lr, 4, max_queries=100)
    assert torch.equal(a.classes, b.classes)
    torch.testing.assert_close(a.sr, b.sr, atol=1e-6, rtol=0)


def test_fast_path_same_with_channels_last_features():
    # Benchmarks run channels_last: the fold reads the features as an (h*w, c) view in either layout.
    model = routing_pcsr()
    lr = torch.rand(2, 3, 11, 14)
    a = upscale(model, lr, 4, k=0.3)
    model.to(memory_format=torch.channels_last)  # in place
    b = upscale(model, lr.contiguous(memory_format=torch.channels_last), 4, k=0.3)
    assert torch.equal(a.classes, b.classes)
    torch.testing.assert_close(a.sr, b.sr, atol=1e-5, rtol=0)


def test_single_linear_classifier_fast_path():
    # FSRCNN's released classifier has no hidden layer: no ReLU may follow the folded layer.
    model = PCSR(FSRCNN(d=12, s=6, m=2), [[16], [4]], []).eval()
    lr = torch.rand(1, 3, 10, 10)
    assert torch.equal(upscale(model, lr, 4).classes, upscale_reference(model, lr, 4).classes)


def test_refinement_changes_exactly_the_named_pixels():
    classes = torch.ones(1, 6, 7, dtype=torch.long)  # all light
    classes[0, 2, 3] = 0  # one heavy pixel in the middle
    classes[0, 0, 6] = 0  # a heavy pixel in the corner: its light neighbours on the border stay
    pred = torch.rand(1, 3, 6, 7)
    out = refine(pred, classes, 2)
    expected = torch.zeros(6, 7, dtype=torch.bool)
    expected[1:4, 2:5] = True  # the 3x3 around (2,3)
    expected[2, 3] = False  # the heavy pixel itself is not refined
    expected[1, 5] = True  # interior neighbour of the corner heavy pixel
    assert torch.equal(refinement_mask(classes, 2)[0], expected)
    changed = (out != pred).any(1)[0]
    assert torch.equal(changed, expected)
    padded = torch.nn.functional.pad(pred, (1, 1, 1, 1), mode="replicate")
    torch.testing.assert_close(out[0, :, 1, 2], padded[0, :, 1:4, 2:5].mean((1, 2)))


def test_adm_on_flat_difficulty_sends_all_pixels_to_light():
    model = routing_pcsr()
    with torch.no_grad():
        model.classifier.linears[-1].weight.zero_()  # same probabilities everywhere: max == min
    out = upscale(model, torch.rand(1, 3, 8, 8), 4, adaptive=True)
    assert out.heavy_share() == 0.0
    # A flat image runs too.
    flat = upscale(routing_pcsr(), torch.full((1, 3, 8, 8), 0.5), 4, adaptive=True)
    assert torch.isfinite(flat.sr).all()
    assert torch.equal(route_adaptive(torch.full((5, 2), 0.5)), torch.ones(5, dtype=torch.long))


def test_adm_clusters_bimodal_difficulty():
    p_heavy = torch.cat([torch.rand(300) * 0.2, 0.8 + torch.rand(100) * 0.2])
    classes = route_adaptive(torch.stack([p_heavy, 1 - p_heavy], -1))
    assert torch.equal(classes, torch.cat([torch.ones(300), torch.zeros(100)]).long())


def test_adm_stops_as_the_release_not_at_convergence():
    # A ramp 0, 0.01, ..., 1 plus one pixel at 0.495. Started at (0.5, 0.5), the centroids creep towards
    # (0.25, 0.75); after 7 iterations they move by less than the release's tolerance while the boundary
    # is still at 0.490, so 0.495 is heavy. Run to convergence the boundary reaches 0.5 and it is light.
    d = torch.cat([torch.linspace(0, 1, 101), torch.tensor([0.495])])
    classes = route_adaptive(torch.stack([d, 1 - d], -1))
    assert torch.equal(classes, (d < 0.495).long())  # 52 heavy (class 0) pixels
    converged = kmeans_1d(d, 2, iters=1000, tol=0.0)
    assert torch.equal(converged == converged[0], d < 0.5)  # 51 heavy: a different split
    # The first iteration puts everything in one cluster; stopping there leaves every pixel light.
    assert kmeans_1d(d, 2, iters=1).eq(0).all()


def test_adm_orders_three_classes_by_their_easiest_pixel():
    # M = 3: difficulty is the expected class index (1 = heaviest); three groups, lightest first.
    low, mid, high = torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, 1.0, 0.0]), torch.tensor([1.0, 0.0, 0.0])
    probs = torch.stack([low, high, mid, mid, low, high])
    assert route_adaptive(probs).tolist() == [2, 0, 1, 1, 2, 0]
