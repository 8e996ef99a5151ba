"""Can plain regression onto Monte Carlo's actions amortise it, where score matching does not? (DAgger)

    python benchmarks/planner_distillation.py --checkpoint RUN/checkpoint.pt --rounds 1 \
        --label-episodes 3 --episodes 8

On walker-walk the score network, trained by score matching on Monte-Carlo
targets (eq. 16), acts at or below the policy prior, while Monte Carlo's
move is mostly a ranking of the prior's samples by the model's imagined
return (benchmarks/NOTES.md). This asks whether what Monte Carlo does at a
state can be learned at all by the simplest amortisation: a copy of the
policy prior's network regressed onto the first action Monte Carlo plans
there (planner distillation, in rounds as DAgger does, Ross et al. 2011):

- round 0: Monte Carlo plays ``--label-episodes`` episodes (the
  checkpoint's ``collect`` seeds, not its evaluation seeds), and each state
  is labelled with the action it took there;
- round r >= 1: the student of round r - 1 plays as many episodes, with
  Monte Carlo planning beside it at each state (its warm start following the
  student's states) to label it.

With ``--replay-states N --buffer RUN/buffer.npz``, round 0 also labels N
states drawn from the run's replay buffer, each with the mean first action
of ``--plans-per-state`` fresh Monte-Carlo plans (:func:`replay_labels`):
the states every policy of the run visited, not only Monte Carlo's own
(``--label-episodes 0 --rounds 0`` labels only those). ``--imagined-steps K``
adds K imagined states per replay state (:func:`imagined_labels`): the
model's own dynamics follow each label's action from the replay state, and
each state it reaches is labelled the same way, for more states than the
run visited, near where Monte Carlo would take it. ``--chain-labels`` adds
the checkpoint's stored chains (``score_target=chain`` runs), each state
encoded by the checkpoint's model and labelled with its plan's first action:
the data ``score_sampler=policy`` regresses online, fitted here to the end.

After each round ``--fit-seeds`` new students (``student:r``, then
``student:r/s``) start from the prior's weights and take ``--fit-steps``
Adam steps on :func:`student_error` over all labels so far, the model
frozen, each drawing its own minibatches. A tenth of the visited states,
drawn at random, is held out with the imagined states that descend from
them (they are never fitted): the student's squared error there, beside the
prior's, says whether the mapping carries over to states it did not fit,
and Monte Carlo's own variance at those states (half the squared difference
of two fresh plans' first actions) is the least such error any regression
onto one plan per state can reach (a K-th of it for labels averaging K
plans). Then the checkpoint's evaluation episodes are played by each
round's students, the prior's mean action (``prior``), Monte Carlo (``mc``),
the checkpoint's own distilled policy (``distilled``, if it trained one with
``score_sampler=policy``) and, with ``--mean-of K``, the mean of K fresh Monte-Carlo plans at each state
(``mc-mean:K``): what the regression converges to with unlimited labels,
acted on directly, so whether Monte Carlo's average move is worth learning.
One row per way and evaluation episode in ``--out`` (default
``results/planner_distillation.csv``); a student's ``labels`` is the number
of states it was fitted on (before ``--imagined-steps``, result files counted
the held-out tenth as well).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import gymnasium
import numpy as np
import torch

from mbdpo.agent import Agent
from mbdpo.analysis.runs import write_csv
from mbdpo.config import Config
from mbdpo.envs import make_env
from mbdpo.errors import ConfigError, exit_on_user_error
from mbdpo.model.world_model import WorldModel
from mbdpo.planning.base import Planner
from mbdpo.planning.diffusion import DiffusionPlanner
from mbdpo.planning.distilled_policy import DistilledPolicy, distillation_loss
from mbdpo.training.evaluate import episode_seed, run_episode
# benchmarks/ is the script's own directory, first on sys.path
from chain_steps import monte_carlo_agent, single_task_diffusion_checkpoint
from score_fit import stored_states

RESULTS = Path(__file__).resolve().parent / "results"
LABEL_BATCH = 64  # latents per Monte-Carlo batch: the least time per state on 2 cores (64: 90 ms, 256: 120, 1,024: 164)


def student_error(model: WorldModel, student: DistilledPolicy, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The library's :func:`~mbdpo.planning.distilled_policy.distillation_loss` of the student's mean action at
    ``z [B, L]`` against Monte Carlo's ``labels [B, A]``: its minimiser is E[a_MC | z]."""
    return distillation_loss(student.actions(model, z), labels)


