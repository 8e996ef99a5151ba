"""What one imagined rollout costs by the number of plans it scores, beside one score-network call.

    python benchmarks/rollout_cost.py --out benchmarks/results/rollout_cost.csv

Model size 1 with the ``cpu`` preset, shaped like walker-walk (obs 24, action 6), one
thread, in one process. A Monte-Carlo reverse step scores ``num_samples`` plans (64) in one
rollout (:func:`~mbdpo.planning.rollout.candidate_returns`); acting with the score network
makes one network call per reverse step and no rollout. Giving the network the imagined
return J of its input at every step would add a rollout of one plan per step, and ranking
candidates one rollout of those per action. Each row is milliseconds per call;
``ms_per_action_at_one_per_step`` multiplies it by the ``diffusion_steps`` calls of one
action's reverse chain. Run it on an idle machine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mbdpo.agent import Agent
from mbdpo.analysis.runs import write_csv
from mbdpo.config import Config
from mbdpo.errors import ConfigError, exit_on_user_error
from mbdpo.planning.rollout import candidate_returns
from speed import time_ms

OBS_DIM, ACTION_DIM, EPISODE_LENGTH = 24, 6, 1000  # walker-walk


def cost_rows(agent: Agent, plan_counts: list[int], repeats: int) -> list[dict]:
    """Milliseconds per rollout of each of ``plan_counts`` plans from one state, and per score-network call for
    one plan, with the calls per action of a reverse chain."""
    cfg, model = agent.cfg, agent.model
    with torch.no_grad():
        z = model.encode(torch.zeros(1, OBS_DIM))
        rows = []
        for count in plan_counts:
            plans = torch.rand(1, count, cfg.horizon, cfg.action_dim) * 2 - 1
            ms = time_ms(lambda: candidate_returns(model, z, plans, cfg.energy_eta), repeats)
            rows.append({"call": f"rollout of {count} plans", "ms_per_call": round(ms, 2)})
        x_tau, tau = torch.randn(1, cfg.horizon, cfg.action_dim), torch.tensor([cfg.diffusion_steps - 1])
        alpha_bar = agent.planner.schedule_on(z.device).alpha_bar[tau]
        ms = time_ms(lambda: agent.score_network(z, x_tau, tau, alpha_bar), repeats)
        rows.append({"call": "score-network call", "ms_per_call": round(ms, 2)})
    for row in rows:
        row["ms_per_action_at_one_per_step"] = round(row["ms_per_call"] * cfg.diffusion_steps, 1)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plans", type=int, nargs="+", default=[1, 8, 24, 64])
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if min(args.plans) < 1:
        raise ConfigError(f"--plans {min(args.plans)}: every count of plans must be at least 1")
    if args.repeats < 1:
        raise ConfigError(f"--repeats {args.repeats}: must be at least 1")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = Config.from_overrides({"model_size": 1, "planner_preset": "cpu", "device": "cpu", "act_mode": "score"})
    agent = Agent(cfg.resolve(OBS_DIM, ACTION_DIM, EPISODE_LENGTH), torch.device("cpu"))
    rows = cost_rows(agent, args.plans, args.repeats)
    for row in rows:
        print(f"{row['call']:24s} {row['ms_per_call']:7.2f} ms, {row['ms_per_action_at_one_per_step']:7.1f} ms "
              "at one per reverse step")
    if args.out:
        write_csv(args.out, rows)


if __name__ == "__main__":
    exit_on_user_error(main, "rollout_cost")
