"""How fast the score network fits the Monte-Carlo sampler of a trained, frozen world model.

    python benchmarks/score_fit.py --checkpoint RUN/checkpoint.pt --buffer RUN/buffer.npz
    python benchmarks/score_fit.py ... --only chain --chains 2048 --updates 3000 --eval-episodes 10 --chains-file chains.pt
    python benchmarks/score_fit.py ... --continue-run --updates 4000 --check-every 1000 --eval-episodes 5

Loads an agent and its replay buffer, freezes the world model, and trains
only the score network, exactly as online training does (one score-matching
step per update). ``score_target=denoiser`` settings regress onto fresh
Monte-Carlo targets on the batch's first ``score_states`` states;
the ``chain`` setting first acts (by Monte Carlo, exploring, as training
does) from ``--chains`` states of the buffer, which stores the chains, then
regresses onto them. Every ``--check-every`` updates it runs the held-out
check of ``act_mode=auto`` on the states of the newest stored episodes, which
training never samples; each check also measures the network's error on
states it trains on (:func:`trained_state_errors`) and how much of Monte
Carlo's move comes from the policy prior's trajectories among its candidates
(:func:`prior_move_share`). With ``--eval-episodes``, the trained network and
the Monte-Carlo sampler then act in the environment (the run's evaluation
seeds). ``chain 256, return 1`` adds return guidance at the chains' states
(``score_return_coef=1``); ``chain 256, return 1 at replay states`` instead
takes one more step after each update that ascends J at the batch's replay
states (:func:`replay_return_step`), as the policy prior learns. ``--prior``
also acts with the policy prior's mean action alone, as a reference.
``--continue-run`` measures how far an online run's network lags
behind its own targets: it continues the checkpoint's own score network
(and optimiser) on the checkpoint's own chains (``score_target=chain``) or on
fresh denoiser targets (``denoiser``), with the world model frozen,
and acts in the environment at every check (``--new-network``: a new
network learns from the same targets; ``--score-lr`` sets the network's
learning rate); it writes
``results/score_lag.csv``, the other settings ``results/score_fit.csv``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from mbdpo.agent import Agent, frozen
from mbdpo.analysis.runs import read_csv, write_csv
from mbdpo.checkpoint import AGENT, load_checkpoint, save_checkpoint
from mbdpo.config import Config
from mbdpo.data.buffer import ReplayBuffer
from mbdpo.envs import make_env
from mbdpo.errors import ConfigError, exit_on_user_error
from mbdpo.planning.diffusion import score_network_denoiser
from mbdpo.planning.rollout import plan_returns
from mbdpo.planning.score_matching import return_guidance_loss, sampler_inputs
from mbdpo.training.evaluate import episode_rewards_text, evaluate, summarise

RESULTS = Path(__file__).resolve().parent / "results"
# Each setting names every option it compares, so a checkpoint's own choice (say score_anchor=prior) never
# leaks into a setting meant without it.
SETTINGS = {
    f"{inputs} {states}x{samples}": {"score_target": "denoiser", "score_replay_chains": 0, "score_inputs": inputs,
                                     "score_states": states, "score_samples": samples, "score_anchor": "none",
                                     "score_sampler": "chain", "score_return_coef": 0.0, "score_mlp_dim": 0,
                                     "score_layers": 2}
    for inputs in ("mixed", "sampler", "forward")
    for states, samples in ((32, 32),)
}
SETTINGS["mixed 32x32, prior anchor"] = {**SETTINGS["mixed 32x32"], "score_anchor": "prior"}
SETTINGS["mixed 32x32, 3x1024"] = {**SETTINGS["mixed 32x32"], "score_mlp_dim": 1024, "score_layers": 3}
# The chains come from acting (fill_chains), also when the checkpoint's run planned them from its replay.
SETTINGS["chain 256"] = {"score_target": "chain", "score_states": 256, "score_replay_chains": 0, "score_anchor": "none",
                        "score_sampler": "chain", "score_return_coef": 0.0, "score_mlp_dim": 0, "score_layers": 2}
SETTINGS["chain 256, prior anchor"] = {**SETTINGS["chain 256"], "score_anchor": "prior"}
SETTINGS["chain 256, return 1"] = {**SETTINGS["chain 256"], "score_return_coef": 1.0}
SETTINGS["chain 256, return 1 at replay states"] = SETTINGS["chain 256"]
# One call per action: the denoised mean at the chain's start, regressed onto the plan Monte Carlo ends at
SETTINGS["chain 256, jump, prior anchor"] = {**SETTINGS["chain 256, prior anchor"], "score_sampler": "jump"}
REPLAY_RETURN_SETTINGS = {"chain 256, return 1 at replay states"}  # with replay_return_step after each update


def episode_rows(buffer: ReplayBuffer, episodes: np.ndarray) -> np.ndarray:
    """The buffer rows holding the states of the stored episodes ``episodes`` (indices)."""
    return np.concatenate([np.arange(buffer.episode_start[i], buffer.episode_start[i] + buffer.episode_rows[i])
                           for i in episodes])


def stored_rows(buffer: ReplayBuffer) -> np.ndarray:
    """The buffer rows holding the states of every stored episode."""
    return episode_rows(buffer, np.arange(len(buffer.episode_start)))


def run_buffer(cfg: Config, path: Path) -> ReplayBuffer:
    """The run's replay buffer, read from ``path``."""
    buffer = ReplayBuffer(cfg.buffer_size, cfg.obs_dim, cfg.action_dim, cfg.horizon)
    buffer.load(path)
    return buffer