class StudentPlanner(Planner):
    """Acts on a distilled policy's plan: its mean action, the rest zeros (nothing is rolled out)."""

    def __init__(self, agent: Agent, student: DistilledPolicy):
        super().__init__(agent.model, agent.cfg)
        self.student = student

    @torch.no_grad()
    def plan(self, z: torch.Tensor, task: torch.Tensor | None = None, obs: torch.Tensor | None = None) -> torch.Tensor:
        return self.student.plans(self.model, z, task)[0]


def prior_copy(agent: Agent) -> DistilledPolicy:
    """A distilled policy with the prior's weights: what every student starts from, and acts as the prior."""
    student = DistilledPolicy(agent.cfg)
    student.start_from_prior(agent.model)
    return student.requires_grad_(False)


class MonteCarloMeanPlanner(Planner):
    """Acts on the mean of ``count`` independent Monte-Carlo plans at the state, planned in one batch: the
    E[a_MC | z] that :func:`student_error` converges to. Needs the stochastic kernel (no warm start)."""

    def __init__(self, monte_carlo: DiffusionPlanner, count: int):
        super().__init__(monte_carlo.model, monte_carlo.cfg)
        self.monte_carlo, self.count = monte_carlo, count

    @torch.no_grad()
    def plan(self, z: torch.Tensor, task: torch.Tensor | None = None, obs: torch.Tensor | None = None) -> torch.Tensor:
        return fresh_plans(self.monte_carlo, z.expand(self.count, -1)).mean(0)


