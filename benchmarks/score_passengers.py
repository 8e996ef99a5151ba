"""Score networks trained side by side on one online run: which training rule keeps up with the model?

    python benchmarks/score_passengers.py --task cartpole-swingup --steps 20000 --set coef

One online run acts by Monte Carlo with the core suite's MBDPO settings for
the task (``online.py``: seed 1, model_size 1, an evaluation of 3 episodes
every 2,500 steps). Beside it, several score networks, the passengers, learn
from every update of the same run (the seed-phase burst included), each with
its own training rule, as ``act_mode=auto score_target=chain`` trains its
network (256 of 1,000 stored chains per update), but none of them acts while
training. At every evaluation the evaluation episodes (the same seeds) are
played by Monte Carlo, with the policy prior alone, and with each trained
passenger. So every rule is measured on the same models at the same steps,
paired, for the cost of one Monte-Carlo run; an ``act_mode=auto`` run
switches once its network is within 5 % of Monte Carlo.

``--set`` chooses the passengers (``PASSENGER_SETS``): ``coef`` varies
``score_return_coef`` with 0.25 replay chains per update; ``rate`` tries
fewer replay chains with guidance, and the policy prior's anchor; ``anchor``
builds the networks around the policy prior (``score_anchor=prior``), without
and with guidance, at 0.25 replay chains; ``anchor-time`` compares no anchor,
the current prior's plan as the anchor of old chains (``prior``) and the plan
the prior made when each chain was planned (``chain``), at 0.25 replay chains
per update and, without and with that anchor, at 0.05; ``chain-rate`` only
0.25 and 0.05 replay chains, cheap enough to repeat with ``--seed N``;
``denoiser-anchor`` trains on fresh Monte-Carlo targets instead (the
default ``score_target=denoiser``, 32 states x 32 samples per update) without
the prior, around it (``score_anchor=prior``), and with the prior's plan as
an input (``score_anchor=input``); ``observation`` trains the unanchored
network on fresh targets with the latent z or with the observation as its
state input (``score_state``); ``observation-anchor`` the observation network
alone and with the prior's plan as an input; ``average`` the latter twice,
acting with an average of its weights (``score_ema`` 0.99 and 0.999), each
also played with its trained weights (as ``<name>/trained-weights``);
``learning-rate`` the 0.99 average at the score network's default step size
(the world model's ``lr``, 3e-4) and at ``score_lr=1e-3``.
Results:
``<runs-dir>/<task>/passengers-<set>/passengers.csv`` (the return of each
way of acting at each evaluation), copied to
``results/score_passengers_<task>_<set>.csv``; with ``--seed N`` other than
1 both names end in ``-seed<N>``. The run resumes from its
checkpoint like any run (the passengers are saved beside it, in
``passengers.pt``).

``--final-episodes N`` plays no training: it loads a finished run and plays N
evaluation episodes (the run's evaluation seeds, the first three those of its
evaluations) with Monte Carlo, the prior and each passenger, episode by
episode, so that the final returns can be compared with less noise than three
episodes give. One row per episode, written as it ends:
``<run dir>/passengers_final.csv``, copied to
``results/score_passengers_<task>_<set>_final.csv``. At the end it prints, per
way of acting, the mean, the std over episodes, the percent of Monte Carlo,
the mean paired difference to Monte Carlo with its standard error, and the
episodes won against Monte Carlo (rerun with the same N to print it again).
With ``--score-candidates K`` it replays only the networks, each acting on the
best of K of its plans by imagined return (``score_candidates=K``), paired
with the Monte-Carlo and prior returns already in ``passengers_final.csv``:
``results/score_passengers_<task>_<set>_final_candidates<K>.csv``. (For
``score_mc_steps``, the network's plan refined by Monte Carlo, and its
controls: ``ranking_controls.py --refine k``.)
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mbdpo.agent import Agent
from mbdpo.analysis.runs import read_csv
from mbdpo.checkpoint import load_checkpoint, save_checkpoint
from mbdpo.config import Config, parse_overrides
from mbdpo.envs import make_env
from mbdpo.errors import ConfigError, exit_on_user_error
from mbdpo.planning import make_planner
from mbdpo.training.evaluate import episode_seed, evaluate, run_episode, summarise
from mbdpo.training.logger import CSVLog
from mbdpo.training.online import OnlineTrainer
from mbdpo.training.stop import RunStopped

from online import COMMON, CORE_MBDPO, HERE, RESULTS

SHARED = {"act_mode": "auto", "score_target": "chain", "score_states": 256, "score_chains": 1000}
# Fresh Monte-Carlo denoised means at 32 of the batch's states, 32 samples each: the defaults, which store no chains.
DENOISER = {"score_target": "denoiser", "score_states": 32, "score_replay_chains": 0.0}
# The same, unanchored, reading the state observation instead of the latent z.
OBSERVATION = {**DENOISER, "score_anchor": "none", "score_state": "observation"}
# The same, also given the policy prior's plan as an input, acting with the 0.99 average of its weights.
OBSERVATION_PRIOR_INPUT_AVERAGE = {**OBSERVATION, "score_anchor": "input", "score_ema": 0.99}
# Sets of passengers (--set), each run in its own directory, passengers-<set>. Passengers with the same
# score_replay_chains share one chain memory, which the first of them fills.
PASSENGER_SETS = {
    "coef": {  # how much return guidance
        "chain": {"score_replay_chains": 0.25, "score_return_coef": 0.0},
        "chain+return0.1": {"score_replay_chains": 0.25, "score_return_coef": 0.1},
        "chain+return1": {"score_replay_chains": 0.25, "score_return_coef": 1.0},
        "chain+return10": {"score_replay_chains": 0.25, "score_return_coef": 10.0},
    },
    "rate": {  # with guidance, how few replay chains, and the policy prior's anchor
        "chain": {"score_replay_chains": 0.25, "score_return_coef": 0.0},
        "chain+return1": {"score_replay_chains": 0.25, "score_return_coef": 1.0},
        "chain0.05+return1": {"score_replay_chains": 0.05, "score_return_coef": 1.0},
        "chain0.05+return1+anchor": {"score_replay_chains": 0.05, "score_return_coef": 1.0, "score_anchor": "prior"},
    },
    "anchor": {  # the policy prior's anchor (score_anchor=prior), alone and with guidance
        "chain": {"score_replay_chains": 0.25, "score_return_coef": 0.0},
        "chain+anchor": {"score_replay_chains": 0.25, "score_anchor": "prior"},
        "chain+anchor+return0.1": {"score_replay_chains": 0.25, "score_anchor": "prior", "score_return_coef": 0.1},
        "chain+anchor+return1": {"score_replay_chains": 0.25, "score_anchor": "prior", "score_return_coef": 1.0},
    },
    "anchor-time": {  # the prior's plan at acting time around which the network learns Monte Carlo's departure
        "chain": {"score_replay_chains": 0.25},
        "chain+anchor": {"score_replay_chains": 0.25, "score_anchor": "prior"},
        "chain+chain-anchor": {"score_replay_chains": 0.25, "score_anchor": "chain"},
        # With fewer chains (what a step's 2x speed-up needs): does the departure from the prior age slower?
        "chain0.05": {"score_replay_chains": 0.05},
        "chain0.05+chain-anchor": {"score_replay_chains": 0.05, "score_anchor": "chain"},
    },
    "chain-rate": {  # the two replay-chain rates alone, to repeat over seeds (--seed) cheaply
        "chain": {"score_replay_chains": 0.25},
        "chain0.05": {"score_replay_chains": 0.05},
    },
    "denoiser-anchor": {  # fresh Monte-Carlo targets (the default) without the prior, around it, or fed it as an input
        "denoiser": {**DENOISER, "score_anchor": "none"},
        "denoiser+anchor": {**DENOISER, "score_anchor": "prior"},
        "denoiser+prior-input": {**DENOISER, "score_anchor": "input"},
    },
    "observation": {  # the network's state input: the moving latent z, or the observation, whose space stays put
        "denoiser": {**DENOISER, "score_anchor": "none"},
        "denoiser+observation": OBSERVATION,
    },
    "observation-anchor": {  # the observation as the state, alone and with the prior's plan as a second input
        "denoiser+observation": OBSERVATION,
        "denoiser+observation+prior-input": {**OBSERVATION, "score_anchor": "input"},
    },
    "average": {  # the observation and the prior's plan, acting with an average of the weights (score_ema)
        "denoiser+observation+prior-input+average0.99": OBSERVATION_PRIOR_INPUT_AVERAGE,
        "denoiser+observation+prior-input+average0.999": {**OBSERVATION_PRIOR_INPUT_AVERAGE, "score_ema": 0.999},
    },
    "learning-rate": {  # the same network averaged at 0.99, at the world model's step size and at 3.3 times it
        "denoiser+observation+prior-input+average0.99": OBSERVATION_PRIOR_INPUT_AVERAGE,
        "denoiser+observation+prior-input+average0.99+lr1e-3": {**OBSERVATION_PRIOR_INPUT_AVERAGE, "score_lr": 1e-3},
    },
}
PASSENGERS_FILE = "passengers.pt"


def passenger(host: Agent, overrides: dict) -> Agent:
    """An agent with its own score network, optimiser and settings, on ``host``'s world model and Q scale."""
    cfg = dataclasses.replace(host.cfg, **{**SHARED, **overrides})
    cfg.validate()
    rider = Agent(cfg, host.device)
    rider.model, rider.q_scale = host.model, host.q_scale
    rider.planner = make_planner(host.model, cfg, rider.acting_score_network)
    return rider


