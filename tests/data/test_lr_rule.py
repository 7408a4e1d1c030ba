"""One rule makes LR from HR, for training crops, validation images, evaluation pairs and the bench."""

from __future__ import annotations

import pytest
import torch

from pcsr_lightning.data.bicubic import downscale, imresize, make_pair
from pcsr_lightning.data.datamodule import ValImages
from pcsr_lightning.evaluation import protocol
from pcsr_lightning.io.images import ImageReadError


class OneImage:
    def __init__(self, img):
        self.img = img

    def __len__(self):
        return 1

    def load_raw(self, index):
        return self.img

    def name(self, index):
        return "one.png"


@pytest.mark.parametrize("scale, lr_size", [(4, (12, 9)), (2.5, (20, 15)), (3, (17, 12))])
def test_the_rule_by_hand(scale, lr_size):
    hr = torch.rand(3, 51, 38)
    cropped, lr = make_pair(hr, scale)
    assert tuple(lr.shape[-2:]) == lr_size
    assert tuple(cropped.shape[-2:]) == (round(lr_size[0] * scale), round(lr_size[1] * scale))
    assert torch.equal(lr, imresize(hr[..., : cropped.shape[-2], : cropped.shape[-1]], lr_size))
    assert torch.equal(downscale(hr, scale), lr)


def test_every_user_applies_it():
    hr = torch.rand(3, 50, 37)
    want_hr, want_lr = make_pair(hr, 4)
    item = ValImages(OneImage(hr), scale=4)[0]
    assert torch.equal(item["hr"], want_hr) and torch.equal(item["lr"], want_lr)
    assert protocol.make_pair is make_pair


def test_too_small_is_named():
    with pytest.raises(ImageReadError, match="too small for x4"):
        make_pair(torch.rand(3, 3, 40), 4)
