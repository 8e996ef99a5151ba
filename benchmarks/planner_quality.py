"""How good a plan each planner setting finds on a trained model, and at what cost.

For ``--states`` states drawn from a run's replay buffer, every setting plans
once from scratch (no warm start, as at an episode start) with the run's own
world model. A plan is scored by its imagined return J (paper eq. 10, with the
run's ``energy_eta``), averaged over 4 evaluations because the Q estimate
averages two randomly chosen heads of the ensemble. Every setting sees the same
states, so the difference to the reference setting (TD-MPC2's MPPI at the
``cpu`` preset) is paired; its standard error is over states.

    python benchmarks/planner_quality.py --run-dir RUN [--run-dir RUN2 ...] --out benchmarks/results/planner_quality.csv

``ms_per_plan`` is measured in the same process for every setting; run it on an
idle machine to compare with ``benchmarks/speed.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from mbdpo.agent import Agent
from mbdpo.analysis.runs import write_csv
from mbdpo.errors import exit_on_user_error
from mbdpo.planning import make_planner
from mbdpo.planning.rollout import imagined_return

REFERENCE = "mppi 6x256 (cpu preset)"
SETTINGS: dict[str, dict] = {
    "diffusion 5x256": dict(planner="diffusion", diffusion_steps=5, num_samples=256, num_elites=32),
    "diffusion 10x128": dict(planner="diffusion", diffusion_steps=10, num_samples=128, num_elites=16),
    "diffusion 15x64": dict(planner="diffusion", diffusion_steps=15, num_samples=64, num_elites=8),
    "diffusion 20x64 (cpu preset)": dict(planner="diffusion", diffusion_steps=20, num_samples=64, num_elites=8),
    "diffusion 20x128": dict(planner="diffusion", diffusion_steps=20, num_samples=128, num_elites=16),
    "diffusion 20x512 (paper preset)": dict(planner="diffusion", diffusion_steps=20, num_samples=512, num_elites=64),
    REFERENCE: dict(planner="mppi", num_samples=256, num_elites=32),
    "mppi 6x512 (paper preset)": dict(planner="mppi", num_samples=512, num_elites=64),
}


def plan_returns(agent: Agent, latents: torch.Tensor, setting: dict) -> tuple[np.ndarray, float]:
    """The imagined return of the plan ``setting`` finds from each latent ``[S, L]``, and ms per plan."""
    cfg = dataclasses.replace(agent.cfg, act_mode="mc", **setting)
    planner = make_planner(agent.model, cfg)
    returns, seconds = [], 0.0
    for z in latents.split(1):
        planner.reset()
        start = time.perf_counter()
        plan = planner.plan(z)
        seconds += time.perf_counter() - start
        value = torch.stack([imagined_return(agent.model, z, plan.unsqueeze(1), cfg.energy_eta) for _ in range(4)])
        returns.append(value.mean().item())
    return np.array(returns), 1000 * seconds / len(latents)


def measure_run(run_dir: Path, num_states: int, seed: int) -> list[dict]:
    """One row per setting for the checkpoint and replay buffer in ``run_dir``."""
    torch.manual_seed(seed)
    agent = Agent.from_checkpoint(run_dir / "checkpoint.pt", device="cpu")
    agent.model.eval()
    with np.load(run_dir / "buffer.npz") as buffer:
        obs = buffer["obs"]
    rows = np.random.default_rng(seed).choice(len(obs), num_states, replace=False)
    latents = agent.model.encode(torch.as_tensor(obs[rows], dtype=torch.float32), None).detach()
    measured = {name: plan_returns(agent, latents, setting) for name, setting in SETTINGS.items()}
    reference = measured[REFERENCE][0]
    result = []
    for name, (returns, ms) in measured.items():
        difference = returns - reference
        result.append({
            "run": f"{run_dir.parent.name}/{run_dir.name}", "task": agent.cfg.task, "setting": name,
            "energy_eta": agent.cfg.energy_eta, "states": num_states, "mean_return": round(returns.mean(), 3),
            "vs_reference": round(difference.mean(), 3),
            "vs_reference_stderr": round(difference.std(ddof=1) / np.sqrt(num_states), 3),
            "ms_per_plan": round(ms, 1),
        })
        print(f"{result[-1]['run']:40s} {name:32s} J {returns.mean():8.3f}  vs MPPI {difference.mean():+7.3f} "
              f"(+-{result[-1]['vs_reference_stderr']:.3f})  {ms:6.0f} ms/plan", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", action="append", required=True, help="a run directory (repeatable)")
    parser.add_argument("--states", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    rows = [row for run_dir in args.run_dir for row in measure_run(Path(run_dir), args.states, args.seed)]
    if args.out:
        write_csv(Path(args.out), rows)


if __name__ == "__main__":
    exit_on_user_error(main, "planner_quality")