def trained_passenger(host: Agent, overrides: dict, score_state: dict) -> Agent:
    """:func:`passenger` with a saved score network loaded (from ``passengers.pt``), acting with it."""
    rider = passenger(host, overrides)
    rider.load_score_state_dict(score_state)
    rider.set_acting_mode("score")
    return rider


def acting_with_trained_weights(host: Agent, rider: Agent, overrides: dict) -> Agent:
    """A view of the passenger ``rider`` (made with ``overrides``, ``score_ema`` among them) that acts with
    its trained weights instead of their average: the same network, so it trains as the passenger does."""
    view = passenger(host, {**overrides, "score_ema": 0.0})
    view.score_network = view.acting_score_network = rider.score_network
    view.planner = make_planner(host.model, view.cfg, rider.score_network)
    return view


def ways_of_acting(host: Agent, riders: dict[str, Agent], passengers: dict[str, dict]) -> dict[str, Agent]:
    """Each passenger of ``riders`` (made with the overrides ``passengers``) by its name, and each with
    ``score_ema`` also acting with its trained weights, as ``<name>/trained-weights``."""
    ways = {}
    for name, rider in riders.items():
        ways[name] = rider
        if rider.cfg.score_ema:
            ways[f"{name}/trained-weights"] = acting_with_trained_weights(host, rider, passengers[name])
    return ways


