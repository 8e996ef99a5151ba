"""How far the score network's plans depart from the policy prior, against how far Monte Carlo's do.

    python benchmarks/plan_departure.py --checkpoint RUN/checkpoint.pt --buffer RUN/buffer.npz

From ``--states`` replay states of a checkpoint, each sampler plans once
from the start of an episode (no previous plan): the score network (its one
plan, no Monte-Carlo steps), Monte Carlo (section 4), and Monte Carlo with
every denoised mean averaged over ``--average`` independent estimates (the
expectation the network regresses onto, up to that many estimates' noise).
Each sampler plans twice, so that the distance between two of its own draws
is the noise floor of the others. Prints and writes the RMS distance between
the first actions of every pair, and to the policy prior's mean action.

With ``score_anchor=prior`` the network is built around that mean action: if
its plans stay near it while Monte Carlo's do not, the network has not
learned the departure; if the averaged Monte-Carlo plans stay near it too,
the departure is noise the regression rightly averages away.

``--steps-out FILE`` also follows each chain step by step: along the
network's chain and along Monte Carlo's, at every diffusion step tau, the
RMS distance (over the whole plan) between the network's denoised mean and
the averaged Monte-Carlo one at the input the chain visited, and of each
from the prior's mean plan and from the identity clamp(x_tau / sqrt(alpha_bar))
(the input itself, denoised by nothing). It tells where the two chains part:
whether the network follows Monte Carlo's denoised means where its own
chain goes, and where Monte Carlo's goes.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch

from mbdpo.agent import Agent
from mbdpo.analysis.runs import write_csv
from mbdpo.errors import ConfigError, exit_on_user_error
from mbdpo.planning.diffusion import DenoiseFn, monte_carlo_denoiser, reverse_diffusion, score_network_denoiser
from mbdpo.planning.rollout import policy_mean_plan
# benchmarks/ is the script's own directory, first on sys.path
from score_fit import checkpoint_and_buffer_parser, stored_states

RESULTS = Path(__file__).parent / "results"


def episode_starts(agent: Agent, z: torch.Tensor) -> torch.Tensor:
    """Reverse-chain inputs at tau = N-1 ``[B, H, A]`` for the latents ``z [B, L]``, as at an episode start."""
    cfg = agent.cfg
    return agent.planner.chain_starts(torch.zeros(len(z), cfg.horizon, cfg.action_dim, device=z.device))


def first_actions(agent: Agent, z: torch.Tensor, denoise: DenoiseFn) -> torch.Tensor:
    """First actions ``[B, A]`` of the reverse chains from ``z [B, L]`` with denoiser ``denoise``, each
    started as at an episode start (no previous plan)."""
    planner = agent.planner
    plans, _ = reverse_diffusion(denoise, episode_starts(agent, z), planner.schedule_on(z.device), planner.stochastic)
    return plans.clamp(-1, 1)[:, 0]


def averaged_monte_carlo_denoiser(agent: Agent, z: torch.Tensor, estimates: int) -> DenoiseFn:
    """The average of ``estimates`` independent Monte-Carlo denoised means from ``z [B, L]`` (1: the
    Monte-Carlo sampler's own)."""
    schedule = agent.planner.schedule_on(z.device)
    denoisers = [monte_carlo_denoiser(agent.model, agent.cfg, schedule, z) for _ in range(estimates)]

    def averaged(x_tau: torch.Tensor, tau: int) -> torch.Tensor:
        return torch.stack([denoise(x_tau, tau) for denoise in denoisers]).mean(0)

    return averaged


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).mean().sqrt())


