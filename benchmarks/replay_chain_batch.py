"""Does planning replay chains in batches make each one cheaper?

    python benchmarks/replay_chain_batch.py --checkpoint RUN/checkpoint.pt --out benchmarks/results/replay_chain_batch.csv

``score_replay_chains`` plans Monte-Carlo chains from replay states during the
updates; at 0.25 per update they are a third of a step's cost after the
switch. If planning many states at once cost less per state (wider matrix
products), a run could plan them in bursts. This times
``planner.monte_carlo_chains`` for ``--counts`` states at once, on the
checkpoint's model, from observations drawn from a standard normal (the
compute does not depend on the values), and one Monte-Carlo action for scale.
One thread; only the ratios within one run count.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from mbdpo.agent import Agent
from mbdpo.analysis.runs import write_csv
from mbdpo.errors import CheckpointError, exit_on_user_error
# benchmarks/ is the script's own directory, first on sys.path
from chain_steps import monte_carlo_agent


def counts_list(text: str) -> list[int]:
    """``--counts``: positive integers, comma-separated."""
    try:
        counts = [int(count) for count in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of positive integers, e.g. 1,4,16")
    return counts


def seconds_per_call(call, repeats: int) -> float:
    call()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats


@torch.no_grad()
def batch_rows(agent: Agent, counts: list[int], repeats: int) -> list[dict]:
    cfg, model, planner = agent.cfg, agent.model, agent.planner
    model.eval()
    observation = np.random.default_rng(0).standard_normal(cfg.obs_dim).astype(np.float32)
    action_ms = 1000 * seconds_per_call(lambda: agent.act(observation, explore=False), repeats)
    rows = []
    for count in counts:
        z = model.encode(torch.randn(count, cfg.obs_dim))
        previous_plans = torch.rand(count, cfg.horizon, cfg.action_dim) * 2 - 1
        total_ms = 1000 * seconds_per_call(lambda: planner.monte_carlo_chains(z, previous_plans, None), repeats)
        rows.append({"states": count, "ms_total": round(total_ms, 1), "ms_per_chain": round(total_ms / count, 1),
                     "ms_per_monte_carlo_action": round(action_ms, 1)})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--counts", type=counts_list, default="1,4,16,64", help="states planned at once, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    agent = monte_carlo_agent(args.checkpoint, device="cpu")  # its action for scale is a Monte-Carlo one
    if agent.cfg.multitask:
        raise CheckpointError(f"{args.checkpoint} is multi-task; give a single-task checkpoint")
    write_csv(args.out, batch_rows(agent, args.counts, args.repeats))


if __name__ == "__main__":
    exit_on_user_error(main, "replay_chain_batch")
