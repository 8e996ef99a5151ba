"""The distilled policy of ``score_sampler=policy``: Monte Carlo's first action, regressed on the state.

It starts from the policy prior's weights, learns the first action of stored
chains' plans, acts with one call and no rollout, and checkpoints and forks
like the score network it replaces.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mbdpo.checkpoint import load_checkpoint
from mbdpo.config import Config
from mbdpo.errors import ConfigError
from mbdpo.planning.distilled_policy import distillation_loss
from tests.test_cli import TINY, assert_one_line_error, mbdpo_in_process, rows
from tests.test_score_network import counting_rollouts, random_batch, tiny_agent

POLICY = dict(act_mode="auto", score_target="chain", score_sampler="policy")


def labelled(obs: np.ndarray) -> torch.Tensor:
    """A known map from state to Monte Carlo's first action, in the action range: the labels to learn."""
    return torch.tanh(2 * torch.as_tensor(obs[:, :2]) - torch.as_tensor(obs[:, 2:4]))


def store_labelled_chains(agent, obs: np.ndarray) -> None:
    """Store one chain per state whose plan starts with :func:`labelled`'s action (the rest of the chain
    unused by the distilled policy)."""
    cfg = agent.cfg
    plans = torch.zeros(len(obs), cfg.horizon, cfg.action_dim)
    plans[:, 0] = labelled(obs)
    visited = torch.zeros(len(obs), cfg.diffusion_steps, cfg.horizon, cfg.action_dim)
    agent.chains.add(torch.as_tensor(obs), torch.zeros(len(obs), dtype=torch.long), visited, plans)


def actions_at(agent, obs: np.ndarray, prior: bool = False) -> torch.Tensor:
    with torch.no_grad():
        z = agent.model.encode(torch.as_tensor(obs))
        return agent.model.pi(z)[1]["mean"] if prior else agent.score_network.actions(agent.model, z)


def test_the_distilled_policy_starts_as_the_prior_and_learns_monte_carlos_first_action():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    train_obs, held_out = (rng.normal(size=(n, 4)).astype(np.float32) for n in (400, 100))
    agent = tiny_agent(**POLICY, score_lr=1e-9)  # a step too small to move it: the first step's start shows
    store_labelled_chains(agent, train_obs)
    batch = random_batch(agent.cfg)
    assert not torch.allclose(actions_at(agent, held_out), actions_at(agent, held_out, prior=True))
    agent.update_score_network(batch, torch.zeros(16, 16))
    assert torch.allclose(actions_at(agent, held_out), actions_at(agent, held_out, prior=True), atol=1e-6)

    agent = tiny_agent(**POLICY, score_states=16)
    store_labelled_chains(agent, train_obs)
    prior_error = float(distillation_loss(actions_at(agent, held_out, prior=True), labelled(held_out)))
    for _ in range(600):
        agent.update_score_network(batch, torch.zeros(16, 16))
    error = float(distillation_loss(actions_at(agent, held_out), labelled(held_out)))
    assert error < 0.2 * prior_error, (error, prior_error)
    assert torch.equal(agent.model.pi(agent.model.encode(torch.as_tensor(held_out)))[1]["mean"],
                       actions_at(agent, held_out, prior=True))  # only the distilled policy learned


def test_acting_with_the_distilled_policy_is_its_mean_action_without_rollouts():
    agent = tiny_agent(**POLICY)
    obs = np.random.default_rng(1).normal(size=(20, 4)).astype(np.float32)
    for row in obs:
        agent.act(row, explore=True)  # Monte-Carlo acting stores its chains: the labels
    assert len(agent.chains) == 20
    assert float(agent.update(random_batch(agent.cfg))["score_loss"]) > 0
    agent.set_acting_mode("score")
    calls = counting_rollouts(agent)
    action = agent.act(obs[0])
    assert len(calls) == 0
    assert np.allclose(action, actions_at(agent, obs[:1])[0].numpy(), atol=1e-6)
    assert len(agent.chains) == 20  # acting with it stores no chain

    restored = tiny_agent(**POLICY)
    restored.load_state_dict(agent.state_dict())
    assert restored.acting_mode == "score" and int(restored.score_network.updates) == 1
    assert np.array_equal(restored.act(obs[0]), action)


@pytest.mark.parametrize("overrides, key", [
    ({"score_anchor": "prior"}, "score_anchor=prior"),
    ({"score_candidates": 4}, "score_candidates=4"),
    ({"score_mc_steps": 2}, "score_mc_steps=2"),
    ({"score_layers": 3}, "score_layers=3"),
    ({"score_target": "denoiser"}, "score_target=denoiser"),
])
def test_settings_of_the_score_network_are_refused_with_the_distilled_policy(overrides, key):
    with pytest.raises(ConfigError, match=key):
        Config.from_overrides({**POLICY, **overrides}).validate()
    settings = (f"{k}={v}" for k, v in {**POLICY, "score_states": 8, **overrides}.items())
    assert_one_line_error(mbdpo_in_process("train", *TINY, *settings), key, "score_sampler=policy")


def test_a_run_forked_to_the_distilled_policy_trains_it_and_acts_with_it(tmp_path):
    """A Monte-Carlo run forked to act_mode=auto score_sampler=policy: the fork drops the score network's
    state (another shape), its Monte-Carlo acting stores the chains the policy learns from, the switch loose
    enough to act with it at the next evaluation, and ``mbdpo eval`` acts with it."""
    run, fork = tmp_path / "run", tmp_path / "fork"
    assert mbdpo_in_process("train", *TINY, "steps=500", f"run_dir={run}").returncode == 0
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "fork_run.py"
    changes = [f"{k}={v}" for k, v in POLICY.items()] + ["score_states=8", "score_switch_gap=1e9"]
    forked = subprocess.run([sys.executable, str(script), str(run), str(fork), *changes], capture_output=True,
                            text=True)
    assert forked.returncode == 0, forked.stderr
    result = mbdpo_in_process("train", f"run_dir={fork}", "steps=1000", "progress=false")
    assert result.returncode == 0, result.stderr
    assert "distilled policy: " in result.stdout and "acting with score from now on" in result.stdout
    checkpoint = load_checkpoint(fork / "checkpoint.pt")
    assert checkpoint["agent"]["acting_mode"] == "score" and int(checkpoint["agent"]["score_network"]["updates"]) > 0
    assert float(rows(fork / "train.csv")[-1]["score_loss"]) > 0
    assert not (fork / "score.csv").exists()  # no denoiser to check
    evaluated = mbdpo_in_process("eval", f"checkpoint={fork / 'checkpoint.pt'}", "episodes=1", "act_mode=score",
                                 f"out={tmp_path / 'eval.csv'}", "device=cpu")
    assert evaluated.returncode == 0, evaluated.stderr