class PassengerTrainer(OnlineTrainer):
    """A Monte-Carlo run whose every update also trains the passengers, and whose every evaluation also
    plays the episodes with the policy prior and with each passenger."""

    def __init__(self, cfg: Config, given: set[str], passengers: dict[str, dict]):
        super().__init__(cfg, given=given)
        self.passengers = {name: passenger(self.agent, settings) for name, settings in passengers.items()}
        # One passenger of each replay-chain rate plans that rate's chains, the others of it only read them:
        # the first with score_anchor=chain if any (its memory keeps the prior's plans as well), else the first.
        keeping_chains = {name: rider for name, rider in self.passengers.items()
                          if rider.chains is not None}  # score_target=denoiser keeps none
        names_of_rate: dict[float, list[str]] = {}
        for name, rider in keeping_chains.items():
            names_of_rate.setdefault(rider.cfg.score_replay_chains, []).append(name)
        planner_of_rate = {rate: next((name for name in names if self.passengers[name].chains.anchored), names[0])
                           for rate, names in names_of_rate.items()}
        for name, rider in keeping_chains.items():
            planner = planner_of_rate[rider.cfg.score_replay_chains]
            if name != planner:
                rider.chains = self.passengers[planner].chains
                rider.cfg = dataclasses.replace(rider.cfg, score_replay_chains=0.0)
        self.chain_planners = set(planner_of_rate.values())  # the passengers whose chains are saved
        if self.resumed:
            saved = load_checkpoint(self.run_dir / PASSENGERS_FILE, self.device)
            for name, rider in self.passengers.items():
                rider.load_score_state_dict(saved[name])
                if name in self.chain_planners:
                    rider.chains.load_state_dict(saved[name]["chains"])
        self.acting_ways = ways_of_acting(self.agent, self.passengers, passengers)
        self.returns = CSVLog(self.run_dir / "passengers.csv", self.step if self.resumed else None)
        self.last_summary: dict[str, float] | None = None

    def _update(self) -> dict[str, torch.Tensor]:
        batch = self.buffer.sample(self.cfg.batch_size, self.rng, self.device)
        batch.task = self.agent.task_tensor(self.task_index, self.cfg.batch_size)
        metrics = self.agent.update(batch)
        with torch.no_grad():
            z = self.agent.model.encode(batch.obs[0])
        for name, rider in self.passengers.items():
            metrics.update({f"{name}/{k}": v for k, v in rider.train_score_network(batch, z).items()})
        return metrics

    def _play_evaluation(self, video: Path | None, stopping: Callable[[], bool]) -> list[dict[str, float]] | None:
        episodes = super()._play_evaluation(video, stopping)
        self.last_summary = None if episodes is None else summarise(episodes)
        return episodes

    def _evaluate(self, bar: tqdm, stopping: Callable[[], bool]) -> bool:
        if not super()._evaluate(bar, stopping):
            return False
        row = {"step": self.step, "monte_carlo": self.last_summary["episode_reward"]}
        self.agent.set_acting_mode("prior")
        try:
            row["prior"] = self._episodes_return(self.agent, stopping)
        finally:
            self.agent.set_acting_mode("mc")
        for name, rider in self.acting_ways.items():
            if rider.score_network.trained:
                rider.set_acting_mode("score")
                row[name] = self._episodes_return(rider, stopping)
        if any(value is None for value in row.values()):
            return False  # cut short by a stop: the evaluation stays due
        self.returns.write(row)
        tqdm.write(f"step {self.step:,}: " + ", ".join(f"{key} {value:.1f}" for key, value in row.items()
                                                      if key != "step"))
        return True

    def _episodes_return(self, agent: Agent, stopping: Callable[[], bool]) -> float | None:
        cfg = self.cfg
        results = evaluate(agent, self.eval_env, cfg.eval_episodes, cfg.seed, None, None, stopping)
        return summarise(results)["episode_reward"] if len(results) == cfg.eval_episodes else None

    def save(self) -> None:
        saved = {}
        for name, rider in self.passengers.items():
            saved[name] = rider.score_state_dict()
            if name in self.chain_planners:
                saved[name]["chains"] = rider.chains.state_dict()
        save_checkpoint(self.run_dir / PASSENGERS_FILE, saved)
        super().save()


