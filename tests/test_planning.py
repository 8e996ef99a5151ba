"""Planners on a toy problem with a known answer.

The toy world model has identity dynamics and a quadratic reward
r(z, a) = -||a - goal||^2 / 2, with Q = 0, so the imagined return of an action
sequence x is J(x) = -sum_t gamma^t ||x_t - goal||^2 / 2 and the Gibbs policy
exp(J / lambda) is Gaussian: x_t ~ N(goal, lambda / gamma^t I).
"""

import math

import pytest
import torch

from mbdpo.config import Config
from mbdpo.planning import DiffusionPlanner, MPPIPlanner
from mbdpo.planning.diffusion import DiffusionSchedule, score_from_denoised_mean, return_weights
from mbdpo.planning.rollout import compiled_rollout, imagined_return

GOAL = torch.tensor([0.3, -0.2])


class QuadraticModel:
    def __init__(self, cfg: Config):
        self.cfg = cfg

    def next(self, z, action, task=None):
        return z

    def predicted_reward(self, z, action, task=None):
        return -0.5 * (action - GOAL).pow(2).sum(-1, keepdim=True)

    def normalised_energy(self, z, action, task=None):
        return torch.zeros(*action.shape[:-1], 1)

    def pi(self, z, task=None):
        return torch.rand(z.shape[0], 2) * 2 - 1, {}

    def q_value(self, z, action, task=None, reduce="avg", target=False):
        return torch.zeros(z.shape[0], 1)

    def action_mask(self, task=None):
        return None

    def discount(self, task=None):
        return self.cfg.discount


def toy_cfg(**overrides) -> Config:
    return Config.from_overrides({"device": "cpu", "model_size": 1, **overrides}).resolve(2, 2, 500)


def sequence_return(cfg: Config, plans: torch.Tensor) -> torch.Tensor:
    """J of action sequences ``[N, H, A]`` under the toy model."""
    model = QuadraticModel(cfg)
    return imagined_return(model, torch.zeros(len(plans), 2), plans.transpose(0, 1), 0.0).squeeze(-1)


def test_score_from_denoised_mean_matches_the_gaussian_case():
    """For a Gaussian target, the exact posterior mean gives the exact score of the noised density."""
    alpha_bar = torch.tensor(0.6)
    x = torch.tensor([0.4])
    # Target N(0, s^2): the noised density is N(0, alpha_bar s^2 + 1 - alpha_bar).
    s2 = 0.25
    exact = -x / (alpha_bar * s2 + 1 - alpha_bar)
    posterior_mean = alpha_bar.sqrt() * s2 * x / (alpha_bar * s2 + 1 - alpha_bar)
    assert torch.allclose(score_from_denoised_mean(x, posterior_mean, alpha_bar), exact)


def test_return_weights():
    returns = torch.tensor([1.0, 2.0, 3.0, 4.0])
    weights = return_weights(returns, temperature=1.0, num_elites=0, normalise=False)
    assert torch.allclose(weights, torch.softmax(returns, 0))
    elites = return_weights(returns, temperature=1.0, num_elites=2, normalise=True)
    assert elites[:2].sum() == 0 and torch.isclose(elites.sum(), torch.tensor(1.0))


def sample_plans(cfg: Config, count: int) -> torch.Tensor:
    planner = DiffusionPlanner(QuadraticModel(cfg), cfg)
    return torch.stack([planner.plan(torch.zeros(1, 2)) for _ in range(count)])


@pytest.mark.parametrize("schedule", ["full-noise", "paper"])
def test_diffusion_sampler_mean_matches_gibbs_policy(schedule):
    torch.manual_seed(0)
    temperature = 0.02
    overrides = dict(
        diffusion_kernel="stochastic", normalize_returns=False, num_elites=0, num_pi_trajs=0,
        diffusion_temperature=temperature, num_samples=512, horizon=2,
    )
    if schedule == "full-noise":  # alpha_bar_N ~ 0.01: the sampler starts from the true N(0, I) prior
        overrides.update(diffusion_steps=30, beta_start=1e-3, beta_end=0.3)
    else:  # the paper's 20-step schedule, alpha_bar_N ~ 0.9
        overrides.update(diffusion_steps=20)
    cfg = toy_cfg(**overrides)
    plans = sample_plans(cfg, 300)
    assert torch.allclose(plans.mean(0), GOAL.expand(2, 2), atol=0.03), plans.mean(0)
    if schedule == "full-noise":
        expected_std = torch.tensor([math.sqrt(temperature), math.sqrt(temperature / cfg.discount)])
        assert torch.allclose(plans.std(0), expected_std.unsqueeze(1).expand(2, 2), rtol=0.2), plans.std(0)


