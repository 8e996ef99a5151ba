"""The paper's alignment diagnostics (cross-TD error, policy drift) against computations by hand."""

import math

import numpy as np
import pytest
import torch

from mbdpo.diagnostics import ExponentialAverage, episode_diagnostics, prior_log_prob
from mbdpo.model.functional import symexp
from mbdpo.model.world_model import WorldModel
from tests.test_model import make_cfg

OBS_DIM, ACTION_DIM, STEPS = 5, 2, 7


@pytest.fixture
def model() -> WorldModel:
    """A tiny model with random weights everywhere (the Q and reward heads start at zero otherwise),
    and target Q heads that differ from the online ones."""
    torch.manual_seed(0)
    cfg = make_cfg(1, obs_dim=OBS_DIM, action_dim=ACTION_DIM, enc_dim=16, mlp_dim=16, latent_dim=16)
    model = WorldModel(cfg)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.3)
    return model.eval()


@pytest.fixture
def episode():
    rng = np.random.default_rng(1)
    observations = rng.normal(size=(STEPS + 1, OBS_DIM)).astype(np.float32)
    actions = rng.uniform(-0.9, 0.9, size=(STEPS, ACTION_DIM)).astype(np.float32)
    rewards = rng.uniform(0, 1, size=STEPS)
    terminals = np.zeros(STEPS)
    terminals[-1] = 1.0
    return observations, actions, rewards, terminals


def q_by_hand(model: WorldModel, z: torch.Tensor, action: torch.Tensor, heads) -> float:
    """Average over heads of symexp(sum softmax(logits) * bin centres), one head at a time."""
    cfg = model.cfg
    centres = torch.linspace(cfg.vmin, cfg.vmax, cfg.num_bins)
    values = []
    for k in range(cfg.num_q):
        logits = heads(torch.cat([z, action]).unsqueeze(0))[k, 0]
        values.append(float(symexp((torch.softmax(logits, -1) * centres).sum())))
    return sum(values) / len(values)


@torch.no_grad()
def test_cross_td_error_and_drift_equal_a_computation_by_hand(model, episode):
    observations, actions, rewards, terminals = episode
    logged = episode_diagnostics(model, observations, actions, rewards, terminals)
    td_errors, drifts = [], []
    for t in range(STEPS):
        z = model.encode(torch.as_tensor(observations[t]).unsqueeze(0))[0]
        next_z = model.encode(torch.as_tensor(observations[t + 1]).unsqueeze(0))[0]
        action = torch.as_tensor(actions[t])
        next_mean = torch.tanh(model.policy_head(next_z.unsqueeze(0))[0, :ACTION_DIM])
        target = rewards[t] + model.cfg.discount * (1 - terminals[t]) * q_by_hand(model, next_z, next_mean, model.target_q_heads)
        td_errors.append(abs(q_by_hand(model, z, action, model.q_heads) - target))
        mean = torch.tanh(model.policy_head(z.unsqueeze(0))[0, :ACTION_DIM])
        drifts.append(math.dist(actions[t].tolist(), mean.tolist()))
    assert logged["cross_td_error"] == pytest.approx(np.mean(td_errors), rel=1e-4)
    assert logged["policy_drift"] == pytest.approx(np.mean(drifts), rel=1e-4)
    assert logged["cross_td_error"] > 0.01  # the random heads give a non-trivial value to check


@torch.no_grad()
def test_prior_log_prob_is_the_density_the_policy_samples_with(model):
    z = model.encode(torch.randn(64, OBS_DIM))
    action, info = model.pi(z)
    inside = action.abs().amax(-1) < 0.99  # away from the bounds, where the margin clamps
    assert inside.sum() > 10
    assert torch.allclose(prior_log_prob(model, z, action)[inside], info["log_prob"].squeeze(-1)[inside], atol=1e-3)


@torch.no_grad()
def test_acting_with_the_prior_mean_has_zero_drift(model, episode):
    observations, _, rewards, terminals = episode
    z = model.encode(torch.as_tensor(observations[:-1]))
    prior_means = model.pi(z)[1]["mean"].numpy()
    logged = episode_diagnostics(model, observations, prior_means, rewards, terminals)
    assert logged["policy_drift"] == pytest.approx(0.0, abs=1e-6)


def test_exponential_average_starts_at_the_first_value_and_follows_the_momentum():
    average = ExponentialAverage(momentum=0.9)
    assert average.update({"drift": 2.0}) == {"drift_ema": 2.0}
    assert average.update({"drift": 12.0})["drift_ema"] == pytest.approx(0.9 * 2.0 + 0.1 * 12.0)
