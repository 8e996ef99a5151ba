"""Is it the score network or the ranking? Acting on the best of K plans from other proposals.

    python benchmarks/ranking_controls.py --task walker-walk --set coef --network chain --episodes 10

``score_candidates=K`` acts on the best of K score-network plans by the
current model's imagined return J (eq. 10). Ranking alone is a planner
(random shooting), so this plays a finished ``score_passengers.py`` run's
model, episode by episode on its evaluation seeds, with the best of K plans
drawn from each proposal:

- ``network``: the passenger network's plans (what ``score_candidates=K`` does);
- ``uniform``: uniformly random action sequences (random shooting);
- ``prior``: the policy prior's sampled trajectories (as Monte Carlo adds to its candidates);

and, as references, the network's one plan (K = 1) and the Monte-Carlo and
prior returns already in the run's ``passengers_final.csv`` for the same
episodes. Output: ``results/ranking_controls_<task>.csv``, one row per
episode, and the paired summary of ``score_passengers.py``.

With ``--refine k`` it asks the same of ``score_mc_steps=k`` (the network's
plan refined by Monte Carlo on the chain's last k reverse steps): is it the
network or the refinement? The noisier steps denoise towards a proposal
and the last k by Monte Carlo, as ``score_mc_steps`` does, with the
proposal of

- ``network``: the passenger network's denoised mean (what ``score_mc_steps=k`` does);
- ``prior_mean``: the policy prior's mean plan (what a network that learned nothing but the prior would give);
- ``uniform``: a uniformly random plan, drawn once per action;

into ``results/ranking_controls_<task>_refine<k>.csv``. ``--seed N`` reads
the ``score_passengers.py --seed N`` run.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch

from mbdpo.agent import Agent
from mbdpo.analysis.runs import read_csv, write_csv
from mbdpo.checkpoint import load_checkpoint
from mbdpo.envs import make_env
from mbdpo.errors import ConfigError, exit_on_user_error
from mbdpo.planning.diffusion import best_of_candidates, handed_over, monte_carlo_denoiser, reverse_diffusion
from mbdpo.planning.rollout import candidate_returns, policy_mean_plan, policy_trajectories
from mbdpo.training.evaluate import episode_seed, run_episode

from online import COMMON, HERE, RESULTS
from score_passengers import PASSENGER_SETS, PASSENGERS_FILE, paired_summary, passenger, run_directory, trained_passenger

Proposal = Callable[[torch.Tensor, int], torch.Tensor]  # (z [1, L], K) -> plans [1, K, H, A]


def ranking_agent(agent: Agent, propose: Proposal, count: int) -> Agent:
    """``agent`` (acting by Monte Carlo), planning with the best of ``count`` plans from ``propose`` by imagined
    return instead."""
    planner, cfg = agent.planner, agent.cfg

    @torch.no_grad()
    def plan(z: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        plans = propose(z, count)
        planner.previous_plan = best_of_candidates(candidate_returns(agent.model, z, plans, cfg.energy_eta), plans)[0]
        return planner.previous_plan

    planner.plan = plan
    return agent


def refining_agent(agent: Agent, propose: Callable[[torch.Tensor], torch.Tensor], mc_steps: int) -> Agent:
    """``agent`` planning as ``score_mc_steps=mc_steps`` does, with ``propose(z)`` ``[1, H, A]`` standing in
    for the score network's denoised mean at the noisier steps."""
    planner, cfg = agent.planner, agent.cfg

    @torch.no_grad()
    def plan(z: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        schedule = planner.schedule_on(z.device)
        proposal = propose(z)
        denoise = handed_over(lambda x_tau, tau: proposal, monte_carlo_denoiser(agent.model, cfg, schedule, z),
                              mc_steps)
        start = planner.chain_starts(torch.zeros(1, cfg.horizon, cfg.action_dim, device=z.device))
        plans, _ = reverse_diffusion(denoise, start, schedule, planner.stochastic)
        planner.previous_plan = plans[0].clamp(-1, 1)
        return planner.previous_plan

    planner.plan = plan
    return agent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="walker-walk")
    parser.add_argument("--set", choices=sorted(PASSENGER_SETS), default="coef")
    parser.add_argument("--network", default="chain", help="which passenger of the set")
    parser.add_argument("--candidates", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--refine", type=int, default=0,
                        help="compare proposals refined by Monte Carlo on this many last reverse steps instead")
    parser.add_argument("--seed", type=int, default=COMMON["seed"], help="the score_passengers.py run's seed")
    parser.add_argument("--runs-dir", default=str(HERE.parent.parent / "bench-runs"))
    args = parser.parse_args()
    exit_on_user_error(lambda: compare(args), "ranking_controls.py")