def run_name(passengers: str, seed: int) -> str:
    """The name of a passenger run (its directory, and its results files after the task): the set, and
    the seed unless it is the core suite's 1."""
    return f"{passengers}-seed{seed}" if seed != COMMON["seed"] else passengers


def run_directory(runs_dir: Path, task: str, passengers: str, seed: int) -> Path:
    """Where a passenger run lives: ``<runs-dir>/<task>/passengers-<run name>``."""
    return runs_dir / task / f"passengers-{run_name(passengers, seed)}"


def train(task: str, steps: int, runs_dir: Path, passengers: str, seed: int) -> None:
    run, run_dir = run_name(passengers, seed), run_directory(runs_dir, task, passengers, seed)
    overrides = {**COMMON, **CORE_MBDPO[task][1], "task": task, "steps": steps, "run_dir": run_dir, "seed": seed}
    given = parse_overrides([f"{k}={v}" for k, v in overrides.items()])
    try:
        PassengerTrainer(Config.from_overrides(given), set(given), PASSENGER_SETS[passengers]).run()
    finally:  # also the evaluations of a run that stopped
        if (run_dir / "passengers.csv").exists():
            RESULTS.mkdir(exist_ok=True)
            shutil.copy(run_dir / "passengers.csv", RESULTS / f"score_passengers_{task}_{run}.csv")


def paired_summary(rows: list[dict], names: list[str]) -> list[dict]:
    """Per way of acting, over the episodes ``rows`` (one return per name each): mean, std over episodes,
    percent of Monte Carlo's mean, the mean paired difference to Monte Carlo with its standard error, and
    the episodes it returned more than Monte Carlo did."""
    monte_carlo = np.array([float(row["monte_carlo"]) for row in rows])
    summary = []
    for name in names:
        returns = np.array([float(row[name]) for row in rows])
        difference = returns - monte_carlo
        summary.append({
            "way": name, "mean": round(float(returns.mean()), 1), "std": round(float(returns.std(ddof=1)), 1),
            "percent_of_mc": round(float(100 * returns.mean() / monte_carlo.mean()), 1),
            "paired_difference": round(float(difference.mean()), 1),
            "standard_error": round(float(difference.std(ddof=1) / np.sqrt(len(rows))), 1),
            "better_than_mc": int((difference > 0).sum()),
        })
    return summary


