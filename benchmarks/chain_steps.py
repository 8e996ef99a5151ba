"""Where the score network falls behind: acting with the first k reverse steps, and with averaged estimates.

    python benchmarks/chain_steps.py --checkpoint RUN/checkpoint.pt --buffer RUN/buffer.npz \
        --ways mc:1x1 mc:1x16 mc:3x1 mc:3x4 mc:5x1 network:1 network:all --updates 3000 --episodes 8

Plays a checkpoint's evaluation episodes (its evaluation seeds, so paired
with ``mbdpo eval`` and ``score_fit.py`` on the same checkpoint) with
truncated reverse chains: from the kernel's start, only the k noisiest
steps run, and the plan is the last denoised mean, the sampler's estimate
of its final plan at that step (Tweedie). A way of acting is

- ``mc:kxK``: Monte Carlo (section 4) for k steps (``all``: the whole chain,
  what acting does), each denoised mean the average of K independent
  estimates. K = 1 is the sampler itself; as K grows it becomes the
  expectation that the score network regresses onto (eq. 16), so if
  averaging costs return, the regression's target acts worse than the
  sampler it amortises;
- ``local:kxK``: the same without the policy prior's trajectories among
  the candidates (``num_pi_trajs=0``): Monte Carlo's local moves alone,
  which depend on x_tau and its proposals only;
- ``network:k``: a new score network, trained first on the model frozen
  for ``--updates`` score steps on fresh Monte-Carlo targets (the defaults:
  32 replay states x 32 samples, mixed inputs; ``score_fit.py``'s ``mixed
  32x32``), acting for k steps.

One row per way and episode in ``--out`` (default
``results/chain_steps.csv``), with each way's mean printed at the end.
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
from mbdpo.checkpoint import AGENT, load_checkpoint
from mbdpo.config import Config
from mbdpo.envs import make_env
from mbdpo.errors import ConfigError, exit_on_user_error
from mbdpo.planning.diffusion import (
    DenoiseFn, DiffusionPlanner, monte_carlo_denoiser, reverse_step, score_from_denoised_mean, score_network_denoiser,
)
from mbdpo.training.evaluate import episode_seed, run_episode
# benchmarks/ is the script's own directory, first on sys.path
from score_fit import SETTINGS, checkpoint_and_buffer_parser, load_world_model, network_config, training_buffer

RESULTS = Path(__file__).resolve().parent / "results"


def averaged_denoiser(denoisers: list[DenoiseFn]) -> DenoiseFn:
    """The mean of independent estimates of E[x_0 | x_tau]."""
    return lambda x_tau, tau: torch.stack([denoise(x_tau, tau) for denoise in denoisers]).mean(0)


class TruncatedChainPlanner(DiffusionPlanner):
    """The diffusion planner cut after its ``steps`` noisiest reverse steps, its plan the last denoised
    mean; by Monte Carlo with each denoised mean averaged over ``estimates``, or with the score network.
    ``cfg`` (default the agent's) gives Monte Carlo other planner settings."""

    def __init__(self, agent: Agent, steps: int, estimates: int, network: bool, cfg: Config | None = None):
        super().__init__(agent.model, cfg or agent.cfg, agent.score_network)
        self.steps, self.estimates, self.network = steps, estimates, network

    @torch.no_grad()
    def plan(self, z: torch.Tensor, task: torch.Tensor | None = None, obs: torch.Tensor | None = None) -> torch.Tensor:
        schedule = self.schedule_on(z.device)
        if self.network:
            denoise = score_network_denoiser(self.score_network, self.model, schedule, z, task, obs=obs)
        else:
            denoise = averaged_denoiser([monte_carlo_denoiser(self.model, self.cfg, schedule, z, task)
                                         for _ in range(self.estimates)])
        x = self.chain_starts(self.previous_plans(z.device))
        for tau in reversed(range(schedule.steps - self.steps, schedule.steps)):
            denoised = denoise(x, tau)
            x = reverse_step(x, score_from_denoised_mean(x, denoised, schedule.alpha_bar[tau]), schedule, tau,
                             self.stochastic)
        self.previous_plan = denoised[0].clamp(-1, 1)
        return self.previous_plan


def parse_way(way: str, diffusion_steps: int) -> tuple[str, int, int]:
    """``mc:kxK``, ``local:kxK`` or ``network:k`` (k a number of steps or ``all``) -> (kind, steps, estimates)."""
    kind, _, spec = way.partition(":")
    steps_text, _, estimates_text = spec.partition("x")
    try:
        steps = diffusion_steps if steps_text == "all" else int(steps_text)
        estimates = int(estimates_text or 1)
    except ValueError:
        steps = estimates = 0
    if kind not in ("mc", "local", "network") or not 1 <= steps <= diffusion_steps or estimates < 1 \
            or (kind == "network" and estimates_text):
        raise ConfigError(f"--ways {way!r}: valid are mc:<k>x<K>, local:<k>x<K> and network:<k>, "
                          f"k in 1..{diffusion_steps} or all, K >= 1")
    return kind, steps, estimates


def trained_network_agent(checkpoint: dict, buffer_path: Path, updates: int) -> Agent:
    """An agent on the checkpoint's model, frozen, with a new score network trained for ``updates`` steps on
    fresh Monte-Carlo targets (``score_fit.py``'s ``mixed 32x32``, on the replay it trains on)."""
    cfg = network_config(checkpoint, SETTINGS["mixed 32x32"])
    torch.manual_seed(0)
    agent = Agent(cfg, torch.device("cpu"))
    load_world_model(agent, checkpoint)
    buffer, _ = training_buffer(cfg, buffer_path)
    rng = np.random.default_rng(0)
    tick = time.perf_counter()
    for _ in range(updates):
        batch = buffer.sample(cfg.batch_size, rng, agent.device)
        with torch.no_grad():
            z = agent.model.encode(batch.obs[0])
        agent.update_score_network(batch, z)
    print(f"score network: {updates} updates in {time.perf_counter() - tick:.0f} s", flush=True)
    return agent


def ways_parser(description: str, ways_help: str, default_out: Path) -> argparse.ArgumentParser:
    """The options of a script that plays a frozen checkpoint's evaluation episodes in several ``--ways``,
    some with a new score network trained for ``--updates`` steps first."""
    parser = checkpoint_and_buffer_parser(description)
    parser.add_argument("--ways", nargs="+", required=True, help=ways_help)
    parser.add_argument("--updates", type=int, default=3000, help="score steps of the new network (network ways)")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--out", type=Path, default=default_out)
    return parser


def single_task_diffusion_checkpoint(path: str, script: str) -> tuple[dict, Config]:
    """The checkpoint at ``path`` and its config; a one-line error naming ``script`` unless it is a
    single-task ``planner=diffusion`` agent."""
    checkpoint = load_checkpoint(Path(path), torch.device("cpu"), holds=AGENT)
    cfg = Config.from_dict(checkpoint["config"])
    if cfg.planner != "diffusion" or cfg.multitask:
        raise ConfigError(f"{path}: {script} takes single-task planner=diffusion agents")
    return checkpoint, cfg


def playing_agent(checkpoint: dict, args: argparse.Namespace, network: bool) -> Agent:
    """The agent the ways play: with a new score network (:func:`trained_network_agent`) if ``network``,
    else the checkpoint's own, acting by Monte Carlo."""
    if network:
        return trained_network_agent(checkpoint, Path(args.buffer), args.updates)
    return monte_carlo_agent(args.checkpoint)


def monte_carlo_agent(path: str | Path, device: str = "auto") -> Agent:
    """The checkpoint's agent acting by Monte Carlo, also when its run acted with the score network (which
    a checkpoint restores): the ways these scripts call ``mc`` are Monte Carlo's."""
    agent = Agent.from_checkpoint(path, device)
    agent.set_acting_mode("mc")
    return agent


def main() -> None:
    args = ways_parser(__doc__, "mc:<k>x<K>, local:<k>x<K> or network:<k> (k: steps or all)",
                       RESULTS / "chain_steps.csv").parse_args()
    checkpoint, cfg = single_task_diffusion_checkpoint(args.checkpoint, "chain_steps.py")
    ways = {way: parse_way(way, cfg.diffusion_steps) for way in args.ways}
    agent = playing_agent(checkpoint, args, any(kind == "network" for kind, _, _ in ways.values()))
    env = make_env(cfg.task, cfg.seed)
    rows = []
    for way, (kind, steps, estimates) in ways.items():
        planner_cfg = dataclasses.replace(agent.cfg, num_pi_trajs=0) if kind == "local" else agent.cfg
        agent.planner = TruncatedChainPlanner(agent, steps, estimates, network=kind == "network", cfg=planner_cfg)
        tick = time.perf_counter()
        for episode in range(args.episodes):
            result = run_episode(agent, env, episode_seed(cfg.seed, "eval", episode))
            rows.append({"checkpoint": args.checkpoint, "way": way, "steps": steps, "estimates": estimates,
                         "updates": args.updates if kind == "network" else 0, "episode": episode,
                         "episode_reward": round(result["episode_reward"], 3)})
            write_csv(args.out, rows)  # after each episode: a stopped run keeps what it measured
        returns = [row["episode_reward"] for row in rows if row["way"] == way]
        print(f"{way}: {np.mean(returns):.1f} +- {np.std(returns, ddof=1) / np.sqrt(len(returns)):.1f} "
              f"({time.perf_counter() - tick:.0f} s)", flush=True)


if __name__ == "__main__":
    exit_on_user_error(main, "chain_steps")
