"""The amortised score network (ALGORITHM.md section 5) on the toy problem of test_planning.

A network trained only on Monte-Carlo targets must reproduce the Gibbs policy
that the Monte-Carlo sampler itself targets, and acting with it must not
touch the world model's rollouts. From the command line: ``act_mode=auto``
switches and logs its checks, and checkpoints act in the mode they were
trained in, never with an untrained network.
"""

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from mbdpo.agent import Agent
from mbdpo.checkpoint import load_checkpoint, save_checkpoint
from mbdpo.config import Config, parse_overrides
from mbdpo.data.buffer import ReplayBuffer
from mbdpo.errors import ConfigError
from mbdpo.planning import DiffusionPlanner
from mbdpo.planning.base import shifted
from mbdpo.planning.diffusion import (
    best_of_candidates, monte_carlo_denoiser, reverse_diffusion, score_network_denoiser,
)
from mbdpo.planning.rollout import candidate_returns, plan_returns, policy_mean_plan
from mbdpo.planning.score_matching import (
    chain_pairs, check_score_network, return_guidance_loss, score_matching_loss, training_inputs,
)
from mbdpo.planning.score_network import ScoreNetwork, average_weights, sinusoidal_embedding
from mbdpo.training.evaluate import never
from mbdpo.training.online import OnlineTrainer, network_within_gap, saved_monte_carlo_returns
from tests.test_cli import TINY, assert_one_line_error, mbdpo_in_process, rows
from tests.test_planning import GOAL, QuadraticModel, toy_cfg

# One worker runs this module, so that its shared run (score_run, a module fixture) is made once.
pytestmark = pytest.mark.xdist_group("score_run")


TEMPERATURE = 0.02
FULL_NOISE = dict(diffusion_steps=30, beta_start=1e-3, beta_end=0.3)  # alpha_bar_N ~ 0.01


def toy_score_cfg(**overrides):
    return toy_cfg(**{
        "diffusion_kernel": "stochastic", "normalize_returns": False, "num_elites": 0, "num_pi_trajs": 0,
        "diffusion_temperature": TEMPERATURE, "num_samples": 512, "horizon": 2, "latent_dim": 8, "mlp_dim": 128,
        **FULL_NOISE, **overrides,
    })


class ToyModel(QuadraticModel):
    task_embedding = None