@torch.no_grad()
def labelled_episode(agent: Agent, teacher: Planner, student: Planner | None, env: gymnasium.Env,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One episode acted by ``student`` (the ``teacher`` itself if None), each state labelled with the action
    the teacher plans there. Returns the states' latents ``[T, L]`` and labels ``[T, A]``."""
    agent.model.eval()
    obs, _ = env.reset(seed=seed)
    teacher.reset()
    latents, labels, done = [], [], False
    while not done:
        obs_tensor = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
        z = agent.model.encode(obs_tensor)
        label = teacher.act(z, obs=obs_tensor)
        action = label if student is None else student.act(z, obs=obs_tensor)
        latents.append(z)
        labels.append(label)
        obs, _, terminated, truncated, _ = env.step(action.numpy())
        done = terminated or truncated
    return torch.cat(latents), torch.stack(labels)


def fit_student(agent: Agent, z: torch.Tensor, labels: torch.Tensor, steps: int, batch_size: int,
                lr: float, seed: int) -> DistilledPolicy:
    """A :func:`prior_copy` after ``steps`` Adam steps of :func:`student_error` on minibatches of
    ``(z, labels)``."""
    student = prior_copy(agent).requires_grad_(True)
    optimizer = torch.optim.Adam(student.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        rows = torch.randint(len(z), (batch_size,), generator=generator)
        loss = student_error(agent.model, student, z[rows], labels[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return student.requires_grad_(False)


def held_out_split(count: int, seed: int) -> torch.Tensor:
    """A boolean mask of ``count`` rows, a tenth of them (at least one) True: the held-out states."""
    held_out = torch.zeros(count, dtype=torch.bool)
    held_out[torch.randperm(count, generator=torch.Generator().manual_seed(seed))[:max(1, count // 10)]] = True
    return held_out


@torch.no_grad()
def fresh_plans(monte_carlo: DiffusionPlanner, z: torch.Tensor) -> torch.Tensor:
    """One new Monte-Carlo plan ``[B, H, A]`` from each latent of ``z [B, L]``, all in one batch. With the
    stochastic kernel every plan starts from N(0, I), so a plan does not depend on the previous one."""
    starts = torch.zeros(len(z), monte_carlo.cfg.horizon, monte_carlo.cfg.action_dim, device=z.device)
    return monte_carlo.monte_carlo_chains(z, starts)[1]


@torch.no_grad()
def replay_labels(monte_carlo: DiffusionPlanner, z: torch.Tensor, plans: int) -> torch.Tensor:
    """The mean first action ``[B, A]`` of ``plans`` fresh Monte-Carlo plans (:func:`fresh_plans`) at each
    latent of ``z [B, L]``, planned ``LABEL_BATCH`` at a time."""
    repeated = z.repeat_interleave(plans, dim=0)
    first = torch.cat([fresh_plans(monte_carlo, part)[:, 0] for part in repeated.split(LABEL_BATCH)])
    return first.view(len(z), plans, -1).mean(1)


@torch.no_grad()
def labelled_replay(agent: Agent, cfg: Config, args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    """The latents ``[N, L]`` of ``--replay-states`` observations of the replay buffer at ``--buffer`` and
    their labels ``[N, A]`` (:func:`replay_labels`, ``--plans-per-state`` plans each) by the agent's Monte
    Carlo."""
    z = agent.model.encode(stored_states(cfg, args.buffer, args.replay_states, "--replay-states"))
    return z, replay_labels(agent.planner, z, args.plans_per_state)


@torch.no_grad()
def chain_labels(agent: Agent) -> tuple[torch.Tensor, torch.Tensor]:
    """The latents ``[N, L]`` of the states of the agent's stored chains, encoded by its model, and the first
    actions ``[N, A]`` of the chains' plans: what ``score_sampler=policy`` regresses online."""
    if agent.chains is None or not len(agent.chains):
        raise ConfigError("--chain-labels: the checkpoint stores no chains (runs with act_mode=auto|score "
                          "score_target=chain do)")
    size = len(agent.chains)
    return agent.model.encode(agent.chains.obs[:size].float()), agent.chains.plan[:size, 0]


@torch.no_grad()
def imagined_labels(monte_carlo: DiffusionPlanner, z: torch.Tensor, labels: torch.Tensor, steps: int,
                    plans: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Labelled imagined states: from each latent of ``z [N, L]`` the model's dynamics take its label's action
    (``labels [N, A]``) to the next latent, which is labelled by :func:`replay_labels` (``plans`` plans), and
    so on for ``steps`` steps. Returns latents ``[steps * N, L]`` and labels ``[steps * N, A]``, step by step,
    so that row ``k * N + i`` descends from state ``i``."""
    imagined_z, imagined_targets = [], []
    for _ in range(steps):
        z = monte_carlo.model.next(z, labels)
        labels = replay_labels(monte_carlo, z, plans)
        imagined_z.append(z)
        imagined_targets.append(labels)
    return torch.cat(imagined_z), torch.cat(imagined_targets)


@torch.no_grad()
def monte_carlo_floor(monte_carlo: DiffusionPlanner, z: torch.Tensor) -> float:
    """Half the mean squared difference between the first actions of two independent Monte-Carlo plans at
    each latent of ``z [B, L]`` (:func:`fresh_plans`): Monte Carlo's own variance at a state, the least
    error a regression onto one label per state can reach."""
    first, second = (fresh_plans(monte_carlo, z)[:, 0] for _ in range(2))
    return float((first - second).pow(2).sum(-1).mean() / 2)


def fitted_students(agent: Agent, monte_carlo: DiffusionPlanner, latents: list[torch.Tensor],
                    labels: list[torch.Tensor], imagined: tuple[torch.Tensor, torch.Tensor], round_index: int,
                    args: argparse.Namespace) -> dict[str, tuple[DistilledPolicy, dict]]:
    """``--fit-seeds`` students of round ``round_index`` (``student:r``, then ``student:r/s`` for fit seed s >= 1),
    each fitted on all labelled states so far but one held-out tenth of the visited ones and the ``imagined``
    states (latents, labels; :func:`imagined_labels` of the first ``--replay-states`` rows) that descend from
    it, with its errors there beside the prior's and ``monte_carlo``'s floor."""
    z, targets = torch.cat(latents), torch.cat(labels)
    held_out = held_out_split(len(z), round_index)
    imagined_z, imagined_targets = imagined
    imagined_fitted = ~held_out[:args.replay_states].repeat(args.imagined_steps)
    fit_z = torch.cat([z[~held_out], imagined_z[imagined_fitted]])
    fit_targets = torch.cat([targets[~held_out], imagined_targets[imagined_fitted]])
    with torch.no_grad():
        prior_error = student_error(agent.model, prior_copy(agent), z[held_out], targets[held_out])
        floor = monte_carlo_floor(monte_carlo, z[held_out][:args.floor_states])
    students = {}
    for fit_seed in range(args.fit_seeds):
        student = fit_student(agent, fit_z, fit_targets, args.fit_steps, args.batch_size, args.lr,
                              round_index * args.fit_seeds + fit_seed)
        with torch.no_grad():
            error = student_error(agent.model, student, z[held_out], targets[held_out])
        name = f"student:{round_index}" + (f"/{fit_seed}" if fit_seed else "")
        students[name] = student, {"round": round_index, "fit_seed": fit_seed, "labels": len(fit_z),
                                   "held_out_error": round(float(error), 4),
                                   "prior_held_out_error": round(float(prior_error), 4),
                                   "monte_carlo_floor": round(floor, 4)}
    return students


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--rounds", type=int, default=1, help="DAgger rounds after round 0")
    parser.add_argument("--label-episodes", type=int, default=3, help="episodes labelled per round")
    parser.add_argument("--buffer", type=Path, help="the run's replay buffer (RUN/buffer.npz), for --replay-states")
    parser.add_argument("--replay-states", type=int, default=0, help="replay states labelled in round 0 as well")
    parser.add_argument("--plans-per-state", type=int, default=1,
                        help="a replay state's label is the mean first action of this many fresh plans")
    parser.add_argument("--imagined-steps", type=int, default=0,
                        help="imagined states labelled per replay state, along the labels' actions")
    parser.add_argument("--chain-labels", action="store_true",
                        help="round 0 also fits the checkpoint's stored chains' first actions")
    parser.add_argument("--fit-steps", type=int, default=2000)
    parser.add_argument("--fit-seeds", type=int, default=1, help="students fitted per round, on the same labels")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--floor-states", type=int, default=256, help="held-out states of Monte Carlo's floor")
    parser.add_argument("--episodes", type=int, default=8, help="evaluation episodes per way")
    parser.add_argument("--mean-of", type=int, default=0,
                        help="also act on the mean of this many Monte-Carlo plans per state (0: not)")
    parser.add_argument("--out", type=Path, default=RESULTS / "planner_distillation.csv")
    return parser


def main() -> None:
    args = parser().parse_args()
    counts = {"--rounds": (args.rounds, 0), "--label-episodes": (args.label_episodes, 0),
              "--replay-states": (args.replay_states, 0), "--plans-per-state": (args.plans_per_state, 1),
              "--imagined-steps": (args.imagined_steps, 0),
              "--fit-steps": (args.fit_steps, 1), "--fit-seeds": (args.fit_seeds, 1), "--batch-size": (args.batch_size, 1),
              "--floor-states": (args.floor_states, 1), "--episodes": (args.episodes, 2),
              "--mean-of": (args.mean_of, 0)}  # flag: (value, least)
    bad = [f"{flag} {value}" for flag, (value, least) in counts.items() if value < least]
    if bad:
        raise ConfigError(", ".join(bad) + ": valid are "
                          + ", ".join(f"{flag} >= {least}" for flag, (_, least) in counts.items()))
    if args.label_episodes == 0 and (args.rounds or not (args.replay_states or args.chain_labels)):
        raise ConfigError(f"--label-episodes 0 with --rounds {args.rounds} --replay-states {args.replay_states} "
                          "labels nothing in some round: valid with --rounds 0 and --replay-states >= 1 or "
                          "--chain-labels")
    if args.replay_states and args.buffer is None:
        raise ConfigError(f"--replay-states {args.replay_states} needs --buffer RUN/buffer.npz")
    if args.imagined_steps and not args.replay_states:
        raise ConfigError(f"--imagined-steps {args.imagined_steps} starts from replay states: valid with "
                          "--replay-states >= 1")
    _, cfg = single_task_diffusion_checkpoint(args.checkpoint, "planner_distillation.py")
    if cfg.diffusion_kernel != "stochastic":
        raise ConfigError(f"{args.checkpoint}: planner_distillation.py takes diffusion_kernel=stochastic (its "
                          "floor plans the held-out states anew), not warm")
    agent = monte_carlo_agent(args.checkpoint)
    monte_carlo = agent.planner
    env = make_env(cfg.task, cfg.seed)
    latents, labels = [], []
    imagined = torch.zeros(0, cfg.latent_dim), torch.zeros(0, cfg.action_dim)
    if args.replay_states:
        tick = time.perf_counter()
        replay_z, replay_targets = labelled_replay(agent, cfg, args)
        latents.append(replay_z)
        labels.append(replay_targets)
        print(f"{args.replay_states} replay states labelled ({time.perf_counter() - tick:.0f} s)", flush=True)
        if args.imagined_steps:
            tick = time.perf_counter()
            imagined = imagined_labels(monte_carlo, replay_z, replay_targets, args.imagined_steps,
                                       args.plans_per_state)
            print(f"{len(imagined[0])} imagined states labelled ({time.perf_counter() - tick:.0f} s)", flush=True)
    if args.chain_labels:
        chain_z, chain_targets = chain_labels(agent)
        latents.append(chain_z)
        labels.append(chain_targets)
        print(f"{len(chain_z)} stored chains as labels", flush=True)
    students: dict[str, tuple[Planner, dict]] = {}
    student = None
    for round_index in range(args.rounds + 1):
        tick = time.perf_counter()
        for episode in range(args.label_episodes):
            seed = episode_seed(cfg.seed, "collect", round_index * args.label_episodes + episode)
            episode_z, episode_labels = labelled_episode(agent, monte_carlo, student, env, seed)
            latents.append(episode_z)
            labels.append(episode_labels)
        fitted = fitted_students(agent, monte_carlo, latents, labels, imagined, round_index, args)
        for name, (student, fit) in fitted.items():
            students[name] = StudentPlanner(agent, student), fit
            print(f"{name}: {fit}", flush=True)
        print(f"round {round_index}: {time.perf_counter() - tick:.0f} s", flush=True)
        student = students[f"student:{round_index}"][0]
    ways = {**students, "prior": (StudentPlanner(agent, prior_copy(agent)), {})}
    if cfg.score_sampler == "policy" and agent.score_network.trained:
        ways["distilled"] = (StudentPlanner(agent, agent.score_network), {})
    ways["mc"] = (monte_carlo, {})
    if args.mean_of:
        ways[f"mc-mean:{args.mean_of}"] = (MonteCarloMeanPlanner(monte_carlo, args.mean_of), {})
    rows = []
    for way, (planner, fit) in ways.items():
        agent.planner = planner
        for episode in range(args.episodes):
            result = run_episode(agent, env, episode_seed(cfg.seed, "eval", episode))
            rows.append({"checkpoint": args.checkpoint, "way": way, **fit, "episode": episode,
                         "episode_reward": round(result["episode_reward"], 3)})
            write_csv(args.out, rows)  # after each episode: a stopped run keeps what it measured
        returns = [row["episode_reward"] for row in rows if row["way"] == way]
        print(f"{way}: {np.mean(returns):.1f} +- {np.std(returns, ddof=1) / np.sqrt(len(returns)):.1f}", flush=True)


if __name__ == "__main__":
    exit_on_user_error(main, "planner_distillation")
