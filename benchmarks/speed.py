"""Milliseconds per action and per update, side by side, in one process.

    python benchmarks/speed.py --out benchmarks/results/speed.csv

Each row times one configuration on synthetic data shaped like cartpole-swingup
(obs 5, action 1): ``act`` is one planner call for one observation,
``update`` one gradient step on a batch of windows (with ``act_mode=score``
or ``auto`` it includes the score network's score-matching step), ``step`` their sum:
the cost of one online training step without the environment. The
``act_mode=auto score_target=chain`` rows time the steps after the switch:
acting with the network, training it on stored chains (random ones: the
cost does not depend on their values); with ``replay 1`` each update also
plans one chain from the batch's start states (``score_replay_chains=1``:
the cost of a chain is its update's excess); with ``return 1`` the score step
also climbs the return of its plans (``score_return_coef=1``); with ``distilled
policy`` the distilled policy acts and trains instead (``score_sampler=policy``). Network acting
uses the network's one plan, without rollouts; the ``64 candidates`` rows act
on the best of 64 by imagined return (``score_candidates=64``), the ``last k
steps by MC`` rows refine the network's plan by Monte Carlo on the chain's
last k steps (``score_mc_steps=k``); ``4 score updates`` takes four
score-matching steps per update (``score_updates=4``), ``prior as input``
feeds the network the policy prior's plan (``score_anchor=input``). Run it on an
idle machine.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import torch

from mbdpo.agent import Agent
from mbdpo.config import Config
from mbdpo.data.buffer import ReplayBuffer

FORMER_CPU_PRESET = {"diffusion_steps": 5, "num_samples": 256, "num_elites": 32}
CHAIN = {"act_mode": "auto", "score_target": "chain", "score_states": 256}
CONFIGS = {
    "diffusion cpu preset (20x64)": {"planner": "diffusion", "planner_preset": "cpu"},
    "diffusion cpu preset, act_mode=score": {"planner": "diffusion", "planner_preset": "cpu", "act_mode": "score"},
    "diffusion cpu preset, act_mode=score, 64 candidates": {"planner": "diffusion", "planner_preset": "cpu",
                                                            "act_mode": "score", "score_candidates": 64},
    "diffusion cpu preset, act_mode=score, last 2 steps by MC": {"planner": "diffusion", "planner_preset": "cpu",
                                                                "act_mode": "score", "score_mc_steps": 2},
    "diffusion cpu preset, act_mode=score, last 5 steps by MC": {"planner": "diffusion", "planner_preset": "cpu",
                                                                "act_mode": "score", "score_mc_steps": 5},
    "diffusion cpu preset, act_mode=score, 4 score updates": {"planner": "diffusion", "planner_preset": "cpu",
                                                              "act_mode": "score", "score_updates": 4},
    "diffusion cpu preset, act_mode=score, prior as input": {"planner": "diffusion", "planner_preset": "cpu",
                                                             "act_mode": "score", "score_anchor": "input"},
    "diffusion 5x256 (former cpu preset)": {"planner": "diffusion", "planner_preset": "cpu", **FORMER_CPU_PRESET},
    "diffusion cpu preset, auto, chain": {"planner": "diffusion", "planner_preset": "cpu", **CHAIN},
    "diffusion cpu preset, auto, chain, replay 1": {"planner": "diffusion", "planner_preset": "cpu", **CHAIN,
                                                    "score_replay_chains": 1},
    "diffusion cpu preset, auto, chain, replay 0.25, last 5 steps by MC": {
        "planner": "diffusion", "planner_preset": "cpu", **CHAIN, "score_replay_chains": 0.25, "score_mc_steps": 5},
    "diffusion cpu preset, auto, chain, return 1": {"planner": "diffusion", "planner_preset": "cpu", **CHAIN,
                                                    "score_return_coef": 1.0},
    "diffusion cpu preset, auto, chain, distilled policy": {"planner": "diffusion", "planner_preset": "cpu", **CHAIN,
                                                            "score_sampler": "policy"},
    "diffusion paper (20x512)": {"planner": "diffusion", "planner_preset": "paper"},
    "diffusion paper, act_mode=score": {"planner": "diffusion", "planner_preset": "paper", "act_mode": "score"},
    "diffusion paper, act_mode=score, 64 candidates": {"planner": "diffusion", "planner_preset": "paper",
                                                       "act_mode": "score", "score_candidates": 64},
    "diffusion paper, auto, chain": {"planner": "diffusion", "planner_preset": "paper", **CHAIN},
    "diffusion paper, auto, chain, return 1": {"planner": "diffusion", "planner_preset": "paper", **CHAIN,
                                               "score_return_coef": 1.0},
    "diffusion paper, auto, chain, distilled policy": {"planner": "diffusion", "planner_preset": "paper", **CHAIN,
                                                       "score_sampler": "policy"},
    "mppi tdmpc2 (6x512, eta=0)": {"planner": "mppi", "planner_preset": "paper", "energy_eta": 0, "energy_coef": 0},
    "mppi cpu preset (6x256, eta=0)": {"planner": "mppi", "planner_preset": "cpu", "energy_eta": 0, "energy_coef": 0},
    "diffusion cpu preset (20x64), compile_rollouts": {"planner": "diffusion", "planner_preset": "cpu",
                                                       "compile_rollouts": True},
    "mppi tdmpc2 (6x512, eta=0), compile_rollouts": {"planner": "mppi", "planner_preset": "paper", "energy_eta": 0,
                                                     "energy_coef": 0, "compile_rollouts": True},
}


def filled_buffer(obs_dim: int, action_dim: int, horizon: int) -> ReplayBuffer:
    buffer = ReplayBuffer(5 * 501, obs_dim, action_dim, horizon)
    rng = np.random.default_rng(0)
    for _ in range(5):
        buffer.add_episode(
            rng.normal(size=(501, obs_dim)).astype(np.float32), rng.uniform(-1, 1, (500, action_dim)),
            rng.random(500), np.zeros(500),
        )
    return buffer


def fill_random_chains(agent: Agent, obs_dim: int) -> None:
    """Fill the agent's chain memory with random chains (for timing chain-target updates)."""
    cfg, count = agent.cfg, agent.cfg.score_chains
    agent.chains.add(torch.randn(count, obs_dim), torch.zeros(count, dtype=torch.long),
                     torch.randn(count, cfg.diffusion_steps, cfg.horizon, cfg.action_dim),
                     torch.rand(count, cfg.horizon, cfg.action_dim) * 2 - 1)


