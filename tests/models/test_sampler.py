"""The pixel sampler against a grid_sample construction (how the release builds MLP inputs)."""

import pytest
import torch
import torch.nn.functional as F

from pcsr_lightning.models.sampler import QueryGrid, make_cell, make_coord, query_inputs


def grid_sample_inputs(feat, coord, cell):
    """[nearest feature, rel, cell] built with grid_sample(nearest), LIIF-style."""
    h, w = feat.shape[-2:]
    grid = coord.flip(-1).unsqueeze(1)
    z = F.grid_sample(feat, grid, mode="nearest", align_corners=False)[:, :, 0].permute(0, 2, 1)
    lr_coord = make_coord((h, w)).view(h, w, 2).permute(2, 0, 1)[None].expand(feat.shape[0], 2, h, w)
    centre = F.grid_sample(lr_coord, grid, mode="nearest", align_corners=False)[:, :, 0].permute(0, 2, 1)
    rel = coord - centre
    rel[..., 0] *= h
    rel[..., 1] *= w
    rel_cell = cell.clone()
    rel_cell[..., 0] *= h
    rel_cell[..., 1] *= w
    return torch.cat([z, rel, rel_cell], -1)


@pytest.mark.parametrize("lr_size,scale", [((7, 9), 4), ((6, 5), 3), ((8, 8), 2), ((7, 9), 2.5), ((5, 11), 3.3)])
def test_query_inputs_equal_grid_sample_construction(lr_size, scale):
    feat = torch.randn(2, 5, *lr_size)
    hr = (round(lr_size[0] * scale), round(lr_size[1] * scale))
    coord = make_coord(hr)[None].expand(2, -1, -1)
    cell = make_cell(hr, hr[0] * hr[1])[None].expand(2, -1, -1)
    assert torch.equal(query_inputs(feat, coord, cell), grid_sample_inputs(feat, coord, cell))


def test_query_grid_is_the_separable_form_of_query_inputs():
    feat = torch.randn(1, 4, 6, 7)
    hr = (15, 18)
    grid = QueryGrid.build((6, 7), hr)
    full = query_inputs(feat, make_coord(hr)[None], make_cell(hr, hr[0] * hr[1])[None])[0].view(*hr, -1)
    z = feat[0].permute(1, 2, 0)[grid.row_index][:, grid.col_index]
    assert torch.equal(full[..., :4], z)
    assert torch.equal(full[..., 4], grid.rel_row[:, None].expand(hr))
    assert torch.equal(full[..., 5], grid.rel_col[None].expand(hr))
    assert torch.equal(full[..., 6], torch.full(hr, grid.cell[0]))
    assert torch.equal(full[..., 7], torch.full(hr, grid.cell[1]))
    assert float(full[..., 4:6].abs().max()) <= 1 + 1e-6  # ties (x.5) round to even, as grid_sample does