def step_distances(agent: Agent, z: torch.Tensor, chains: dict[str, DenoiseFn], network: DenoiseFn,
                   averaged: DenoiseFn) -> list[dict]:
    """Along the reverse chain of each of ``chains`` (name -> denoiser) from ``z [B, L]``, at every tau: RMS
    distances between the ``network``'s and the ``averaged`` Monte-Carlo denoised means at the visited
    input, the policy prior's mean plan and the identity clamp(x_tau / sqrt(alpha_bar)); every chain starts
    from the same draw. One row per chain and tau, noisiest first."""
    cfg, planner = agent.cfg, agent.planner
    schedule = planner.schedule_on(z.device)
    prior = torch.tanh(policy_mean_plan(agent.model, z, cfg.horizon))
    starts = episode_starts(agent, z)
    rows = []
    for chain, denoise in chains.items():
        _, visited = reverse_diffusion(denoise, starts, schedule, planner.stochastic)
        for tau in reversed(range(schedule.steps)):
            x_tau, alpha_bar = visited[tau], schedule.alpha_bar[tau]
            identity = (x_tau / alpha_bar.sqrt()).clamp(-1, 1)
            by_network, by_monte_carlo = network(x_tau, tau), averaged(x_tau, tau)
            rows.append({"chain": chain, "tau": tau, "alpha_bar": round(float(alpha_bar), 4),
                         "network_to_monte_carlo": round(rms(by_network, by_monte_carlo), 4),
                         "network_to_prior": round(rms(by_network, prior), 4),
                         "monte_carlo_to_prior": round(rms(by_monte_carlo, prior), 4),
                         "network_to_identity": round(rms(by_network, identity), 4),
                         "monte_carlo_to_identity": round(rms(by_monte_carlo, identity), 4)})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = checkpoint_and_buffer_parser(__doc__)
    parser.add_argument("--states", type=int, default=96)
    parser.add_argument("--average", type=int, default=16, help="Monte-Carlo estimates averaged per denoised mean")
    parser.add_argument("--out", type=Path, default=RESULTS / "plan_departure.csv")
    parser.add_argument("--steps-out", type=Path, help="also write the step-by-step distances along each chain here")
    args = parser.parse_args()
    agent = Agent.from_checkpoint(args.checkpoint, device="cpu")
    if not agent.score_network.trained:
        raise ConfigError(f"{args.checkpoint} holds an untrained score network (a run with act_mode=auto|score "
                          "trains one)")
    cfg = agent.cfg
    if cfg.multitask:
        raise ConfigError(f"{args.checkpoint} is a multi-task agent; plan_departure.py takes single-task ones")
    if args.average < 1:
        raise ConfigError(f"--average={args.average} must be at least 1")
    obs = stored_states(cfg, Path(args.buffer), args.states, "--states")
    torch.manual_seed(0)
    agent.model.eval()
    with torch.no_grad():
        z = agent.model.encode(obs)
        actions = {"prior mean": agent.model.pi(z)[1]["mean"]}
        schedule = agent.planner.schedule_on(z.device)
        for draw in (1, 2):
            network = score_network_denoiser(agent.score_network, agent.model, schedule, z, obs=obs)
            actions[f"network {draw}"] = first_actions(agent, z, network)
            actions[f"monte carlo {draw}"] = first_actions(agent, z, averaged_monte_carlo_denoiser(agent, z, 1))
            actions[f"monte carlo averaged {draw}"] = first_actions(
                agent, z, averaged_monte_carlo_denoiser(agent, z, args.average))
    rows = [{"checkpoint": args.checkpoint, "states": args.states, "average": args.average,
             "first": first, "second": second, "rms": round(rms(actions[first], actions[second]), 4)}
            for first, second in itertools.combinations(actions, 2)]
    for row in rows:
        print(f"{row['first']:>24} vs {row['second']:<24} {row['rms']:.3f}")
    write_csv(args.out, rows)
    print(f"written: {args.out}")
    if args.steps_out:
        with torch.no_grad():  # the network denoiser of the draws above: it is deterministic
            chains = {"network": network, "monte carlo": averaged_monte_carlo_denoiser(agent, z, 1)}
            write_csv(args.steps_out, step_distances(agent, z, chains, network,
                                                     averaged_monte_carlo_denoiser(agent, z, args.average)))
        print(f"written: {args.steps_out}")


if __name__ == "__main__":
    exit_on_user_error(main, "plan_departure")
