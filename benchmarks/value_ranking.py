"""Can the critic do Monte Carlo's ranking? Acting on the best of P proposals by Q(z, a_0), without rollouts.

    python benchmarks/value_ranking.py --checkpoint RUN/checkpoint.pt --buffer RUN/buffer.npz \
        --ways mc prior-mean prior:64:value prior:512:value prior:24:return \
        network network:16+64:value network:16+24:return --updates 3000 --episodes 8

On walker-walk, Monte Carlo's move is mostly a jump to the policy prior's
sampled trajectories that the model's imagined return J (eq. 10) ranks above
the plan (benchmarks/NOTES.md), and ranking by J costs a rollout. The
ensemble of Q heads already scores an action in one call. This plays a
checkpoint's evaluation episodes (its evaluation seeds, so paired with
``chain_steps.py`` and ``score_fit.py`` on the same checkpoint), acting on
the best of a set of proposals. A way of acting is

- ``mc``: the checkpoint's Monte-Carlo planner (section 4);
- ``prior-mean``: the policy prior's mean action;
- ``prior:P:RANK``: the best of P trajectories sampled from the policy prior
  (as Monte Carlo adds to its candidates);
- ``network``: a new score network's one plan, the network trained first on
  the model frozen for ``--updates`` score steps on fresh Monte-Carlo targets
  (``chain_steps.py``'s ``network:all``);
- ``network:K+P:RANK``: the best of that network's K plans and P prior
  trajectories;

where RANK is ``value``, the mean over all Q heads of Q(z, a_0) for each
proposal's first action (:func:`~mbdpo.diagnostics.mean_q`: not the planners'
random two heads, so an acting model, without dropout, ranks the same
proposals the same way every time; no rollout), or ``return``,
J by one rollout of the proposals (:func:`~mbdpo.planning.rollout.candidate_returns`).
One row per way and episode in ``--out`` (default ``results/value_ranking.csv``):
the return, the episode's milliseconds per step (acting and the
environment, one thread), and for ``network:K+P`` ways the share of actions
that took one of the network's plans.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mbdpo.analysis.runs import write_csv
from mbdpo.envs import make_env
from mbdpo.errors import ConfigError, exit_on_user_error
from mbdpo.diagnostics import mean_q
from mbdpo.planning.base import Planner
from mbdpo.planning.diffusion import DiffusionPlanner
from mbdpo.planning.rollout import candidate_returns, policy_trajectories
from mbdpo.training.evaluate import episode_seed, run_episode
# benchmarks/ is the script's own directory, first on sys.path
from chain_steps import playing_agent, single_task_diffusion_checkpoint, ways_parser

RESULTS = Path(__file__).resolve().parent / "results"
RANKINGS = ("value", "return")


@dataclass(frozen=True)
class Way:
    """A way of acting: ``kind`` mc, prior-mean, prior or network; ``network_plans`` K and ``prior_plans`` P
    proposals per action, ranked by ``ranking`` (value or return) when there are more than one."""

    kind: str
    network_plans: int = 0
    prior_plans: int = 0
    ranking: str = "value"


def parse_way(text: str) -> Way:
    """``mc``, ``prior-mean``, ``prior:P:RANK``, ``network`` or ``network:K+P:RANK`` -> :class:`Way`."""
    kind, _, rest = text.partition(":")
    counts, _, ranking = rest.partition(":")
    try:
        if kind in ("mc", "prior-mean") and not rest:
            return Way(kind)
        if kind == "network" and not rest:
            return Way(kind, network_plans=1)
        numbers = [int(n) for n in counts.split("+")]
        if ranking in RANKINGS and kind == "prior" and len(numbers) == 1 and numbers[0] >= 1:
            return Way(kind, prior_plans=numbers[0], ranking=ranking)
        if ranking in RANKINGS and kind == "network" and len(numbers) == 2 and numbers[0] >= 1 and numbers[1] >= 0:
            return Way(kind, network_plans=numbers[0], prior_plans=numbers[1], ranking=ranking)
    except ValueError:
        pass
    raise ConfigError(f"--ways {text!r}: valid are mc, prior-mean, prior:<P>:<rank>, network and "
                      f"network:<K>+<P>:<rank>, with K, P >= 1 (P >= 0 beside a network) and rank value or return")


class BestProposalPlanner(Planner):
    """Acts on the best of the score network's and the policy prior's proposals (:class:`Way`), the network
    that of ``diffusion``, an agent's planner; counts, per episode, the ranked actions and those of them that
    took a network plan."""

    def __init__(self, diffusion: DiffusionPlanner, way: Way):
        super().__init__(diffusion.model, diffusion.cfg)
        self.diffusion, self.way = diffusion, way
        self.actions = self.network_actions = 0

    def reset(self) -> None:
        super().reset()
        self.actions = self.network_actions = 0

    def network_plans(self, z: torch.Tensor, obs: torch.Tensor | None) -> torch.Tensor:
        """``network_plans`` plans from the score network, one batched reverse chain: ``[K, H, A]``."""
        previous = self.diffusion.previous_plans(z.device)
        return self.diffusion.score_network_candidates(z, previous, self.way.network_plans, obs=obs)[0]

    @torch.no_grad()
    def plan(self, z: torch.Tensor, task: torch.Tensor | None = None, obs: torch.Tensor | None = None) -> torch.Tensor:
        way = self.way
        if way.kind == "prior-mean":
            mean, _ = self.model.policy_distribution(z)
            return torch.cat([self.model.mean_action(mean), torch.zeros(self.cfg.horizon - 1, self.cfg.action_dim)])
        proposals = [self.network_plans(z, obs)] if way.network_plans else []
        if way.prior_plans:
            proposals.append(policy_trajectories(self.model, z, self.cfg.horizon, way.prior_plans)[0])
        plans = torch.cat(proposals)
        if len(plans) == 1:
            return plans[0]
        scores = (mean_q(self.model, z.expand(len(plans), -1), plans[:, 0]) if way.ranking == "value"
                  else candidate_returns(self.model, z, plans.unsqueeze(0), self.cfg.energy_eta)[0])
        best = int(scores.argmax())
        self.actions += 1
        self.network_actions += best < way.network_plans
        return plans[best]


def main() -> None:
    args = ways_parser(__doc__, "mc, prior-mean, prior:<P>:<value|return>, network, network:<K>+<P>:<value|return>",
                       RESULTS / "value_ranking.csv").parse_args()
    ways = {text: parse_way(text) for text in args.ways}
    checkpoint, cfg = single_task_diffusion_checkpoint(args.checkpoint, "value_ranking.py")
    agent = playing_agent(checkpoint, args, any(way.network_plans for way in ways.values()))
    monte_carlo = agent.planner
    assert isinstance(monte_carlo, DiffusionPlanner)
    env = make_env(cfg.task, cfg.seed)
    rows = []
    for text, way in ways.items():
        agent.planner = planner = monte_carlo if way.kind == "mc" else BestProposalPlanner(monte_carlo, way)
        ranked_mixture = way.network_plans and way.prior_plans
        for episode in range(args.episodes):
            tick = time.perf_counter()
            result = run_episode(agent, env, episode_seed(cfg.seed, "eval", episode))  # resets the counts first
            share = round(planner.network_actions / planner.actions, 3) if ranked_mixture else ""
            rows.append({"checkpoint": args.checkpoint, "way": text, "updates": args.updates if way.network_plans else 0,
                         "episode": episode, "episode_reward": round(result["episode_reward"], 3),
                         "ms_per_step": round(1000 * (time.perf_counter() - tick) / result["episode_length"], 2),
                         "network_share": share})
            write_csv(args.out, rows)  # after each episode: a stopped run keeps what it measured
        returns = [row["episode_reward"] for row in rows if row["way"] == text]
        print(f"{text}: {np.mean(returns):.1f} +- {np.std(returns, ddof=1) / np.sqrt(len(returns)):.1f}", flush=True)


if __name__ == "__main__":
    exit_on_user_error(main, "value_ranking")