def time_ms(fn, repeats: int) -> float:
    for _ in range(3):
        fn()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1000


def measure(name: str, overrides: dict, model_size: int, repeats: int) -> dict:
    torch.manual_seed(0)
    cfg = Config.from_overrides({"model_size": model_size, "device": "cpu", **overrides}).resolve(5, 1, 500)
    agent = Agent(cfg, torch.device("cpu"))
    buffer, rng, device = filled_buffer(5, 1, cfg.horizon), np.random.default_rng(0), torch.device("cpu")
    obs = np.zeros(5, dtype=np.float32)
    if agent.chains is not None:
        fill_random_chains(agent, 5)
    # Updates first: with act_mode=score the agent acts with the network once it has been trained.
    ms_per_update = time_ms(lambda: agent.update(buffer.sample(cfg.batch_size, rng, device)), repeats)
    if cfg.act_mode == "auto":  # as after the switch
        agent.set_acting_mode("score")
    ms_per_action = time_ms(lambda: agent.act(obs, explore=True), repeats)
    return {
        "config": name, "model_size": model_size, "batch_size": cfg.batch_size,
        "ms_per_action": round(ms_per_action, 1), "ms_per_update": round(ms_per_update, 1),
        "ms_per_step": round(ms_per_action + ms_per_update, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-sizes", default="1", help="comma-separated, e.g. 1,5")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--only", default="", help="comma-separated substrings of the config names to run")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    rows = [
        measure(name, overrides, int(size), args.repeats)
        for size in args.model_sizes.split(",")
        for name, overrides in CONFIGS.items()
        if any(part in name for part in args.only.split(","))
    ]
    for row in rows:
        print(f"{row['config']:46s} size {row['model_size']}: {row['ms_per_action']:7.1f} ms/action "
              f"{row['ms_per_update']:7.1f} ms/update {row['ms_per_step']:7.1f} ms/step")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