def train_on_toy(cfg, inputs: str, steps: int, states: int = 128) -> ScoreNetwork:
    """Regress a score network onto Monte-Carlo targets of the toy model."""
    model, network = ToyModel(cfg), ScoreNetwork(cfg)
    planner = DiffusionPlanner(model, cfg, network)
    schedule = planner.schedule
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    # Annealing the step size averages out the noise of the Monte-Carlo targets.
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    z = torch.zeros(states, cfg.latent_dim)
    monte_carlo = monte_carlo_denoiser(model, cfg, schedule, z)
    for _ in range(steps):
        tau = torch.randint(schedule.steps, (states,))
        with torch.no_grad():
            replay = torch.rand(states, cfg.horizon, cfg.action_dim) * 2 - 1  # stand-in: uniform action sequences
            start = torch.randn(states, cfg.horizon, cfg.action_dim)
            network_denoiser = score_network_denoiser(network, model, schedule, z)
            x_tau = training_inputs(inputs, replay, tau, schedule, network_denoiser, start, True)
            target = monte_carlo(x_tau, tau)
        loss = score_matching_loss(network(z, x_tau, tau, schedule.alpha_bar[tau]), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        annealing.step()
    return network


def sample_network(cfg, network, count: int = 2000) -> torch.Tensor:
    """Plans drawn with the network's reverse chain from N(0, I), as act_mode=score draws them."""
    schedule = DiffusionPlanner(ToyModel(cfg), cfg, network).schedule
    z = torch.zeros(count, cfg.latent_dim)
    with torch.no_grad():
        plans, _ = reverse_diffusion(score_network_denoiser(network, ToyModel(cfg), schedule, z),
                                     torch.randn(count, 2, 2), schedule, True)
    return plans


def assert_gibbs_policy(cfg, plans: torch.Tensor) -> None:
    """Plans ``[count, 2, 2]`` have the toy Gibbs policy's mean (the goal) and spread."""
    expected_std = torch.tensor([math.sqrt(TEMPERATURE), math.sqrt(TEMPERATURE / cfg.discount)])
    assert torch.allclose(plans.mean(0), GOAL.expand(2, 2), atol=0.03), plans.mean(0)
    assert torch.allclose(plans.std(0), expected_std.unsqueeze(1).expand(2, 2), rtol=0.25), plans.std(0)


@pytest.mark.parametrize("inputs", ["mixed", "forward"])
def test_score_network_samples_the_gibbs_policy(inputs):
    torch.manual_seed(0)
    cfg = toy_score_cfg()
    plans = sample_network(cfg, train_on_toy(cfg, inputs, steps=300))
    assert_gibbs_policy(cfg, plans)


def test_score_network_distilled_from_monte_carlo_chains_samples_the_gibbs_policy():
    """score_target=chain: regress each chain's final plan from the inputs the chain visited."""
    torch.manual_seed(0)
    cfg = toy_score_cfg()
    model, network = ToyModel(cfg), ScoreNetwork(cfg)
    planner = DiffusionPlanner(model, cfg)
    schedule = planner.schedule
    chains = 1024
    z = torch.zeros(chains, cfg.latent_dim)
    no_plans = torch.zeros(chains, cfg.horizon, cfg.action_dim)
    visited, plans = planner.monte_carlo_chains(z, no_plans)  # as score_replay_chains plans them, all at once
    assert_gibbs_policy(cfg, plans)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 600)
    for _ in range(600):
        rows = torch.randint(chains, (128,))
        x_tau, tau = chain_pairs(visited[rows])
        loss = score_matching_loss(network(z[:128], x_tau, tau, schedule.alpha_bar[tau]), plans[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        annealing.step()
    sampled = sample_network(cfg, network)
    assert_gibbs_policy(cfg, sampled)


def test_a_jump_network_acts_with_the_mean_plan_monte_carlo_ends_at_in_one_call():
    """score_sampler=jump: regressing each chain's final plan on its start alone, the network's one denoised
    mean from fresh starts is the chains' mean plan (the Gibbs policy's mean, the goal) with next to none of
    their spread, in one network call per action and no rollout. Untrained, it jumps to 0: the test can fail."""
    torch.manual_seed(0)
    cfg = toy_score_cfg(act_mode="auto", score_target="chain", score_sampler="jump")
    network = ScoreNetwork(cfg)
    model = CountingModel(cfg)
    planner = DiffusionPlanner(model, cfg, network)
    planner.use_score_network = True

    def jump_plans() -> torch.Tensor:
        return planner.score_network_candidates(torch.zeros(2000, cfg.latent_dim),
                                                torch.zeros(2000, cfg.horizon, cfg.action_dim), 1)[:, 0]

    assert jump_plans().mean(0).abs().max() < 0.03  # untrained: gate 1/2 on the zero-mean start, teleport 0
    visited, plans = planner.monte_carlo_chains(torch.zeros(512, cfg.latent_dim),
                                                torch.zeros(512, cfg.horizon, cfg.action_dim))
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    annealing = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 300)
    z = torch.zeros(128, cfg.latent_dim)
    for _ in range(300):
        rows = torch.randint(len(plans), (128,))
        x_tau, tau = chain_pairs(visited[rows], start_only=True)
        assert torch.equal(tau, torch.full((128,), cfg.diffusion_steps - 1))
        loss = score_matching_loss(network(z, x_tau, tau, planner.schedule.alpha_bar[tau]), plans[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        annealing.step()
    jumped = jump_plans()
    assert torch.allclose(jumped.mean(0), plans.mean(0), atol=0.01), (jumped.mean(0), plans.mean(0))
    assert torch.allclose(jumped.mean(0), GOAL.expand(2, 2), atol=0.04), jumped.mean(0)
    assert jumped.std(0).max() < 0.3 * math.sqrt(TEMPERATURE), jumped.std(0)
    calls, model.rollout_calls = [], 0
    network.register_forward_hook(lambda *_: calls.append(1))
    planner.act(torch.zeros(1, cfg.latent_dim))
    assert len(calls) == 1 and model.rollout_calls == 0


@pytest.mark.parametrize("overrides", [{"score_target": "denoiser"}, {"score_mc_steps": 2}])
def test_a_jump_network_needs_chain_targets_and_no_monte_carlo_tail(overrides):
    with pytest.raises(ConfigError, match=re.escape("score_sampler=jump takes the network's denoised mean")):
        Config.from_overrides({"act_mode": "auto", "score_target": "chain", "score_sampler": "jump", **overrides
                               }).validate()


NEW_GOAL = torch.tensor([-0.3, 0.4])


class MovedGoalModel(ToyModel):
    """The toy model after learning: the reward's maximiser has moved to NEW_GOAL."""

    def predicted_reward(self, z, action, task=None):
        return -0.5 * (action - NEW_GOAL).pow(2).sum(-1, keepdim=True)


@pytest.mark.parametrize("return_coef", [0.0, 2.0])
def test_return_guidance_follows_the_current_model_where_old_chains_do_not(return_coef):
    """Chains planned under an old model (goal GOAL) teach the network that model's plans; return guidance
    with the current model (goal NEW_GOAL) moves its plans towards the current maximiser. With weight 2 on
    the toy return, the per-step minimiser of regression plus guidance lies about halfway between the two."""
    torch.manual_seed(0)
    cfg = toy_score_cfg()
    network, current = ScoreNetwork(cfg), MovedGoalModel(cfg)
    planner = DiffusionPlanner(ToyModel(cfg), cfg)
    schedule, chains = planner.schedule, 512
    z = torch.zeros(chains, cfg.latent_dim)
    visited, plans = planner.monte_carlo_chains(z, torch.zeros(chains, cfg.horizon, cfg.action_dim))
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-3)
    for _ in range(400):
        rows = torch.randint(chains, (128,))
        x_tau, tau = chain_pairs(visited[rows])
        denoised = network(z[:128], x_tau, tau, schedule.alpha_bar[tau])
        loss = score_matching_loss(denoised, plans[rows])
        loss = loss + return_coef * return_guidance_loss(plan_returns(current, z[:128], denoised, 0.0))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    mean = sample_network(cfg, network, count=1000).mean(0)
    to_old, to_new = (mean - GOAL).norm(dim=-1), (mean - NEW_GOAL).norm(dim=-1)
    if return_coef:
        assert (to_new < 0.7 * (GOAL - NEW_GOAL).norm()).all() and (to_old > 0.25).all(), mean
    else:
        assert (to_old < 0.05).all(), mean


def test_untrained_network_does_not_sample_the_gibbs_policy():
    """The test above can fail: an untrained network (mean 0) is far from the goal."""
    cfg = toy_score_cfg()
    plans = sample_network(cfg, ScoreNetwork(cfg), count=500)
    assert not torch.allclose(plans.mean(0), GOAL.expand(2, 2), atol=0.03)


def test_sinusoidal_embedding_separates_steps():
    embedding = sinusoidal_embedding(torch.arange(20), 64)
    assert embedding.shape == (20, 64)
    distances = torch.cdist(embedding, embedding) + torch.eye(20) * 1e3
    assert distances.min() > 0.1


class CountingModel(ToyModel):
    """Counts the world-model calls an imagined rollout makes."""

    def __init__(self, cfg):
        super().__init__(cfg)
        self.rollout_calls = 0

    def next(self, z, action, task=None):
        self.rollout_calls += 1
        return super().next(z, action, task)

    def predicted_reward(self, z, action, task=None):
        self.rollout_calls += 1
        return super().predicted_reward(z, action, task)


@pytest.mark.parametrize("use_score_network, candidates, expected_calls", [
    (False, 1, "many"), (True, 1, 0), (True, 16, 2 * 2),  # one rollout of H = 2 steps: reward and dynamics each
])
def test_score_only_acting_makes_no_rollouts_and_ranking_candidates_makes_one(
    use_score_network, candidates, expected_calls
):
    cfg = toy_score_cfg(num_pi_trajs=4, score_candidates=candidates)
    model = CountingModel(cfg)
    planner = DiffusionPlanner(model, cfg, ScoreNetwork(cfg))
    planner.use_score_network = use_score_network
    planner.act(torch.zeros(1, cfg.latent_dim))
    if expected_calls == "many":
        assert model.rollout_calls > 2 * 2 * cfg.diffusion_steps, model.rollout_calls
    else:
        assert model.rollout_calls == expected_calls


def test_monte_carlo_refinement_rolls_out_only_its_last_steps():
    """score_mc_steps=k: k Monte-Carlo denoisings (one rollout of H = 2 steps each, reward and dynamics) and
    network calls for the rest of the chain."""
    cfg = toy_score_cfg(num_pi_trajs=0, score_mc_steps=3, act_mode="score")
    model = CountingModel(cfg)
    planner = DiffusionPlanner(model, cfg, ScoreNetwork(cfg))
    planner.use_score_network = True
    planner.act(torch.zeros(1, cfg.latent_dim))
    assert model.rollout_calls == 3 * 2 * 2


def test_monte_carlo_refinement_takes_the_network_plan_toward_the_model_optimum():
    """An untrained network samples plans around 0; the more of the chain's last steps Monte Carlo denoises
    under the toy model, the nearer its goal the plans land."""
    torch.manual_seed(0)
    distances = {}
    for mc_steps in (0, 3, 10):
        cfg = toy_score_cfg(score_mc_steps=mc_steps, act_mode="score")
        planner = DiffusionPlanner(ToyModel(cfg), cfg, ScoreNetwork(cfg))
        plans = planner.score_network_plans(torch.zeros(256, cfg.latent_dim), torch.zeros(256, 2, 2))
        distances[mc_steps] = float((plans - GOAL).norm(dim=-1).mean())
    assert distances[10] < distances[3] < distances[0], distances


@pytest.mark.parametrize("overrides, valid", [
    ({"score_mc_steps": 20}, "diffusion_steps - 1 = 19"),
    ({"score_mc_steps": 2, "act_mode": "mc"}, "act_mode=auto|score"),
    ({"score_mc_steps": 2, "score_candidates": 8}, "score_candidates=1"),
])
def test_bad_monte_carlo_refinement_settings_name_what_is_valid(overrides, valid):
    with pytest.raises(ConfigError, match=re.escape(valid)):
        Config.from_overrides({"act_mode": "score", "diffusion_steps": 20, **overrides}).validate()


def test_best_of_candidates_keeps_the_highest_return_per_state():
    candidates = torch.arange(2 * 3 * 2 * 1, dtype=torch.float32).view(2, 3, 2, 1)
    returns = torch.tensor([[0.1, 0.9, 0.5], [2.0, -1.0, 1.0]])
    assert torch.equal(best_of_candidates(returns, candidates), candidates[[0, 1], [1, 0]])


def test_ranking_network_plans_by_the_model_beats_one_network_plan():
    """An untrained network samples plans around 0; ranked by the toy model's return, acting lands nearer its
    goal, and the more candidates the nearer."""
    torch.manual_seed(0)
    distances = {}
    for candidates in (1, 8, 64):
        cfg = toy_score_cfg(score_candidates=candidates)
        planner = DiffusionPlanner(ToyModel(cfg), cfg, ScoreNetwork(cfg))
        planner.use_score_network = True
        plans = planner.score_network_plans(torch.zeros(256, cfg.latent_dim), torch.zeros(256, 2, 2))
        distances[candidates] = float((plans - GOAL).norm(dim=-1).mean())
    assert distances[64] < distances[8] < distances[1], distances


def tiny_agent(**overrides) -> Agent:
    cfg = Config.from_overrides({
        "device": "cpu", "model_size": 1, "mlp_dim": 32, "enc_dim": 32, "latent_dim": 16, "num_samples": 32,
        "num_elites": 8, "num_pi_trajs": 4, "diffusion_steps": 3, "batch_size": 16, "score_states": 8,
        **overrides,
    }).resolve(4, 2, 100)
    return Agent(cfg, torch.device("cpu"))


def random_batch(cfg):
    buffer = ReplayBuffer(200, cfg.obs_dim, cfg.action_dim, cfg.horizon)
    rng = np.random.default_rng(0)
    buffer.add_episode(rng.normal(size=(101, cfg.obs_dim)), rng.uniform(-1, 1, (100, cfg.action_dim)),
                       rng.random(100), np.zeros(100))
    return buffer.sample(cfg.batch_size, rng, torch.device("cpu"))


def test_score_network_size_is_its_own_or_the_models_mlp_width():
    def hidden_widths(agent):
        return [layer[0].out_features for layer in agent.score_network.net[:-1]]

    assert hidden_widths(tiny_agent(act_mode="score")) == [32, 32]  # mlp_dim, two layers
    wider = tiny_agent(act_mode="score", score_mlp_dim=48, score_layers=3)
    assert hidden_widths(wider) == [48, 48, 48]
    before = [p.clone() for p in wider.score_network.parameters()]
    for _ in range(2):  # the first step moves only the zero-initialised output layer
        wider.update(random_batch(wider.cfg))
    assert all(not torch.equal(a, b) for a, b in zip(before, wider.score_network.parameters()) if a.dim() == 2)


@pytest.mark.parametrize("overrides, message", [
    ({"score_mlp_dim": -1}, "score_mlp_dim=-1 must be >= 0 (0: mlp_dim=512)"),
    ({"score_layers": 0}, "score_layers=0 must be positive"),
])
def test_a_bad_score_network_size_names_what_is_valid(overrides, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Config.from_overrides(overrides).validate()


def test_agent_updates_the_score_network_only_when_it_may_act_with_it():
    for act_mode, updated in [("mc", False), ("auto", True), ("score", True)]:
        agent = tiny_agent(act_mode=act_mode)
        before = [p.clone() for p in agent.score_network.parameters()]
        metrics = agent.update(random_batch(agent.cfg))
        changed = any(not torch.equal(a, b) for a, b in zip(before, agent.score_network.parameters()))
        assert changed == updated and ("score_loss" in metrics) == updated
        assert agent.score_network.trained == updated


def test_score_updates_take_successive_states_of_the_batch():
    agent = tiny_agent(act_mode="auto", score_updates=2)  # batch_size 16, score_states 8
    batch, z = random_batch(agent.cfg), torch.randn(16, 16)
    seen, update = [], agent.update_score_network

    def recorded(part, part_z):
        seen.append((part.obs[0], part_z))
        return update(part, part_z)

    agent.update_score_network = recorded
    metrics = agent.train_score_network(batch, z)
    assert agent.score_network.updates == 2 and "score_loss" in metrics
    for (obs, part_z), first in zip(seen, (0, 8), strict=True):
        assert torch.equal(obs, batch.obs[0][first:first + 8]) and torch.equal(part_z, z[first:first + 8])


def test_more_score_updates_than_the_batch_holds_name_what_is_valid():
    with pytest.raises(ConfigError, match=re.escape("score_updates=3 must be in [1, batch_size // score_states=2]")):
        Config.from_overrides({"act_mode": "auto", "batch_size": 16, "score_states": 8, "score_updates": 3}).validate()
    Config.from_overrides({"act_mode": "mc", "batch_size": 16, "score_states": 8, "score_updates": 3}).validate()


def constant_network(cfg, value: float, updates: int) -> ScoreNetwork:
    """A score network whose every weight is ``value``, after ``updates`` updates."""
    network = ScoreNetwork(cfg)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.fill_(value)
    network.updates.fill_(updates)
    return network


def test_averaged_weights_are_the_plain_mean_then_an_exponential_average():
    cfg = Config.from_overrides({"mlp_dim": 8}).resolve(4, 2, 100)
    decay, weights = 0.75, [4.0, 8.0, 0.0, 12.0, 20.0, 4.0]
    average = constant_network(cfg, -100.0, 0)  # initial weights the average must not lean on
    expected = []
    for n, value in enumerate(weights, start=1):
        average_weights(average, constant_network(cfg, value, n), decay)
        # the mean of the weights so far while it spans at most 1 / (1 - decay) = 4 updates, then an EMA
        expected.append(sum(weights[:n]) / n if n <= 4 else decay * expected[-1] + (1 - decay) * value)
        assert all(torch.allclose(p, torch.full_like(p, expected[-1])) for p in average.parameters()), n
        assert int(average.updates) == n
    assert expected[:4] == [4.0, 6.0, 4.0, 6.0] and expected[4:] == [9.5, 8.125]


def test_with_score_ema_the_agent_acts_and_checkpoints_with_the_average_of_the_trained_weights():
    agent = tiny_agent(act_mode="score", score_ema=0.9)
    assert agent.planner.score_network is agent.acting_score_network is not agent.score_network
    trained = []
    for _ in range(3):
        agent.update(random_batch(agent.cfg))
        trained.append([p.detach().clone() for p in agent.score_network.parameters()])
    # three updates: the plain mean of the three trained weights (1 / (1 - 0.9) = 10 updates before the EMA)
    for averaged, *history in zip(agent.acting_score_network.parameters(), *trained, strict=True):
        assert torch.allclose(averaged, sum(history) / 3, atol=1e-6)
    assert not any(p.requires_grad for p in agent.acting_score_network.parameters())
    obs = np.zeros(4, dtype=np.float32)
    torch.manual_seed(0)
    action = agent.act(obs, explore=False)
    restored = tiny_agent(act_mode="score", score_ema=0.9)
    restored.load_state_dict(agent.state_dict())
    torch.manual_seed(0)
    assert np.array_equal(restored.act(obs, explore=False), action)
    agent.acting_score_network.load_state_dict(agent.score_network.state_dict())  # act with the trained weights
    torch.manual_seed(0)
    assert not np.array_equal(agent.act(obs, explore=False), action)


def test_a_checkpoint_without_an_average_starts_it_at_the_trained_weights():
    agent = tiny_agent(act_mode="score")
    agent.update(random_batch(agent.cfg))
    averaging = tiny_agent(act_mode="score", score_ema=0.99)
    averaging.load_state_dict(agent.state_dict())
    for averaged, trained in zip(averaging.acting_score_network.parameters(), agent.score_network.parameters()):
        assert torch.equal(averaged, trained)


@pytest.mark.parametrize("decay", [-0.1, 1.0])
def test_a_bad_score_ema_names_what_is_valid(decay):
    with pytest.raises(ConfigError, match=re.escape(f"score_ema={decay} must be a decay in [0, 1)")):
        Config.from_overrides({"score_ema": decay}).validate()


def largest_score_step(agent: Agent) -> float:
    """The largest change of one score-network weight in the agent's first update."""
    before = [p.detach().clone() for p in agent.score_network.parameters()]
    agent.update(random_batch(agent.cfg))
    return max((p - b).abs().max().item() for p, b in zip(agent.score_network.parameters(), before, strict=True))


def test_score_lr_is_the_score_networks_step_size_and_a_fine_tuned_run_keeps_its_own_step_sizes():
    # Adam's first step moves every weight with a gradient by the step size itself (m / sqrt(v) = g / |g|)
    assert largest_score_step(tiny_agent(act_mode="score")) == pytest.approx(Config().lr, rel=1e-3)
    agent = tiny_agent(act_mode="score", score_lr=1e-2)
    assert largest_score_step(agent) == pytest.approx(1e-2, rel=1e-3)
    # a fine-tuned agent loads the moments of the saved optimisers, and steps at its own lr and score_lr
    finetuned = tiny_agent(act_mode="score", lr=1e-3, score_lr=2e-3)
    finetuned.load_state_dict(agent.state_dict())
    assert [group["lr"] for group in finetuned.score_optimizer.param_groups] == [2e-3]
    assert [group["lr"] for group in finetuned.policy_optimizer.param_groups] == [1e-3]
    assert [group["lr"] for group in finetuned.optimizer.param_groups] == [1e-3 * Config().enc_lr_scale, 1e-3]
    for loaded, saved in zip(finetuned.optimizer.state.values(), agent.optimizer.state.values(), strict=True):
        assert torch.equal(loaded["exp_avg"], saved["exp_avg"])
    with pytest.raises(ConfigError, match=re.escape("score_lr=-0.001 must be >= 0 (0: lr=0.0003)")):
        Config.from_overrides({"score_lr": -0.001}).validate()


def counting_rollouts(agent: Agent) -> list[int]:
    """Counts the world model's latent dynamics calls from now on (one element per call)."""
    calls, dynamics = [], agent.model.next

    def counted(*args, **kwargs):
        calls.append(1)
        return dynamics(*args, **kwargs)

    agent.model.next = counted
    return calls


@pytest.mark.parametrize("anchor", ["none", "prior", "chain", "input"])
def test_chain_targets_come_from_exploring_monte_carlo_acting_and_need_no_rollouts(anchor):
    agent = tiny_agent(act_mode="auto", score_target="chain", score_anchor=anchor)
    obs = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    batch = random_batch(agent.cfg)
    assert agent.update_score_network(batch, torch.zeros(16, 16)) == {}  # no chains yet
    for row in obs[:10]:
        agent.act(row)  # evaluation (no exploration): not stored
    assert len(agent.chains) == 0
    for row in obs:
        agent.act(row, explore=True)
    assert len(agent.chains) == 20
    assert torch.equal(agent.chains.plan[19], agent.planner.previous_plan)
    assert torch.equal(agent.chains.obs[19], torch.as_tensor(obs[19]))
    calls = counting_rollouts(agent)
    metrics = agent.update_score_network(batch, torch.zeros(16, 16))
    # No Monte Carlo; with the current prior's plan (anchor or input), one rollout of its mean plan
    # (H - 1 dynamics calls); the anchors stored with the chains need none.
    assert metrics["score_loss"] > 0 and agent.score_network.trained
    assert len(calls) == (agent.cfg.horizon - 1 if anchor in ("prior", "input") else 0)
    denoiser = tiny_agent(act_mode="auto")  # the test can fail: the Monte-Carlo a_bar target rolls out
    calls = counting_rollouts(denoiser)
    denoiser.update(random_batch(denoiser.cfg))
    assert calls


@pytest.mark.parametrize("target", ["denoiser", "chain"])
@pytest.mark.parametrize("anchor", ["prior", "input"])
def test_a_score_step_rolls_the_prior_plan_out_once_and_trains_the_network_only(anchor, target, monkeypatch):
    """The prior's plan anchors the network where it builds its training inputs and in its loss alike: one
    rollout per score step, and the score loss reaches the network's parameters only."""
    chains = {"score_replay_chains": 8} if target == "chain" else {}  # 8 stored chains: one score step's worth
    agent = tiny_agent(act_mode="auto", score_target=target, score_anchor=anchor, **chains)
    rollouts = []

    def counted(*args, **kwargs):
        rollouts.append(1)
        return policy_mean_plan(*args, **kwargs)

    monkeypatch.setattr("mbdpo.agent.policy_mean_plan", counted)
    monkeypatch.setattr("mbdpo.planning.diffusion.policy_mean_plan", counted)
    batch = random_batch(agent.cfg)
    with torch.no_grad():
        z = agent.model.encode(batch.obs[0])
    metrics = agent.update_score_network(batch, z)
    assert metrics["score_loss"] > 0 and len(rollouts) == 1
    assert all(p.grad is None for p in agent.model.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.score_network.parameters())


@pytest.mark.parametrize("anchor", ["none", "prior", "input"])
def test_a_closed_gate_gives_the_anchor_the_policy_prior_mean_plan_or_zero(anchor):
    """score_anchor=prior: the network's teleport term starts at the prior's mean plan, rolled out by the
    model with the prior's mean actions; without an anchor, or with the prior's plan as an input, at 0."""
    agent = tiny_agent(act_mode="auto", score_target="chain", score_anchor=anchor)
    cfg, model, network = agent.cfg, agent.model, agent.score_network
    with torch.no_grad():
        network.net[-1].bias[: cfg.horizon * cfg.action_dim] = -50.0  # gate logits: only the teleport term
        z = model.encode(torch.randn(5, 4))
        denoise = score_network_denoiser(network, model, agent.planner.schedule_on(torch.device("cpu")), z)
        plan = denoise(torch.randn(5, cfg.horizon, cfg.action_dim), 1)
        expected, latent = [], z
        for _ in range(cfg.horizon):
            mean_action = model.pi(latent)[1]["mean"]
            expected.append(mean_action if anchor == "prior" else torch.zeros_like(mean_action))
            latent = model.next(latent, mean_action)
    torch.testing.assert_close(plan, torch.stack(expected, dim=1))
    assert anchor != "prior" or plan.abs().mean() > 1e-3  # the prior's plan is not 0: the test can fail


@pytest.mark.parametrize("anchor", ["none", "input"])
def test_the_input_anchor_shows_the_network_the_current_prior(anchor):
    """score_anchor=input: the same network, latents and inputs denoise differently once the policy prior
    moves, and acting with it rolls the prior's plan out once; without an anchor the prior plays no part."""
    agent = tiny_agent(act_mode="score", score_anchor=anchor)
    network, model = agent.score_network, agent.model
    schedule = agent.planner.schedule_on(torch.device("cpu"))
    torch.nn.init.normal_(network.net[-1].weight)  # a network whose output follows all its inputs
    z, x_tau = torch.randn(3, agent.cfg.latent_dim), torch.randn(3, agent.cfg.horizon, agent.cfg.action_dim)
    with torch.no_grad():
        calls = counting_rollouts(agent)
        before = score_network_denoiser(network, model, schedule, z)(x_tau, 1)
        assert len(calls) == (agent.cfg.horizon - 1 if anchor == "input" else 0)
        torch.nn.init.normal_(model.policy_head[-1].weight)  # the prior moves
        after = score_network_denoiser(network, model, schedule, z)(x_tau, 1)
    assert (after - before).abs().max() > 1e-3 if anchor == "input" else torch.equal(after, before)


@pytest.mark.parametrize("target", ["denoiser", "chain"])
@pytest.mark.parametrize("state", ["latent", "observation"])
def test_an_observation_network_plans_the_same_when_the_encoder_moves(state, target):
    """score_state=observation: the network reads the observation, so once trained (on either target) its
    plan from one observation stays when the encoder moves; a network on the latent z plans anew."""
    agent = tiny_agent(act_mode="score", score_state=state, score_target=target,
                       score_replay_chains=8.0 if target == "chain" else 0.0)
    metrics = agent.update(random_batch(agent.cfg))
    assert agent.acting_mode == "score" and torch.isfinite(metrics["score_loss"])
    torch.nn.init.normal_(agent.score_network.net[-1].weight)  # a network whose output follows all its inputs
    obs = np.random.default_rng(1).normal(size=agent.cfg.obs_dim).astype(np.float32)

    def first_action() -> np.ndarray:
        torch.manual_seed(0)
        agent.reset()
        return agent.act(obs)

    before = first_action()
    with torch.no_grad():
        for parameter in agent.model.encoder.parameters():
            parameter.add_(torch.randn_like(parameter))  # the encoder moves
    after = first_action()
    assert np.array_equal(after, before) == (state == "observation"), (before, after)


def test_observation_state_needs_state_observations():
    with pytest.raises(ConfigError, match=re.escape("not obs=rgb; valid: score_state=latent, or obs=state")):
        Config.from_overrides({"act_mode": "score", "score_state": "observation", "obs": "rgb"}).validate()


def test_chain_anchors_are_the_prior_plans_of_the_chains_time_and_train_the_network():
    """score_anchor=chain: each stored chain keeps the prior's mean plan from its state by the model that
    planned it; after the prior moves, training still measures the chain's departure from that plan."""
    agent = tiny_agent(act_mode="auto", score_target="chain", score_anchor="chain", score_states=8)
    obs = torch.as_tensor(np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32))
    for row in obs:
        agent.act(row.numpy(), explore=True)
    with torch.no_grad():
        then = policy_mean_plan(agent.model, agent.model.encode(obs), agent.cfg.horizon)
        torch.testing.assert_close(agent.chains.anchor[:10], then)
        torch.nn.init.normal_(agent.model.policy_head[-1].weight)  # the prior moves
        now = policy_mean_plan(agent.model, agent.model.encode(obs), agent.cfg.horizon)
    assert (now - then).abs().max() > 0.1  # the test can fail: stored and current anchors differ

    def loss_with(anchor_of: str) -> torch.Tensor:
        torch.manual_seed(3)
        z, obs, x_tau, tau, target, task, stored = agent._chain_targets()
        anchor = stored if anchor_of == "chain" else None
        schedule = agent.planner.schedule_on(torch.device("cpu"))
        with torch.no_grad():
            denoised = score_network_denoiser(agent.score_network, agent.model, schedule, z, task, anchor=anchor,
                                              obs=obs)
            return score_matching_loss(denoised(x_tau, tau), target)

    torch.nn.init.normal_(agent.score_network.net[-1].weight)  # a network whose output follows the anchor
    stored_loss, current_loss = loss_with("chain"), loss_with("current prior")
    torch.manual_seed(3)
    metrics = agent.update_score_network(random_batch(agent.cfg), torch.zeros(16, 16))
    torch.testing.assert_close(metrics["score_loss"], stored_loss)
    assert not torch.isclose(stored_loss, current_loss)
    restored = tiny_agent(act_mode="auto", score_target="chain", score_anchor="chain", score_states=8)
    restored.load_state_dict(agent.state_dict())
    assert torch.equal(restored.chains.anchor[:10], agent.chains.anchor[:10])


def test_copies_denoise_as_repeated_latents_with_the_prior_rolled_out_once_per_latent():
    agent = tiny_agent(act_mode="score", score_anchor="prior")
    network, model = agent.score_network, agent.model
    schedule = agent.planner.schedule_on(torch.device("cpu"))
    torch.nn.init.normal_(network.net[-1].weight)  # a network whose output depends on z, x_tau and the anchor
    z, x_tau = torch.randn(3, agent.cfg.latent_dim), torch.randn(3 * 5, agent.cfg.horizon, agent.cfg.action_dim)
    with torch.no_grad():
        repeated = score_network_denoiser(network, model, schedule, z.repeat_interleave(5, 0))(x_tau, 1)
        calls = counting_rollouts(agent)
        copied = score_network_denoiser(network, model, schedule, z, copies=5)(x_tau, 1)
    torch.testing.assert_close(copied, repeated)
    assert len(calls) == agent.cfg.horizon - 1  # the anchor's prior rollout, batched over the 3 latents once


def test_return_guidance_trains_the_network_only():
    """score_return_coef: the score step's extra loss climbs J through the frozen world model, whose
    parameters (and the target Q heads' frozen state) it leaves as they were."""
    gradients = {}
    for coef in (0.0, 1.0):
        torch.manual_seed(0)
        agent = tiny_agent(act_mode="score", score_target="chain", score_replay_chains=8, score_return_coef=coef)
        with torch.no_grad():  # a new model's reward and Q heads output 0, whatever the plan: give them a slope
            for parameter in agent.model.parameters():
                parameter.add_(0.1 * torch.randn_like(parameter))
        model_before = {k: v.clone() for k, v in agent.model.state_dict().items()}
        batch = random_batch(agent.cfg)
        with torch.no_grad():
            z = agent.model.encode(batch.obs[0])
        metrics = agent.update_score_network(batch, z)
        assert ("score_return_loss" in metrics) == bool(coef)
        assert all(torch.equal(v, agent.model.state_dict()[k]) for k, v in model_before.items())
        assert all(p.grad is None for p in agent.model.parameters())
        assert not any(p.requires_grad for p in agent.model.target_q_heads.parameters())
        gradients[coef] = torch.cat([p.grad.flatten() for p in agent.score_network.parameters()])
    assert not torch.allclose(gradients[0.0], gradients[1.0])  # same chains and batch: guidance changed the step
    with pytest.raises(ConfigError, match="score_return_coef=-1"):
        tiny_agent(act_mode="auto", score_return_coef=-1)
    with pytest.raises(ConfigError, match="act_mode=mc does not train"):
        tiny_agent(act_mode="mc", score_return_coef=1)


def test_network_acting_stores_no_chains_and_checkpoints_keep_them():
    agent = tiny_agent(act_mode="auto", score_target="chain")
    obs = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    for row in obs:
        agent.act(row, explore=True)
    agent.update(random_batch(agent.cfg))
    agent.set_acting_mode("score")
    agent.act(obs[0], explore=True)
    assert len(agent.chains) == 12
    restored = tiny_agent(act_mode="auto", score_target="chain")
    restored.load_state_dict(agent.state_dict())
    assert len(restored.chains) == 12 and torch.equal(restored.chains.visited, agent.chains.visited)


def test_score_refresh_plans_a_fraction_of_exploring_network_actions_by_monte_carlo():
    obs = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    for refresh, low, high in [(0.0, 0, 0), (0.5, 18, 42), (1.0, 60, 60)]:
        torch.manual_seed(0)
        # One candidate: network acting makes no rollouts, so the rollouts counted are the refreshed actions'.
        agent = tiny_agent(act_mode="auto", score_target="chain", score_refresh=refresh, score_candidates=1)
        for row in obs[:8]:
            agent.act(row, explore=True)
        agent.update(random_batch(agent.cfg))
        agent.set_acting_mode("score")
        calls = counting_rollouts(agent)
        for row in obs:
            agent.act(row, explore=True)
            agent.act(row)  # evaluation acting is never refreshed
        refreshed = len(agent.chains) - 8
        assert low <= refreshed <= high, (refresh, refreshed)
        assert bool(calls) == (refreshed > 0)  # refreshed actions were planned by rollouts, the others not
        assert agent.acting_mode == "score"


def test_replay_chains_are_planned_from_the_batch_start_states_at_the_given_rate():
    batch = random_batch(tiny_agent().cfg)
    for rate, low, high in [(0.0, 0, 0), (0.5, 6, 34), (2.0, 80, 80)]:
        torch.manual_seed(0)
        agent = tiny_agent(act_mode="auto", score_target="chain", score_replay_chains=rate)
        for _ in range(40):
            agent.update(batch)
        assert low <= len(agent.chains) <= high, (rate, len(agent.chains))
    assert torch.equal(agent.chains.obs[:2], batch.obs[0][:2])  # the batch's first start states
    assert agent.score_network.trained and agent.chains.plan.abs().max() <= 1
    agent.act(batch.obs[0][0].numpy(), explore=True)  # Monte-Carlo acting (not switched): its chain is not stored
    assert agent.acting_mode == "mc" and len(agent.chains) == 80


def test_warm_replay_chains_start_from_the_window_actions_shifted_as_a_previous_plan():
    agent = tiny_agent(act_mode="auto", score_target="chain", score_replay_chains=2, diffusion_kernel="warm")
    batch = random_batch(agent.cfg)
    agent.update(batch)
    windows = batch.action[:, :2].transpose(0, 1)  # [2, H, A]
    assert torch.equal(agent.chains.visited[:2, -1], shifted(windows))  # the input at tau = N-1


def test_act_mode_score_learns_from_replay_chains_alone():
    """score_target=chain needs no Monte-Carlo acting when the chains come from the replay."""
    agent = tiny_agent(act_mode="score", score_target="chain", score_replay_chains=8)
    assert agent.acting_mode == "mc"
    metrics = agent.update(random_batch(agent.cfg))  # 8 chains = score_states: it trains at once
    assert len(agent.chains) == 8 and metrics["score_loss"] > 0 and agent.acting_mode == "score"
    with pytest.raises(ConfigError, match="score_replay_chains"):
        tiny_agent(act_mode="score", score_target="chain")


def test_score_check_reports_errors_per_step():
    agent = tiny_agent(act_mode="auto")
    check = agent.check_score_network(np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32))
    assert check.network_error.shape == check.monte_carlo_error.shape == (3,)
    assert (check.monte_carlo_error > 0).all() and check.ratio > 0


def test_a_jump_networks_check_returns_the_plan_it_acts_with():
    """A denoiser that says the goal at the chain's start and 0 at every other step: its reverse chain ends
    near 0, its jump at the goal, and the check's network return is the jump's (the highest, on the toy)."""
    torch.manual_seed(0)
    cfg = toy_score_cfg()
    model, schedule = ToyModel(cfg), DiffusionPlanner(ToyModel(cfg), cfg).schedule
    z = torch.zeros(64, cfg.latent_dim)

    def goal_at_start(x_tau, tau):
        return GOAL.expand_as(x_tau) * float(tau == schedule.steps - 1)

    def plan_return(plans):
        return plan_returns(model, z, plans, 0.0)

    monte_carlo = monte_carlo_denoiser(model, cfg, schedule, z)
    starts = torch.randn(64, cfg.horizon, cfg.action_dim)
    chain, jump = (check_score_network(goal_at_start, monte_carlo, monte_carlo, plan_return, starts, schedule, True,
                                       jump=jump) for jump in (False, True))
    best = float(plan_return(GOAL.expand(64, cfg.horizon, cfg.action_dim)).mean())
    assert jump.network_return == pytest.approx(best)
    assert chain.network_return < best - 0.05


def test_the_check_can_compare_monte_carlo_with_other_planner_settings():
    """``other`` makes the second estimate with other settings: from 5 candidates instead of 32, it lies far
    further from the agent's own estimate than a second estimate with the agent's settings does."""
    agent = tiny_agent(act_mode="auto")
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    torch.manual_seed(0)
    same = agent.check_score_network(obs)
    torch.manual_seed(0)
    few = agent.check_score_network(obs, other=dataclasses.replace(agent.cfg, num_samples=5, num_elites=1))
    assert few.monte_carlo_error.mean() > 2 * same.monte_carlo_error.mean()


def test_untrained_score_network_is_refused():
    agent = tiny_agent(act_mode="auto")
    with pytest.raises(ConfigError, match="never trained"):
        agent.set_acting_mode("score")


def test_score_mode_acts_with_the_network_only_once_it_is_trained():
    agent = tiny_agent(act_mode="score")
    assert agent.acting_mode == "mc"  # e.g. the evaluation at step 0
    agent.update(random_batch(agent.cfg))
    assert agent.acting_mode == "score"


def test_the_check_tells_a_trained_network_from_an_untrained_one():
    torch.manual_seed(0)
    cfg = toy_score_cfg()
    model, states = ToyModel(cfg), 64
    schedule = DiffusionPlanner(model, cfg).schedule
    z = torch.zeros(states, cfg.latent_dim)

    def plan_return(plans):
        return candidate_returns(model, z, plans.unsqueeze(1), 0.0)[:, 0]

    def check(network):
        return check_score_network(
            score_network_denoiser(network, model, schedule, z), monte_carlo_denoiser(model, cfg, schedule, z),
            monte_carlo_denoiser(model, cfg, schedule, z), plan_return, torch.randn(states, 2, 2), schedule, True,
        )

    trained, untrained = check(train_on_toy(cfg, "forward", steps=300)), check(ScoreNetwork(cfg))
    # Scores: closer to Monte Carlo at most steps (at the last, nearly noiseless step the relative
    # error of any network is large: the score there is ~1 / (1 - alpha_bar) times the a_bar error).
    assert trained.network_error.median() < untrained.network_error.median() / 2
    assert trained.return_gap < 0.05 < untrained.return_gap, (trained.return_gap, untrained.return_gap)


def test_the_switch_rule_allows_the_network_to_lose_the_gap_and_no_more():
    assert network_within_gap([760.0], [800.0], 0.05, 1.0) and network_within_gap([900.0], [800.0], 0.05, 1.0)
    assert not network_within_gap([759.0], [800.0], 0.05, 1.0)
    assert network_within_gap([-105.0], [-100.0], 0.05, 1.0) and not network_within_gap([-106.0], [-100.0], 0.05, 1.0)


def test_the_switch_rule_asks_noisy_paired_episodes_for_a_margin():
    """Paired by seed, a tie on three noisy episodes (walker-walk at 2.5k steps: 105 against 104) is no
    evidence that the network is within 5 %, while a steady small loss is."""
    monte_carlo = [40.0, 100.0, 172.0]  # mean 104
    tie = [100.0, 35.0, 180.0]  # mean 105, paired differences 60, -65, 8: standard error 36
    assert network_within_gap(tie, monte_carlo, 0.05, 0.0)
    assert not network_within_gap(tie, monte_carlo, 0.05, 1.0)
    steady = [38.0, 97.0, 170.0]  # every episode 2-3 less: mean difference -2.3, standard error 0.3
    assert network_within_gap(steady, monte_carlo, 0.05, 1.0)
    assert network_within_gap(steady, monte_carlo, 0.05, 3.0)


def evaluation_episodes(*returns: float) -> list[dict[str, float]]:
    return [{"episode_reward": value, "episode_success": 0.0, "episode_length": 10.0} for value in returns]


def test_auto_switches_by_evaluation_return_both_ways(tmp_path):
    """Acting with the network, an evaluation that loses more than the gap against the last Monte-Carlo
    evaluation sends acting back to Monte Carlo; acting by Monte Carlo, the evaluation is replayed with the
    network and decides; the returns it holds the network against load from a checkpoint."""
    cfg = Config.from_overrides(parse_overrides([*TINY, "act_mode=auto", "score_states=8", "score_switch_gap=0.05",
                                                 f"run_dir={tmp_path}"]))
    trainer = OnlineTrainer(cfg)
    trainer.agent.update(random_batch(trainer.cfg))  # the network has trained (one step)
    trainer.agent.set_acting_mode("score")
    trainer.monte_carlo_eval_returns = [99.0, 101.0]
    assert trainer._evaluate_network(evaluation_episodes(96.0, 97.0), never)["acting_with_score_network"] == 1.0
    assert trainer._evaluate_network(evaluation_episodes(93.0, 95.0), never)["acting_with_score_network"] == 0.0
    assert trainer.agent.acting_mode == "mc"
    # By Monte Carlo: a Monte-Carlo return far above anything the network gets keeps acting by Monte Carlo,
    # and the network's own return (from its evaluation episodes) is reported.
    row = trainer._evaluate_network(evaluation_episodes(1e6, 1e6), never)
    assert trainer.monte_carlo_eval_returns == [1e6, 1e6] and row["score_network_reward"] < 1e6
    assert row["acting_with_score_network"] == 0.0 and trainer.agent.acting_mode == "mc"
    path = tmp_path / "returns.pt"  # as the trainer checkpoints them, loaded with weights_only=True
    save_checkpoint(path, {"monte_carlo_eval_returns": trainer.monte_carlo_eval_returns})
    assert saved_monte_carlo_returns(load_checkpoint(path)) == [1e6, 1e6]


def test_checkpoints_from_before_the_paired_switch_rule_resume_with_their_mean():
    assert saved_monte_carlo_returns({"monte_carlo_eval_return": 80.0}) == [80.0]
    assert saved_monte_carlo_returns({}) is None
    assert saved_monte_carlo_returns({"monte_carlo_eval_returns": [1.0, 2.0]}) == [1.0, 2.0]


@pytest.mark.parametrize("one_plan, ranked, chosen", [(50.0, 80.0, 4), (80.0, 50.0, 1), (60.0, 60.0, 1)])
def test_auto_ranks_the_networks_plans_only_where_its_evaluation_gains_by_it(tmp_path, one_plan, ranked, chosen):
    """score_candidates=K under act_mode=auto: the network's replay of the evaluation is played with its one
    plan and with the best of K, and it acts as the better did (one plan on a tie); the choice is logged,
    checkpointed, and used by a loaded agent unless the caller asks for another K."""
    cfg = Config.from_overrides(parse_overrides([*TINY, "act_mode=auto", "score_states=8", "score_candidates=4",
                                                 "score_switch_gap=0.05", f"run_dir={tmp_path}"]))
    trainer = OnlineTrainer(cfg)
    trainer.agent.update(random_batch(trainer.cfg))
    played = []

    def play(video, stopping):
        agent = trainer.agent
        played.append((agent.acting_mode, agent.planner.score_candidates))
        return evaluation_episodes({1: one_plan, 4: ranked}[agent.planner.score_candidates])

    trainer._play_evaluation = play
    row = trainer._evaluate_network(evaluation_episodes(80.0), never)
    assert played == [("score", 1), ("score", 4)]
    assert row["score_network_one_plan_reward"] == one_plan and row["score_network_ranked_reward"] == ranked
    assert row["score_network_reward"] == max(one_plan, ranked) and row["score_network_candidates"] == chosen
    assert trainer.agent.planner.score_candidates == chosen
    assert trainer.agent.acting_mode == ("score" if max(one_plan, ranked) >= 76 else "mc")
    path = tmp_path / "agent.pt"
    save_checkpoint(path, {"config": trainer.cfg.to_dict(), "agent": trainer.agent.state_dict()})
    assert Agent.from_checkpoint(path, device="cpu").planner.score_candidates == chosen
    asked = Agent.from_checkpoint(path, device="cpu", score_candidates=16)
    assert asked.planner.score_candidates == 16


@pytest.fixture(scope="module")
def score_run(tmp_path_factory) -> Path:
    """act_mode=auto with a switch threshold so loose that the first evaluation with a trained network
    switches to it; the network learns from chains planned from the replay (score_target=chain)."""
    run_dir = tmp_path_factory.mktemp("score_run")
    result = mbdpo_in_process("train", *TINY, "steps=1000", "act_mode=auto", "score_target=chain",
                              "score_replay_chains=0.5", "score_states=8", "score_check_freq=500",
                              "score_check_states=4", "score_switch_gap=1e9", f"run_dir={run_dir}")
    assert result.returncode == 0, result.stderr
    assert "acting with score from now on" in result.stdout
    return run_dir


def test_auto_mode_logs_the_network_evaluation_beside_monte_carlo(score_run):
    evaluations = rows(score_run / "eval.csv")
    assert [int(r["step"]) for r in evaluations] == [0, 500, 1000]
    assert evaluations[0]["score_network_reward"] == ""  # untrained at step 0: never evaluated
    assert [r["acting_with_score_network"] for r in evaluations[1:]] == ["1", "1"]
    # Acting with the network from 500 on, the evaluation at 1000 is the network's own.
    assert evaluations[2]["score_network_reward"] == evaluations[2]["episode_reward"]


def test_auto_mode_logs_score_checks_per_diffusion_step(score_run):
    (check,) = rows(score_run / "score.csv")
    assert int(check["step"]) == 1000 and check["acting_with_score_network"] == "1"
    assert float(check["network_error_tau0"]) > 0 and float(check["monte_carlo_error_tau1"]) > 0
    assert float(rows(score_run / "train.csv")[-1]["score_loss"]) > 0


def test_a_score_trained_checkpoint_acts_with_the_score_network_after_loading(score_run, tmp_path):
    agent = Agent.from_checkpoint(score_run / "checkpoint.pt", device="cpu")
    assert agent.acting_mode == "score" and agent.score_network.trained
    result = mbdpo_in_process("eval", f"checkpoint={score_run / 'checkpoint.pt'}", "episodes=1",
                              f"out={tmp_path / 'e.csv'}")
    assert result.returncode == 0 and "acting with score" in result.stdout, result.stderr
    assert rows(tmp_path / "e.csv")[0]["act_mode"] == "score"


def test_the_benchmarks_monte_carlo_acts_by_monte_carlo_on_a_score_trained_checkpoint(score_run, monkeypatch):
    """planner_distillation.py, chain_steps.py and value_ranking.py set their ``mc`` beside the network, and
    replay_chain_batch.py times a Monte-Carlo action: on a checkpoint that acted with the network, their agent
    must not act with it."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from chain_steps import monte_carlo_agent

    agent = monte_carlo_agent(str(score_run / "checkpoint.pt"))
    calls = counting_rollouts(agent)
    agent.act(np.zeros(agent.cfg.obs_dim, dtype=np.float32))
    assert agent.acting_mode == "mc" and calls


@pytest.mark.parametrize("setting, run_value, asked, described, bad, valid", [
    ("score_candidates", 0, 8, "acting with score, the best of 8 plans", -1, ">= 0"),  # 0: the run's, one plan
    ("score_mc_steps", -1, 1, "acting with score, Monte Carlo on its last 1 of", -2, ">= -1"),  # -1: the run's, 0
])
def test_eval_ranks_or_refines_the_networks_plans_when_asked(
    score_run, tmp_path, setting, run_value, asked, described, bad, valid
):
    """The network's plans ranked by the model (score_candidates) or refined by Monte Carlo (score_mc_steps):
    the model is rolled out when asked, and only then."""
    checkpoint = score_run / "checkpoint.pt"
    for value, expects_rollouts in [(run_value, False), (asked, True)]:
        agent = Agent.from_checkpoint(checkpoint, device="cpu", **{setting: value})
        calls = counting_rollouts(agent)
        agent.act(np.zeros(agent.cfg.obs_dim, dtype=np.float32))
        assert agent.acting_mode == "score" and bool(calls) == expects_rollouts
    result = mbdpo_in_process("eval", f"checkpoint={checkpoint}", "episodes=1", f"{setting}={asked}",
                              f"out={tmp_path / 'e.csv'}")
    assert result.returncode == 0 and described in result.stdout, result.stderr
    assert_one_line_error(mbdpo_in_process("eval", f"checkpoint={checkpoint}", f"{setting}={bad}"),
                          f"{setting}={bad}", valid)


def test_eval_refuses_more_monte_carlo_steps_than_the_chain_has(score_run):
    checkpoint = score_run / "checkpoint.pt"
    steps = Agent.from_checkpoint(checkpoint, device="cpu").cfg.diffusion_steps
    assert_one_line_error(mbdpo_in_process("eval", f"checkpoint={checkpoint}", f"score_mc_steps={steps}"),
                          f"score_mc_steps={steps}", f"diffusion_steps - 1 = {steps - 1}")


def test_prior_mode_acts_with_the_policy_prior_mean_without_planning(monkeypatch):
    agent = tiny_agent()
    obs = np.random.default_rng(0).normal(size=4).astype(np.float32)
    agent.set_acting_mode("prior")
    monkeypatch.setattr(agent.planner, "plan", lambda *args, **kwargs: pytest.fail("the planner was asked"))
    action = agent.act(obs)
    with torch.no_grad():
        mean = agent.model.pi(agent.model.encode(torch.as_tensor(obs).unsqueeze(0)))[1]["mean"][0]
    np.testing.assert_allclose(action, mean.numpy(), rtol=1e-6)
    assert agent.acting_mode == "prior" and not np.allclose(agent.act(obs, explore=True), action)


def test_eval_acts_with_the_prior_when_asked(score_run, tmp_path):
    result = mbdpo_in_process("eval", f"checkpoint={score_run / 'checkpoint.pt'}", "episodes=1", "act_mode=prior",
                              f"out={tmp_path / 'e.csv'}")
    assert result.returncode == 0 and "acting with prior" in result.stdout, result.stderr
    assert rows(tmp_path / "e.csv")[0]["act_mode"] == "prior"


def test_a_checkpoint_without_a_trained_score_network_refuses_score_acting(tmp_path):
    agent = tiny_agent(act_mode="auto")  # acts by Monte Carlo; its score network never trained
    save_checkpoint(tmp_path / "checkpoint.pt", {"config": agent.cfg.to_dict(), "agent": agent.state_dict()})
    result = mbdpo_in_process("eval", f"checkpoint={tmp_path / 'checkpoint.pt'}", "act_mode=score", cwd=tmp_path)
    assert_one_line_error(result, "act_mode=score", "never trained", "act_mode=mc")