def stored_states(cfg: Config, path: Path, count: int, flag: str) -> torch.Tensor:
    """``count`` observations drawn without replacement (seed 0) from every state the run's replay buffer at
    ``path`` stores; a one-line error naming ``flag`` unless ``1 <= count <=`` that many."""
    buffer = run_buffer(cfg, path)
    stored = stored_rows(buffer)
    if not 1 <= count <= len(stored):
        raise ConfigError(f"{flag}={count} must be in [1, {len(stored)}] (the states the buffer stores)")
    rows = np.random.default_rng(0).choice(stored, count, replace=False)
    return torch.as_tensor(buffer.obs[rows], dtype=torch.float32)


def replay_return_step(agent: Agent, z: torch.Tensor, obs: torch.Tensor) -> None:
    """One more step of the score network: its denoised plans climb their imagined return J (paper eq. 10,
    :func:`~mbdpo.planning.score_matching.return_guidance_loss`) at the replay states of latents ``z [B, L]``,
    each at a random tau and at the input the network's own reverse chain visits there.

    ``score_return_coef`` ascends J only at the states of the stored chains; the policy prior ascends Q at
    every state of every batch. This asks whether the network, given the prior's states, acts like it."""
    cfg, schedule = agent.cfg, agent.planner.schedule_on(z.device)
    network = score_network_denoiser(agent.score_network, agent.model, schedule, z, obs=obs)
    tau = torch.randint(schedule.steps, (len(z),), device=z.device)
    with torch.no_grad():
        x_start = agent.planner.chain_starts(torch.zeros(len(z), cfg.horizon, cfg.action_dim, device=z.device))
        x_tau = sampler_inputs(network, x_start, schedule, agent.planner.stochastic, tau)
    with frozen(agent.model):
        loss = return_guidance_loss(agent.q_scale(plan_returns(agent.model, z, network(x_tau, tau), cfg.energy_eta)))
    agent.step_score_network(loss)


def error_by_step(errors: torch.Tensor) -> str:
    """Per-step errors as the CSV keeps them, tau = 0 (least noisy) first."""
    return " ".join(f"{e:.3f}" for e in errors.tolist())


def trained_state_errors(agent: Agent, trained_obs: np.ndarray) -> dict[str, str | float]:
    """The network's score error, as the held-out check measures it, on states the network trains on: far
    below the held-out error, the network fits its states and does not generalise; level, it fits neither."""
    with torch.random.fork_rng():  # the training draws stay those of a run without this diagnostic
        errors = agent.check_score_network(trained_obs).network_error
    return {"trained_state_network_error": round(float(errors.mean()), 4),
            "trained_state_error_by_step": error_by_step(errors)}


