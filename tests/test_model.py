"""World-model components: shapes, parameter counts, two-hot, SimNorm, Mish, discount."""

import pytest
import torch
import torch.nn.functional as F

from mbdpo.config import MODEL_SIZES, Config, discount_from_episode_length
from mbdpo.envs.task_sets import MT80
from mbdpo.model.functional import mish, simnorm, two_hot, two_hot_decode
from mbdpo.model.world_model import WorldModel

# ALGORITHM.md section 1: parameter counts of the size presets, energy head
# included, for the multi-task mt80 setting (obs 39, action 6, 80 tasks).
PUBLISHED_COUNTS = {1: 1.7e6, 5: 6e6, 19: 21e6, 48: 54e6, 317: 340e6}


def make_cfg(size: int, obs_dim: int = 24, action_dim: int = 6, num_tasks: int = 1, **overrides) -> Config:
    """A single-task config, or with ``num_tasks`` > 1 a multi-task one over the first tasks of mt80
    (obs 24 and action 6 for up to 30 tasks, obs 39 for all 80)."""
    cfg = Config.from_overrides({"model_size": size, "device": "cpu", **overrides})
    if num_tasks > 1:
        return cfg.resolve_multitask(MT80[:num_tasks])
    return cfg.resolve(obs_dim, action_dim, 500)


@pytest.mark.parametrize("size", [1, 5])
@pytest.mark.parametrize("num_tasks", [1, 3])
def test_component_shapes(size, num_tasks):
    cfg = make_cfg(size, num_tasks=num_tasks, episodic=True)
    model = WorldModel(cfg)
    batch, latent = 7, MODEL_SIZES[size]["latent_dim"]
    task = torch.randint(num_tasks, (batch,)) if num_tasks > 1 else None
    obs, action = torch.randn(batch, 24), torch.rand(batch, 6) * 2 - 1
    z = model.encode(obs, task)
    assert z.shape == (batch, latent)
    assert model.next(z, action, task).shape == (batch, latent)
    assert model.reward(z, action, task).shape == (batch, 101)
    assert model.predicted_reward(z, action, task).shape == (batch, 1)
    assert model.q_logits(z, action, task).shape == (MODEL_SIZES[size]["num_q"], batch, 101)
    assert model.q_value(z, action, task, reduce="min", target=True).shape == (batch, 1)
    assert model.energy(z, action, task).shape == (batch, 1)
    assert model.termination(z, task).shape == (batch, 1)
    pi_action, info = model.pi(z, task)
    assert pi_action.shape == (batch, 6) and pi_action.abs().max() <= 1
    assert info["log_prob"].shape == (batch, 1)


def test_heads_start_at_zero():
    model = WorldModel(make_cfg(1))
    z, action = torch.rand(4, 128), torch.rand(4, 6)
    assert torch.allclose(model.predicted_reward(z, action), torch.zeros(4, 1), atol=1e-6)
    assert torch.allclose(model.q_value(z, action), torch.zeros(4, 1), atol=1e-6)
    assert torch.allclose(model.energy(z, action), torch.zeros(4, 1))


@pytest.mark.parametrize("size", [1, 5, 19, 48, 317])
def test_parameter_counts_match_published(size):
    with torch.device("meta"):
        model = WorldModel(make_cfg(size, obs_dim=39, action_dim=6, num_tasks=80))
    total = model.parameter_counts()["total"]
    assert abs(total - PUBLISHED_COUNTS[size]) / PUBLISHED_COUNTS[size] < 0.05, total


def test_two_hot_round_trip():
    values = torch.tensor([[-500.0], [-3.2], [-0.01], [0.0], [0.7], [12.0], [900.0]])
    encoded = two_hot(values, 101, -10, 10)
    assert torch.allclose(encoded.sum(-1), torch.ones(7))
    assert (encoded > 0).sum(-1).max() <= 2
    # Decoding takes a softmax, so feed log-probabilities of the two-hot vector.
    decoded = two_hot_decode(torch.log(encoded + 1e-12), -10, 10)
    assert torch.allclose(decoded, values, rtol=1e-3, atol=1e-3)


def test_simnorm_groups_sum_to_one():
    x = simnorm(torch.randn(5, 64) * 3, 8)
    groups = x.reshape(5, 8, 8)
    assert torch.allclose(groups.sum(-1), torch.ones(5, 8))
    assert (x >= 0).all()


def test_simnorm_is_the_softmax_of_each_group_and_keeps_the_input_layout():
    x = (torch.randn(2, 3, 64, dtype=torch.float64) * 3).requires_grad_()
    expected = F.softmax(x.reshape(2, 3, 16, 4), dim=-1).reshape(2, 3, 64)
    assert torch.allclose(simnorm(x, 4), expected, atol=1e-12) and simnorm(x, 4).is_contiguous()
    assert torch.autograd.gradcheck(lambda t: simnorm(t, 4), (x,))


def test_encoder_output_is_simnorm():
    model = WorldModel(make_cfg(1))
    z = model.encode(torch.randn(3, 24))
    assert torch.allclose(z.reshape(3, -1, 8).sum(-1), torch.ones(3, 16), atol=1e-5)


def test_mish_matches_reference_values_and_gradients():
    x = (torch.randn(400, dtype=torch.float64) * 8).requires_grad_()
    assert torch.allclose(mish(x), F.mish(x), atol=1e-12)
    assert torch.autograd.gradcheck(mish, (x,))


@pytest.mark.parametrize("length, expected", [(500, 0.99), (100, 0.95), (1000, 0.995), (10, 0.95)])
def test_discount_heuristic(length, expected):
    assert discount_from_episode_length(length, 0.95, 0.995, 5) == pytest.approx(expected)


def test_polyak_update_moves_targets_by_tau():
    model = WorldModel(make_cfg(1))
    online = next(model.q_heads.parameters())
    target = next(model.target_q_heads.parameters())
    with torch.no_grad():
        online.add_(1.0)
    before = target.clone()
    model.update_targets()
    assert torch.allclose(target, before + 0.01 * (online - before), atol=1e-6)


def test_q_ensemble_subset_equals_the_same_heads_of_the_full_ensemble():
    model = WorldModel(make_cfg(5)).eval()
    with torch.no_grad():
        for p in model.q_heads.parameters():
            p.normal_(0, 0.1)
    z, action = torch.rand(4, 512), torch.rand(4, 6)
    members = torch.tensor([3, 1])
    full = model.q_logits(z, action)
    assert torch.allclose(model.q_logits(z, action, members=members), full[members], atol=1e-6)