def compare(args: argparse.Namespace) -> None:
    run_dir = run_directory(Path(args.runs_dir), args.task, args.set, args.seed)
    if args.network not in PASSENGER_SETS[args.set]:
        raise ConfigError(f"--network {args.network!r} is not a passenger of --set {args.set}; "
                          f"valid: {', '.join(PASSENGER_SETS[args.set])}")
    played = read_csv(run_dir / "passengers_final.csv")
    if len(played) < args.episodes:
        raise ConfigError(f"{run_dir / 'passengers_final.csv'} holds {len(played)} episodes; "
                          f"valid: --episodes <= {len(played)}")
    host = Agent.from_checkpoint(run_dir / "checkpoint.pt")
    settings = PASSENGER_SETS[args.set][args.network]
    network_state = load_checkpoint(run_dir / PASSENGERS_FILE, host.device)[args.network]
    cfg, k = host.cfg, args.candidates

    def uniform(z: torch.Tensor, count: int) -> torch.Tensor:
        return torch.rand(1, count, cfg.horizon, cfg.action_dim, device=z.device) * 2 - 1

    def prior(z: torch.Tensor, count: int) -> torch.Tensor:
        return policy_trajectories(host.model, z, cfg.horizon, count)

    def prior_mean(z: torch.Tensor) -> torch.Tensor:
        return policy_mean_plan(host.model, z, cfg.horizon)

    def uniform_plan(z: torch.Tensor) -> torch.Tensor:
        return uniform(z, 1)[:, 0]

    one_plan = {"network_one_plan": trained_passenger(host, {**settings, "score_candidates": 1}, network_state)}
    if args.refine:
        refine, name = {"score_candidates": 1, "score_mc_steps": args.refine}, f"refined_{args.refine}"
        ways = {**one_plan,
                f"network_{name}": trained_passenger(host, {**settings, **refine}, network_state),
                f"prior_mean_{name}": refining_agent(passenger(host, settings), prior_mean, args.refine),
                f"uniform_{name}": refining_agent(passenger(host, settings), uniform_plan, args.refine)}
    else:
        ways = {**one_plan,
                f"network_best_of_{k}": trained_passenger(host, {**settings, "score_candidates": k}, network_state),
                f"uniform_best_of_{k}": ranking_agent(passenger(host, settings), uniform, k),
                f"prior_best_of_{k}": ranking_agent(passenger(host, settings), prior, k)}
    out = RESULTS / f"ranking_controls_{args.task}{f'_refine{args.refine}' if args.refine else ''}.csv"
    env = make_env(args.task, cfg.seed, cfg.obs)
    rows = []
    for i in range(args.episodes):
        row = {"episode": i, "monte_carlo": float(played[i]["monte_carlo"]), "prior": float(played[i]["prior"])}
        for name, agent in ways.items():
            row[name] = run_episode(agent, env, episode_seed(cfg.seed, "eval", i))["episode_reward"]
        rows.append(row)
        RESULTS.mkdir(exist_ok=True)
        write_csv(out, rows)
        print(f"episode {i}: " + ", ".join(f"{key} {value:.1f}" for key, value in row.items() if key != "episode"),
              flush=True)
    for line in paired_summary(rows, [key for key in rows[0] if key != "episode"]):
        print("  " + ", ".join(f"{key} {value}" for key, value in line.items()))


if __name__ == "__main__":
    main()