def prior_move_share(agent: Agent, check_obs: np.ndarray, without_prior: Config) -> dict[str, str]:
    """How much of Monte Carlo's move at the inputs the network's own chain visits comes from the policy prior's
    trajectories among its candidates: per step, the relative score error of a Monte-Carlo estimate without
    them (``without_prior``: ``num_pi_trajs=0``) against one with them. Near 0: Monte Carlo moves the plan
    locally, from x_tau alone; near 1: it jumps to the prior's samples where the model ranks them above the
    plan, a choice the network must learn from how the model ranks plans."""
    with torch.random.fork_rng():
        errors = agent.check_score_network(check_obs, other=without_prior).monte_carlo_error
    return {"monte_carlo_without_prior_error_by_step": error_by_step(errors)}


def split_buffer(buffer: ReplayBuffer, held_out: int) -> tuple[ReplayBuffer, np.ndarray]:
    """Training buffer without the newest ``held_out`` episodes, and those episodes' observations."""
    newest = np.argsort(buffer.episode_start)[-held_out:]
    keep = np.setdiff1d(np.arange(len(buffer.episode_start)), newest)
    held_out_obs = buffer.obs[episode_rows(buffer, newest)]
    buffer.episode_start, buffer.episode_rows = buffer.episode_start[keep], buffer.episode_rows[keep]
    return buffer, held_out_obs


def training_buffer(cfg: Config, path: Path) -> tuple[ReplayBuffer, np.ndarray]:
    """The run's replay buffer at ``path`` without its two newest episodes, which the checks hold out, and
    those episodes' observations (:func:`split_buffer`)."""
    return split_buffer(run_buffer(cfg, path), held_out=2)


def network_config(checkpoint: dict, overrides: dict) -> Config:
    """The checkpoint's config with ``overrides``, its network acting alone (its one plan, no Monte-Carlo
    steps), whatever the run acted with."""
    return dataclasses.replace(Config.from_dict(checkpoint["config"]), act_mode="auto", score_candidates=1,
                               score_mc_steps=0, **overrides)


def load_world_model(agent: Agent, checkpoint: dict) -> None:
    """The checkpoint's world model and Q scale (return guidance scales J by it) into ``agent``, frozen."""
    agent.model.load_state_dict(checkpoint["agent"]["model"])
    agent.q_scale.load_state_dict(checkpoint["agent"]["q_scale"])
    agent.model.requires_grad_(False)


def environment_return(agent: Agent, mode: str, episodes: int) -> dict[str, float]:
    """Mean and std of the evaluation return acting in ``mode`` (``mc``, ``score`` or ``prior``) on the run's
    evaluation episodes, and each episode's return (as ``mbdpo eval`` writes them, for paired differences)."""
    agent.set_acting_mode(mode)
    results = evaluate(agent, make_env(agent.cfg.task, agent.cfg.seed), episodes, agent.cfg.seed)
    summary = summarise(results)
    return {"environment_return": round(summary["episode_reward"], 1),
            "environment_return_std": round(summary["episode_reward_std"], 1),
            "episode_rewards": episode_rewards_text(results)}


def fill_chains(agent: Agent, observations: np.ndarray, chains_file: Path | None) -> None:
    """Store the Monte-Carlo chains of acting (exploring, as training does) from each of ``observations``;
    with ``chains_file``, load them from there if it exists, else write them there (atomically, in the
    checkpoint format) for the next setting."""
    if chains_file and chains_file.exists():
        agent.chains.load_state_dict(load_checkpoint(chains_file)["score_chains"])
        if len(agent.chains) != len(observations):
            raise ConfigError(f"{chains_file} holds {len(agent.chains)} chains, not --chains="
                             f"{len(observations)}; pass --chains={len(agent.chains)} or another --chains-file")
        print(f"{len(agent.chains)} Monte-Carlo chains loaded from {chains_file}", flush=True)
        return
    tick = time.perf_counter()
    for obs in observations:
        agent.act(obs, explore=True)
    if len(agent.chains) != len(observations):
        raise SystemExit(f"score_fit: acting stored {len(agent.chains)} chains, not {len(observations)}")
    print(f"{len(observations)} Monte-Carlo chains in {time.perf_counter() - tick:.0f} s", flush=True)
    if chains_file:
        save_checkpoint(chains_file, {"score_chains": agent.chains.state_dict()})


