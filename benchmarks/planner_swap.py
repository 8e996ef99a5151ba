"""Is a run's return limited by its planner or by what its model learned? Swap the planner and see.

    python benchmarks/planner_swap.py --checkpoint RUN/checkpoint.pt [--checkpoint RUN2/...] --episodes 3 \
        --out benchmarks/results/planner_swap.csv

Each checkpoint's world model acts in the environment with each planner
setting (those of ``planner_quality.py``) and with its policy prior alone
(``act_mode=prior``), on the run's own evaluation episodes (same reset
seeds). A model trained without an energy head (``energy_coef=0``, TD-MPC2
mode) plans with ``energy_eta=0`` whatever the setting.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from mbdpo.agent import Agent
from mbdpo.analysis.runs import read_csv, write_csv
from mbdpo.checkpoint import load_checkpoint
from mbdpo.envs import make_env
from mbdpo.errors import exit_on_user_error
from mbdpo.planning import make_planner
from mbdpo.training.evaluate import evaluate, summarise
from planner_quality import SETTINGS

DEFAULT_SETTINGS = "diffusion 20x64 (cpu preset),mppi 6x256 (cpu preset),prior"


def act_with(agent: Agent, setting: str) -> None:
    """Make ``agent`` act with the planner ``setting`` of SETTINGS, or with its policy prior (``prior``)."""
    if setting == "prior":
        agent.set_acting_mode("prior")
        return
    overrides = SETTINGS[setting] if agent.cfg.energy_coef else {**SETTINGS[setting], "energy_eta": 0.0}
    agent.set_acting_mode("mc")
    agent.planner = make_planner(agent.model, dataclasses.replace(agent.cfg, act_mode="mc", **overrides))


def swap(checkpoint: Path, settings: list[str], episodes: int) -> list[dict]:
    agent = Agent.from_checkpoint(checkpoint, device="cpu")
    cfg, step = agent.cfg, int(load_checkpoint(checkpoint)["step"])
    rows = []
    for setting in settings:
        act_with(agent, setting)
        summary = summarise(evaluate(agent, make_env(cfg.task, cfg.seed), episodes, cfg.seed))
        rows.append({"task": cfg.task, "trained_with": f"{cfg.planner} (energy_eta={cfg.energy_eta})",
                     "step": step, "acting": setting, "episodes": episodes,
                     "return": round(summary["episode_reward"], 1),
                     "return_std": round(summary["episode_reward_std"], 1)})
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", required=True, type=Path, help="repeatable")
    parser.add_argument("--settings", default=DEFAULT_SETTINGS,
                        help=f"comma-separated: prior and names of planner_quality.SETTINGS: {', '.join(SETTINGS)}")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    settings = args.settings.split(",")
    unknown = [s for s in settings if s != "prior" and s not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting {unknown[0]!r}; valid: prior, {', '.join(SETTINGS)}")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    for checkpoint in args.checkpoint:
        rows = swap(checkpoint, settings, args.episodes)
        if args.out:  # after each checkpoint, replacing the CSV's rows of the same run, step and acting
            done = {(r["task"], r["trained_with"], str(r["step"]), r["acting"]) for r in rows}
            kept = [r for r in read_csv(args.out) if (r["task"], r["trained_with"], r["step"], r["acting"]) not in done]
            write_csv(args.out, kept + rows)


if __name__ == "__main__":
    exit_on_user_error(main, "planner_swap")