@pytest.mark.parametrize("planner_class, overrides", [
    (DiffusionPlanner, {"diffusion_kernel": "stochastic"}),
    (DiffusionPlanner, {"diffusion_kernel": "warm"}),
    (MPPIPlanner, {"planner": "mppi"}),
])
def test_planner_beats_random_actions(planner_class, overrides):
    torch.manual_seed(0)
    cfg = toy_cfg(**overrides)
    planner = planner_class(QuadraticModel(cfg), cfg)
    plans = torch.stack([planner.plan(torch.zeros(1, 2)) for _ in range(20)])
    random_plans = torch.rand(1000, cfg.horizon, 2) * 2 - 1
    planned, random = sequence_return(cfg, plans).mean(), sequence_return(cfg, random_plans).mean()
    assert planned > random / 10, (planned, random)  # a tenth of random's regret (the optimum is 0)


def test_warm_kernel_starts_from_shifted_plan_and_reset_forgets():
    cfg = toy_cfg(diffusion_kernel="warm", horizon=3)
    planner = DiffusionPlanner(QuadraticModel(cfg), cfg)
    assert torch.equal(planner.shifted_previous_plan(torch.device("cpu")), torch.zeros(3, 2))
    plan = planner.plan(torch.zeros(1, 2))
    shifted = planner.shifted_previous_plan(torch.device("cpu"))
    assert torch.equal(shifted[:2], plan[1:]) and torch.equal(shifted[2], torch.zeros(2))
    planner.reset()
    assert torch.equal(planner.shifted_previous_plan(torch.device("cpu")), torch.zeros(3, 2))


def test_act_adds_exploration_noise_only_when_asked():
    torch.manual_seed(0)
    cfg = toy_cfg(diffusion_kernel="warm", explore_std=0.5)
    planner = DiffusionPlanner(QuadraticModel(cfg), cfg)
    greedy = torch.stack([planner.act(torch.zeros(1, 2)) for _ in range(50)])
    noisy = torch.stack([planner.act(torch.zeros(1, 2), explore=True) for _ in range(50)])
    assert noisy.std(0).mean() > 3 * greedy.std(0).mean()


def test_schedule():
    schedule = DiffusionSchedule.linear(20, 1e-4, 1e-2)
    assert schedule.steps == 20
    assert torch.allclose(schedule.alpha_bar, torch.cumprod(1 - schedule.beta, 0))
    assert 0.89 < schedule.alpha_bar[-1] < 0.91


def test_compiled_rollouts_give_the_uncompiled_returns():
    import dataclasses

    from mbdpo.model.world_model import WorldModel

    cfg = Config.from_overrides({"device": "cpu", "model_size": 1, "enc_dim": 32, "mlp_dim": 32, "latent_dim": 16,
                                 "episodic": True}).resolve(5, 2, 500)
    torch.manual_seed(1)
    model = WorldModel(cfg).eval()
    for parameter in model.parameters():  # away from the zero-initialised heads, so that every term counts
        torch.nn.init.normal_(parameter, std=0.3)
    z, actions = model.encode(torch.randn(64, 5)), torch.rand(cfg.horizon, 64, 2) * 2 - 1
    torch.manual_seed(0)
    eager = imagined_return(model, z, actions, energy_eta=0.1)
    model.cfg = dataclasses.replace(cfg, compile_rollouts=True)
    torch.manual_seed(0)
    compiled = imagined_return(model, z, actions, energy_eta=0.1)
    assert eager.shape == compiled.shape == (64, 1) and eager.std() > 0.01  # candidates' returns differ
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
    assert compiled_rollout.cache_info().currsize == 1  # the compiled rollout was made and used


def test_compiled_rollouts_without_a_compiler_are_a_one_line_error(monkeypatch):
    from mbdpo.agent import Agent
    from mbdpo.errors import ConfigError

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("shutil.which", lambda name: None)
    cfg = Config.from_overrides({"device": "cpu", "model_size": 1, "compile_rollouts": True}).resolve(5, 1, 500)
    with pytest.raises(ConfigError, match="compile_rollouts=true on a CPU needs a C.. compiler"):
        Agent(cfg, torch.device("cpu"))
