"""The k search behind ``pcsr demo``'s picture: the k whose pooled heavy share is nearest each target."""

from __future__ import annotations

import pytest
import torch

from factories import routing_pcsr
from pcsr_lightning.inference.ksearch import K_RANGE, ks_for_shares, pooled_heavy_share, prepare_all
from pcsr_lightning.inference.routed import Prepared


@pytest.fixture(scope="module")
def searched():
    torch.manual_seed(3)
    model = routing_pcsr(m=2)
    lrs = [torch.rand(1, 3, 12, 10), torch.rand(1, 3, 9, 14)]
    return model, prepare_all(model, lrs, 4.0)


def test_the_chosen_k_gives_the_share_asked_for(searched):
    model, prepared = searched
    choices = ks_for_shares(model, prepared, (0.9, 0.5, 0.1))
    assert [c.target for c in choices] == [0.9, 0.5, 0.1]
    assert choices[0].k < choices[1].k < choices[2].k  # more light pixels, larger k
    for c in choices:
        assert c.heavy_share == pooled_heavy_share(model, prepared, c.k)
        assert abs(c.heavy_share - c.target) <= 0.03, c


def test_a_model_that_routes_all_or_nothing_gets_the_nearest_side(searched):
    """Every pixel with the same probabilities: the share jumps from 1 to 0 at one k; the search ends on
    the side nearer the target and says what it reached."""
    model, prepared = searched
    p = prepared[0]
    flat = torch.full_like(p.probs, 0.5)
    same = [Prepared(p.lr_norm, p.feat, p.grid, p.scale, flat, None)]
    (c,) = ks_for_shares(model, same, (0.4,))
    assert c.heavy_share in (0.0, 1.0)
    assert K_RANGE[0] < c.k < K_RANGE[1]


def test_bad_targets_and_one_upsampler_are_refused(searched):
    model, prepared = searched
    with pytest.raises(ValueError, match="between 0 and 1"):
        ks_for_shares(model, prepared, (1.5,))
    single = routing_pcsr(m=1)
    with pytest.raises(ValueError, match="one upsampler"):
        ks_for_shares(single, prepare_all(single, [torch.rand(1, 3, 8, 8)], 4.0))
