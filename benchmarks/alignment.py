"""Search/value alignment (paper Fig. 3, 21, 22) of finished benchmark runs, measured after the fact.

    python benchmarks/alignment.py --runs-dir /path/to/bench-runs [--episodes 4]

Runs trained before mbdpo logged its diagnostics have none in train.csv. This
script loads each run's final checkpoint and replay buffer and computes the
diagnostics of ``mbdpo.diagnostics`` (cross-TD error, policy drift, prior
log-density) with the final model, on the newest ``--episodes`` stored
training episodes: the actions the planner chose (with exploration noise) in
the run's last episodes. Writes ``results/alignment.csv``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mbdpo.agent import Agent
from mbdpo.analysis.runs import write_csv
from mbdpo.data.buffer import ReplayBuffer
from mbdpo.diagnostics import episode_diagnostics
from mbdpo.errors import exit_on_user_error

RESULTS = Path(__file__).resolve().parent / "results"


def newest_episodes(buffer: ReplayBuffer, count: int):
    """(observations, actions, rewards, terminals) of the newest ``count`` stored episodes."""
    for index in np.argsort(buffer.episode_start)[-count:]:
        start, rows = buffer.episode_start[index], buffer.episode_rows[index]
        steps = slice(start + 1, start + rows)
        yield buffer.obs[start:start + rows], buffer.action[steps], buffer.reward[steps], buffer.terminated[steps]


def run_alignment(run_dir: Path, episodes: int) -> dict:
    agent = Agent.from_checkpoint(run_dir / "checkpoint.pt", "cpu")
    cfg = agent.cfg
    buffer = ReplayBuffer(cfg.buffer_size, cfg.obs_dim, cfg.action_dim, cfg.horizon)
    buffer.load(run_dir / "buffer.npz")
    values = [episode_diagnostics(agent.model, *episode) for episode in newest_episodes(buffer, episodes)]
    return {"task": cfg.task, "run": run_dir.name, "steps": buffer.num_transitions,
            **{key: round(float(np.mean([v[key] for v in values])), 4) for key in values[0]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", required=True)
    parser.add_argument("--episodes", type=int, default=4)
    args = parser.parse_args()
    rows = []
    for run_dir in sorted(p.parent for p in Path(args.runs_dir).glob("*/*/buffer.npz")):
        rows.append(run_alignment(run_dir, args.episodes))
        print(rows[-1], flush=True)
    write_csv(RESULTS / "alignment.csv", rows)


if __name__ == "__main__":
    exit_on_user_error(main, "alignment")