def fit(checkpoint: dict, buffer_path: Path, overrides: dict, updates: int, check_every: int,
        check_states: int, chains: int, chains_file: Path | None, eval_episodes: int, seed: int,
        continue_run: bool = False, new_network: bool = False, replay_return: bool = False,
        score_lr: float | None = None) -> list[dict]:
    cfg = network_config(checkpoint, overrides)
    if cfg.score_target == "chain" and not continue_run:  # a memory that holds every chain acted for
        cfg = dataclasses.replace(cfg, score_chains=max(cfg.score_chains, chains))
    device = torch.device("cpu")
    torch.manual_seed(seed)
    agent = Agent(cfg, device)
    if continue_run:  # the run's own network, optimiser and chains (if any); with new_network, the agent's new ones
        score_state = ("score_network", "score_optimizer", "acting_mode") if new_network else ()
        agent.load_state_dict({key: value for key, value in checkpoint["agent"].items() if key not in score_state})
    else:
        load_world_model(agent, checkpoint)
    if score_lr is not None:  # after loading: a loaded optimiser state carries the run's learning rate
        for group in agent.score_optimizer.param_groups:
            group["lr"] = score_lr
    agent.model.requires_grad_(False)
    buffer, held_out_obs = training_buffer(cfg, buffer_path)
    rng = np.random.default_rng(seed)
    check_obs = held_out_obs[rng.choice(len(held_out_obs), check_states, replace=False)]
    # Drawn by a generator of their own, so that rng's training draws stay those of runs before this diagnostic
    trained_obs = buffer.obs[np.random.default_rng(seed + 1).choice(stored_rows(buffer), check_states, replace=False)]
    without_prior = dataclasses.replace(cfg, num_pi_trajs=0)
    if agent.chains is not None and not continue_run:
        if chains < cfg.score_states:  # update_score_network waits for score_states chains: nothing would train
            raise ConfigError(f"--chains={chains} must be at least score_states={cfg.score_states}")
        states = rng.choice(stored_rows(buffer), chains, replace=False)
        fill_chains(agent, buffer.obs[states], chains_file)
        torch.manual_seed(seed)  # the same training draws whether the chains were run or loaded
    rows, seconds = [], 0.0
    for update in range(updates + 1):
        if update % check_every == 0:
            check = agent.check_score_network(check_obs)
            rows.append({"update": update, "return_gap": round(check.return_gap, 3),
                         "error_ratio": round(check.ratio, 3),
                         "network_error": round(float(check.network_error.mean()), 4),
                         "monte_carlo_error": round(float(check.monte_carlo_error.mean()), 4),
                         "network_error_by_step": error_by_step(check.network_error),
                         "network_plan_return": round(check.network_return, 2),
                         "monte_carlo_plan_return": round(check.monte_carlo_return, 2),
                         "random_plan_return": round(check.random_return, 2),
                         "ms_per_score_update": round(1000 * seconds / max(update, 1), 1),
                         **trained_state_errors(agent, trained_obs),
                         **prior_move_share(agent, check_obs, without_prior)})
            if eval_episodes and (continue_run or update == updates) and agent.score_network.trained:
                rows[-1].update(environment_return(agent, "score", eval_episodes))
            print(rows[-1], flush=True)
        if update == updates:
            break
        batch = buffer.sample(cfg.batch_size, rng, device)
        with torch.no_grad():
            z = agent.model.encode(batch.obs[0])
        tick = time.perf_counter()
        agent.update_score_network(batch, z)
        if replay_return:
            replay_return_step(agent, z, batch.obs[0])
        seconds += time.perf_counter() - tick
    return rows