def final_evaluation(task: str, runs_dir: Path, passengers: str, seed: int, episodes: int,
                     candidates: int = 0) -> None:
    """Play ``episodes`` evaluation episodes of a finished run with every way of acting, paired by seed;
    run again, it goes on after the episodes already written.

    ``candidates`` > 0 replays only the networks, each ranking that many of its plans (``score_candidates``),
    into ``passengers_final_candidates<K>.csv``, and copies the Monte-Carlo and prior returns of the same
    episodes from ``passengers_final.csv``, which must hold them already."""
    run, run_dir = run_name(passengers, seed), run_directory(runs_dir, task, passengers, seed)
    host = Agent.from_checkpoint(run_dir / "checkpoint.pt")
    step = load_checkpoint(run_dir / "checkpoint.pt")["step"]
    saved = load_checkpoint(run_dir / PASSENGERS_FILE, host.device)
    ways = [] if candidates else [("monte_carlo", host, "mc"), ("prior", host, "prior")]
    ranking = {"score_candidates": candidates} if candidates else {}
    settings = {name: {**overrides, **ranking} for name, overrides in PASSENGER_SETS[passengers].items()}
    riders = {name: trained_passenger(host, overrides, saved[name]) for name, overrides in settings.items()}
    networks = ways_of_acting(host, riders, settings)
    ways += [(name, rider, "score") for name, rider in networks.items()]
    if candidates:  # the Monte-Carlo and prior returns of the same episodes, played earlier
        played = [row for row in read_csv(run_dir / "passengers_final.csv") if int(row["step"]) == step]
        if len(played) < episodes:
            raise ConfigError(f"--score-candidates replays episodes paired with {run_dir / 'passengers_final.csv'}, "
                              f"which holds {len(played)}; valid: --final-episodes <= {len(played)}, "
                              "or play them first")
    suffix = f"_candidates{candidates}" if candidates else ""
    env = make_env(task, host.cfg.seed, host.cfg.obs)
    out = run_dir / f"passengers_final{suffix}.csv"
    rows = [row for row in read_csv(out) if int(row["step"]) == step]  # the episodes already played
    log = CSVLog(out, resume_step=None)
    RESULTS.mkdir(exist_ok=True)
    for i in tqdm(range(len(rows), episodes), desc=f"{task} at step {step:,}", unit="episode"):
        row = {"step": step, "episode": i}
        if candidates:
            row |= {name: float(played[i][name]) for name in ("monte_carlo", "prior")}
        for name, agent, mode in ways:
            agent.set_acting_mode(mode)
            row[name] = run_episode(agent, env, episode_seed(host.cfg.seed, "eval", i))["episode_reward"]
        log.write(row)
        rows.append(row)
        shutil.copy(out, RESULTS / f"score_passengers_{task}_{run}_final{suffix}.csv")
        tqdm.write(f"episode {i}: " + ", ".join(f"{name} {float(row[name]):.1f}" for name in row
                                                if name not in ("step", "episode")))
    rows = rows[:episodes]
    if len(rows) > 1:
        print(f"{task} at step {step:,}, {len(rows)} paired episodes:")
        for line in paired_summary(rows, ["monte_carlo", "prior", *networks]):
            print("  " + ", ".join(f"{key} {value}" for key, value in line.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(CORE_MBDPO), default="cartpole-swingup")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--set", choices=sorted(PASSENGER_SETS), default="coef", help="which passengers")
    parser.add_argument("--seed", type=int, default=COMMON["seed"], help="the run's seed")
    parser.add_argument("--runs-dir", default=str(HERE.parent.parent / "bench-runs"))
    parser.add_argument("--final-episodes", type=int, default=0,
                        help="train nothing: play this many evaluation episodes of the finished run")
    parser.add_argument("--score-candidates", type=int, default=0,
                        help="with --final-episodes: replay only the networks, ranking this many plans each")
    args = parser.parse_args()
    if args.final_episodes:
        exit_on_user_error(lambda: final_evaluation(args.task, Path(args.runs_dir), args.set, args.seed,
                                                    args.final_episodes, args.score_candidates), "score_passengers.py")
        return
    try:
        exit_on_user_error(lambda: train(args.task, args.steps, Path(args.runs_dir), args.set, args.seed),
                           "score_passengers.py")
    except RunStopped as stopped:
        print(f"score_passengers.py: {stopped}", file=sys.stderr)
        sys.exit(128 + stopped.signal)


if __name__ == "__main__":
    main()
