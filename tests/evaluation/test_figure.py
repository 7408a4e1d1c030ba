"""The demo's picture: the most detailed window, and panels laid out under their labels."""

from __future__ import annotations

import numpy as np
import torch

from pcsr_lightning.evaluation.figure import GAP, LABEL_HEIGHT, FigureRow, comparison_figure, crop, detail_window


def test_the_window_with_the_most_detail_is_chosen():
    hr = torch.full((3, 64, 96), 0.5)
    hr[:, 32:48, 64:80] = torch.rand(3, 16, 16)  # the only texture, in the window at (32, 64) of a 16-grid
    assert detail_window(hr, 16) == (32, 64, 16)
    assert detail_window(hr, 500) == (0, 32, 64)  # never larger than the image; the half holding the texture
    assert crop(hr, (32, 64, 16)).shape == (3, 16, 16)


def test_panels_are_pasted_where_their_labels_say():
    red, blue = torch.zeros(3, 10, 12), torch.zeros(3, 10, 12)
    red[0], blue[2] = 1.0, 1.0
    figure = np.asarray(comparison_figure([FigureRow("title", [red, blue], ["a", "b"])]))
    assert figure.shape == (GAP + 2 * LABEL_HEIGHT + 10 + GAP, 2 * GAP + 2 * 12 + GAP, 3)
    top = GAP + 2 * LABEL_HEIGHT
    assert (figure[top : top + 10, GAP : GAP + 12] == [255, 0, 0]).all()
    left = GAP + 12 + GAP
    assert (figure[top : top + 10, left : left + 12] == [0, 0, 255]).all()