def selected(name: str, only: str, settings: dict) -> bool:
    """Whether ``--only`` selects the setting ``name``: the one named ``only`` exactly, else every setting whose
    name contains it (so that "mixed 32x32" runs that setting alone, not also its variants)."""
    return name == only if only in settings else only in name


def checkpoint_and_buffer_parser(description: str) -> argparse.ArgumentParser:
    """The arguments of a script that reads a checkpoint and its run's replay buffer: ``--checkpoint``,
    ``--buffer``; ``description`` is the script's docstring."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--buffer", required=True)
    return parser


def main() -> None:
    parser = checkpoint_and_buffer_parser(__doc__)
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--check-every", type=int, default=250)
    parser.add_argument("--check-states", type=int, default=32)
    parser.add_argument("--chains", type=int, default=2048, help="states acted from to fill the chain memory")
    parser.add_argument("--chains-file", type=Path, help="cache of the filled chain memory: read if present, "
                        "else written (the same checkpoint, buffer and --chains)")
    parser.add_argument("--eval-episodes", type=int, default=0, help="then act in the environment this many episodes")
    parser.add_argument("--only", default="", help="the setting to run, or a substring of the names of those to run")
    parser.add_argument("--continue-run", action="store_true",
                        help="continue the checkpoint's own score network on its own targets (its chains, "
                             "or fresh denoiser targets), acting in the environment at every check")
    parser.add_argument("--new-network", action="store_true",
                        help="with --continue-run: a new score network learns from the run's own targets")
    parser.add_argument("--score-lr", type=float, help="the score network's learning rate (default: the run's lr)")
    parser.add_argument("--out", type=Path, help="results CSV (default: results/score_lag.csv with --continue-run, "
                        "else results/score_fit.csv)")
    parser.add_argument("--keep-monte-carlo", action="store_true",
                        help="keep the CSV's Monte-Carlo row (of the same checkpoint) instead of acting again")
    parser.add_argument("--prior", action="store_true",
                        help="with --eval-episodes: also act with the policy prior's mean action alone")
    args = parser.parse_args()
    if args.new_network and not args.continue_run:
        parser.error("--new-network is an option of --continue-run")
    if args.score_lr is not None and not args.score_lr > 0:
        parser.error(f"--score-lr={args.score_lr} must be positive")
    if args.prior and not args.eval_episodes:
        parser.error("--prior acts in the environment: give --eval-episodes N")
    checkpoint = load_checkpoint(Path(args.checkpoint), torch.device("cpu"), holds=AGENT)
    own = (f"{checkpoint['config']['score_target']}, the run's own" + (", new network" if args.new_network else "")
           + (f", lr {args.score_lr:g}" if args.score_lr is not None else ""))
    settings = {own: {}} if args.continue_run else SETTINGS
    out = args.out or RESULTS / ("score_lag.csv" if args.continue_run else "score_fit.csv")
    # The checkpoint's own agent acting in the environment, as references for the networks: setting -> act_mode
    references = {**({"monte carlo": "mc"} if args.eval_episodes and not args.keep_monte_carlo else {}),
                  **({"policy prior": "prior"} if args.prior else {})}
    chosen = [name for name in settings if selected(name, args.only, settings)] + list(references)
    results = [row for row in read_csv(out) if row["setting"] not in chosen]  # kept
    for setting, mode in references.items():
        agent = Agent.from_checkpoint(args.checkpoint, device="cpu")
        results.append({"setting": setting, **environment_return(agent, mode, args.eval_episodes)})
        print(results[-1], flush=True)
        write_csv(out, results)  # after each setting: a later failure keeps what was measured
    for name, overrides in settings.items():
        if name in chosen:
            print(f"--- {name}")
            for row in fit(checkpoint, Path(args.buffer), overrides, args.updates, args.check_every,
                           args.check_states, args.chains, args.chains_file, args.eval_episodes, seed=0,
                           continue_run=args.continue_run, new_network=args.new_network, score_lr=args.score_lr,
                           replay_return=name in REPLAY_RETURN_SETTINGS):
                results.append({"setting": name, **row})
            write_csv(out, results)


if __name__ == "__main__":
    exit_on_user_error(main, "score_fit")
