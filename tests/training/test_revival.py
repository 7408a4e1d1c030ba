"""Dead ReLU units of a trained MLP are drawn again without changing the network's output."""

import pytest
import torch

from pcsr_lightning.models.mlp import MLP
from pcsr_lightning.training.revival import DeadUnits


def mlp_with_a_dead_unit() -> MLP:
    torch.manual_seed(0)
    mlp = MLP(6, 3, [5, 4])
    first = mlp.linears[0]
    with torch.no_grad():  # every unit alive on inputs in [0, 1) but unit 2 of the first hidden layer
        for lin in mlp.linears[:2]:
            lin.weight.abs_()
            lin.bias.fill_(0.5)
        first.weight[2] = 0.0
        first.bias[2] = -1.0
    return mlp


def train_forward(mlp: MLP, x: torch.Tensor) -> torch.Tensor:
    mlp.train()
    return mlp(x)


def test_a_unit_never_active_is_drawn_again_and_the_output_does_not_move():
    mlp = mlp_with_a_dead_unit()
    opt = torch.optim.Adam(mlp.parameters(), lr=1e-2)
    units = DeadUnits([mlp], every=3)
    x = torch.rand(64, 6)
    for _ in range(2):
        opt.zero_grad()
        train_forward(mlp, x).abs().mean().backward()
        opt.step()
        assert units.step(opt) == 0  # counted, not yet judged
    first, second = mlp.linears[0], mlp.linears[1]
    live = [i for i in range(5) if i != 2]
    before = {n: p.detach().clone() for n, p in mlp.named_parameters()}
    opt.zero_grad()
    train_forward(mlp, x).abs().mean().backward()
    opt.step()
    stepped = {n: p.detach().clone() for n, p in mlp.named_parameters()}
    assert units.step(opt) == 1 and units.revived == 1  # unit 2 of the first layer, the only dead one
    assert first.weight[2].abs().sum() > 0 and first.bias[2] != -1.0  # fresh incoming weights
    assert torch.equal(second.weight[:, 2], torch.zeros(4))  # no outgoing weight yet: the output is unchanged
    assert torch.equal(first.weight[live], stepped["layers.0.weight"][live])  # live units untouched
    state = opt.state[first.weight]
    assert torch.equal(state["exp_avg"][2], torch.zeros(6)) and torch.equal(state["exp_avg_sq"][2], torch.zeros(6))
    assert torch.equal(opt.state[second.weight]["exp_avg"][:, 2], torch.zeros(4))
    assert not torch.equal(before["layers.0.weight"][2], first.weight[2])
    units.remove()


def test_the_output_is_the_same_right_after_a_revival():
    mlp = mlp_with_a_dead_unit()
    units = DeadUnits([mlp], every=1)
    x = torch.rand(32, 6)
    train_forward(mlp, x)
    mlp.eval()
    out = mlp(x).detach()
    assert units.step() >= 1
    assert torch.allclose(mlp(x), out, atol=1e-7)
    # the revived unit is alive on the same inputs, so gradients reach its outgoing weights
    mlp.train()
    mlp(x).sum().backward()
    assert mlp.linears[1].weight.grad[:, 2].abs().sum() > 0


def test_validation_forwards_do_not_count_as_activity():
    mlp = mlp_with_a_dead_unit()
    units = DeadUnits([mlp], every=1)
    with torch.no_grad():  # every unit active, but seen only without grad (validation, targets)
        mlp(torch.rand(8, 6))
    assert units.step() == 5 + 4  # nothing seen in training: every unit counts as dead
    units.remove()
    train_forward(mlp, torch.rand(8, 6))  # hooks removed: no more counting
    assert not any(a.any() for a in units.active)


def test_every_must_be_a_positive_number_of_steps():
    with pytest.raises(ValueError, match="every N >= 1"):
        DeadUnits([mlp_with_a_dead_unit()], every=0)
