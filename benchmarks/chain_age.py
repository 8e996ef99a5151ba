"""How far a stored chain's plan is from what the current model plans from the same state, by the chain's age.

    python benchmarks/chain_age.py --checkpoint RUN/checkpoint.pt --out benchmarks/results/chain_age.csv

For an ``act_mode=auto score_target=chain`` run's checkpoint: its chain
memory is cut into age groups (the newest ``--group`` chains, the next, ...);
from up to ``--states`` states of each group the checkpoint's model plans
twice afresh by Monte Carlo. Each row gives the mean squared distance
(summed over the plan) between the stored plans and a fresh one, between the
two fresh ones (the sampler's own spread: what a stored plan of the current
model would score), and between the policy prior's mean plan and a fresh
one; ``spread_over_states`` is the distance of the fresh plans from their
mean over the group's states. A stored plan no closer to the fresh one than
that mean is tells the network nothing about this state's current plan.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from mbdpo.agent import Agent
from mbdpo.analysis.runs import write_csv
from mbdpo.errors import CheckpointError, exit_on_user_error
from mbdpo.planning.rollout import policy_mean_plan


def squared_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over plans ``[B, H, A]`` of the squared distance summed over the plan."""
    return round(float((a - b).pow(2).sum((-2, -1)).mean()), 3)


@torch.no_grad()
def chain_age_rows(agent: Agent, group: int, states: int) -> list[dict]:
    memory, model, planner = agent.chains, agent.model, agent.planner
    age = (int(memory.count) - 1 - torch.arange(len(memory))) % memory.capacity  # 0: the newest chain
    rows = []
    for start in range(0, len(memory), group):
        picked = torch.nonzero((age >= start) & (age < start + group)).flatten()[:states]
        task = memory.task[picked] if agent.cfg.multitask else None
        z = model.encode(memory.obs[picked].float(), task)
        stored = memory.plan[picked]
        _, fresh = planner.monte_carlo_chains(z, stored, task)
        _, other_fresh = planner.monte_carlo_chains(z, stored, task)
        prior = torch.tanh(policy_mean_plan(model, z, agent.cfg.horizon, task))
        rows.append({
            "age_from": start, "age_to": start + group - 1, "states": len(picked),
            "stored_vs_fresh": squared_distance(stored, fresh),
            "fresh_vs_fresh": squared_distance(other_fresh, fresh),
            "prior_vs_fresh": squared_distance(prior, fresh),
            "spread_over_states": squared_distance(fresh, fresh.mean(0, keepdim=True)),
        })
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--group", type=int, default=125, help="chains per age group")
    parser.add_argument("--states", type=int, default=32, help="states planned from per group")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    agent = Agent.from_checkpoint(args.checkpoint, device="cpu")
    if agent.chains is None or not len(agent.chains):
        raise CheckpointError(f"{args.checkpoint} holds no chain memory (a run with act_mode=auto|score "
                              "score_target=chain has one)")
    agent.model.eval()
    torch.manual_seed(args.seed)
    write_csv(args.out, chain_age_rows(agent, args.group, args.states))


if __name__ == "__main__":
    exit_on_user_error(main, "chain_age")
