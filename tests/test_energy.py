"""Both energy objectives learn to rank behaviour actions above uniform ones (paper eq. 9)."""

import pytest
import torch

from mbdpo.energy import binary_energy_loss, in_batch_negative_indices, infonce_energy_loss
from mbdpo.model.layers import init_weights, mlp


def behaviour_action(state: torch.Tensor) -> torch.Tensor:
    """A known, state-dependent behaviour policy: a = 0.8 sin(3 s) + small noise."""
    return (0.8 * torch.sin(3 * state) + 0.05 * torch.randn_like(state)).clamp(-1, 1)


@pytest.mark.parametrize("objective", ["infonce", "binary"])
def test_energy_ranks_behaviour_actions_above_uniform(objective):
    torch.manual_seed(0)
    state_dim = action_dim = 2
    head = mlp(state_dim + action_dim, [64, 64], 1)
    init_weights(head)

    def energy(z, a):
        return head(torch.cat([z, a], dim=-1))

    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(400):
        z = torch.rand(256, state_dim) * 2 - 1
        a = behaviour_action(z)
        if objective == "infonce":
            loss = infonce_energy_loss(energy, z, a, num_negatives=16)
        else:
            policy_sample = torch.rand_like(a) * 2 - 1  # an untrained prior: uniform proposals
            loss = binary_energy_loss(energy, z, a, policy_sample)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    with torch.no_grad():
        z = torch.rand(2000, state_dim) * 2 - 1
        behaviour = energy(z, behaviour_action(z))
        uniform = energy(z, torch.rand(2000, action_dim) * 2 - 1)
    ranked_correctly = (behaviour > uniform).float().mean().item()
    assert ranked_correctly > 0.85, ranked_correctly


def test_in_batch_negatives_never_include_the_positive():
    index = in_batch_negative_indices(50, 20)
    assert index.shape == (50, 20)
    assert not (index == torch.arange(50).unsqueeze(1)).any()
    assert all(len(set(row.tolist())) == 20 for row in index)


def test_infonce_pairs_stay_aligned():
    """With an energy that is high only for the true pairing, the loss is near zero."""
    z = torch.linspace(-1, 1, 64).unsqueeze(1)
    a = z.clone()

    def matching_energy(z_, a_):
        return -1e4 * (z_ - a_).pow(2).sum(-1, keepdim=True)

    assert infonce_energy_loss(matching_energy, z, a, num_negatives=8).item() < 0.05
    shuffled = a[torch.randperm(64)]
    assert infonce_energy_loss(matching_energy, z, shuffled, num_negatives=8).item() > 1.0
