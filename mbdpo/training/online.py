"""Online training from scratch (ALGORITHM.md section 7).

The loop: random actions for ``seed_steps`` steps, then a burst of
``seed_steps`` updates, then one update per environment step. Evaluation and
checkpointing happen at the first episode boundary at or after each multiple
of ``eval_freq``, and once more at the end, so a resumed run always starts
with a fresh episode. Ctrl-C or SIGTERM asks the run to stop
(:mod:`mbdpo.training.stop`): it finishes the episode (during an evaluation:
the evaluation episode, and leaves the evaluation due), checkpoints and stops.
A stop during the burst ends the burst at the current update; the updates
left are counted in the checkpoint, and the resumed run does them before its
first step's own update, so that a stopped run makes as many updates as one
that never stopped.

Resuming: running the same command again continues a run whose checkpoint is
in the run directory (with ``run_dir=`` given, or the newest run of the same
task, planner and seed with the same configuration). The replay buffer is
saved next to the checkpoint (``save_buffer=true``). Without it, the rule is:
the resumed agent first refills the buffer by acting for ``seed_steps`` steps
with its own planner, without updates, then training goes on.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mbdpo.agent import Agent
from mbdpo.checkpoint import save_checkpoint
from mbdpo.config import Config, torch_device
from mbdpo.data.buffer import ReplayBuffer
from mbdpo.diagnostics import ExponentialAverage, episode_diagnostics
from mbdpo.envs import make_env
from mbdpo.envs.padding import PaddedEnv
from mbdpo.training.evaluate import episode_seed, evaluate, summarise
from mbdpo.training.logger import RunLogger
from mbdpo.training.run_dir import (
    CHECKPOINT, choose_run_dir, keys_set, kept_from_checkpoint, peak_rss_mib, random_state, restore_random_state,
    resume_point, seed_everything,
)
from mbdpo.training.stop import RunStopped, StopRequest
from mbdpo.training.video import require_video_writer

BUFFER = "buffer.npz"


def next_multiple(step: int, period: int) -> int:
    """The first multiple of ``period`` after ``step``: when the next evaluation or score check is due."""
    return (step // period + 1) * period


def network_within_gap(
    network_returns: list[float], monte_carlo_returns: list[float], gap: float, confidence: float
) -> bool:
    """``act_mode=auto``'s switch rule, on evaluation episodes paired by seed: the mean difference
    d = J_score - J_mc, less ``confidence`` standard errors of it, loses at most the fraction ``gap`` of the
    Monte-Carlo mean, mean(d) - confidence SE(d) >= -gap |mean(J_mc)| (so also for negative returns).
    A few episodes of a noisy task then prove little: the network acts once it is within the gap for sure
    enough, not on a lucky tie. One episode (no spread to measure) or ``confidence`` 0: the means alone."""
    difference = np.asarray(network_returns) - np.asarray(monte_carlo_returns)
    error = difference.std(ddof=1) / np.sqrt(len(difference)) if len(difference) > 1 else 0.0
    return difference.mean() - confidence * error >= -gap * abs(np.mean(monte_carlo_returns))


def episode_returns(episodes: list[dict[str, float]]) -> list[float]:
    """The return of each of the evaluation episodes ``episodes`` (from :func:`evaluate`)."""
    return [float(episode["episode_reward"]) for episode in episodes]


def saved_monte_carlo_returns(checkpoint: dict) -> list[float] | None:
    """The episodes' returns of the last Monte-Carlo evaluation a checkpoint saved for ``act_mode=auto``
    (checkpoints from before the paired rule saved their mean, which stands for them; older ones nothing)."""
    if "monte_carlo_eval_returns" in checkpoint:
        return checkpoint["monte_carlo_eval_returns"]
    mean = checkpoint.get("monte_carlo_eval_return")
    return None if mean is None else [mean]


def burst_left(checkpoint: dict, seed_steps: int) -> int:
    """The seed-phase burst's updates a checkpoint left undone (checkpoints from before the count have a
    flag instead: the whole burst, or none)."""
    if "burst_left" in checkpoint:
        return checkpoint["burst_left"]
    return seed_steps if checkpoint["burst_pending"] else 0


def buffer_rows(cfg: Config) -> int:
    """Rows of the replay buffer: ``buffer_size``, or fewer when the whole run fits in fewer.

    A run stores a row per step plus an initial row per episode (at most one
    episode per step), so ``2 steps + 1`` rows always suffice. Image runs
    need this: a million rows of stacked frames would be 37 GB.
    """
    return min(cfg.buffer_size, 2 * cfg.steps + 1)


class OnlineTrainer:
    """Trains one agent on one task; see the module docstring for the loop.

    Fine-tuning (``pretrained`` gives the state a new agent starts from, adapted
    to it, and ``cfg`` is already resolved by :mod:`mbdpo.training.finetune`): the agent acts
    as task ``cfg.task`` of its task set in padded spaces, from the first step
    on, with one update per step once an episode is stored (no random seed
    phase and no burst).
    """

    def __init__(self, cfg: Config, pretrained: Callable[[Agent], dict] | None = None, given: set[str] | None = None):
        """``given``: the keys the command set (default: those of ``cfg`` away from their defaults); a
        resumed run takes the others from its checkpoint (:func:`mbdpo.training.run_dir.resume_point`)."""
        self.device = torch_device(cfg.device)
        given = keys_set(cfg) if given is None else given
        self.run_dir = choose_run_dir(cfg, given)
        resumed_cfg, checkpoint = resume_point(self.run_dir, cfg, given, self.device)
        self.kept_note = kept_from_checkpoint(resumed_cfg, cfg) if checkpoint else ""
        cfg = resumed_cfg
        self.env, self.eval_env = make_env(cfg.task, cfg.seed, cfg.obs), make_env(cfg.task, cfg.seed, cfg.obs)
        if cfg.multitask:
            self.task_index = cfg.tasks.index(cfg.task)
            self.env, self.eval_env = (PaddedEnv(env, cfg.obs_dim, cfg.action_dim) for env in (self.env, self.eval_env))
        else:
            self.task_index = None
            obs_dim, action_dim = self.env.observation_space.shape[0], self.env.action_space.shape[0]
            if self.env.can_terminate:  # e.g. ManiSkill and gym: tasks whose episodes can end early
                cfg = dataclasses.replace(cfg, episodic=True)
            cfg = cfg.resolve(obs_dim, action_dim, self.env.episode_length)
        self.cfg = cfg
        if cfg.save_video:
            require_video_writer()

        seed_everything(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.agent = Agent(cfg, self.device)
        self.buffer = ReplayBuffer(buffer_rows(cfg), cfg.obs_shape, cfg.action_dim, cfg.horizon,
                                   obs_dtype=np.uint8 if cfg.obs == "rgb" else np.float32)
        self.step, self.episode, self.elapsed_before = 0, 0, 0.0
        self.random_steps = 0 if pretrained else cfg.seed_steps
        self.burst_left = 0 if pretrained else cfg.seed_steps  # updates of the seed-phase burst not yet done
        self.updates_from = self.random_steps
        self.next_score_check, self.next_eval = 0, 0
        # act_mode=auto: the episodes' returns of the last evaluation acting by Monte Carlo
        self.monte_carlo_eval_returns: list[float] | None = None
        self.diagnostics = ExponentialAverage()
        self.replay_left_on_disk = False  # a resumed run that trains no further does not load its replay
        self.resumed = checkpoint is not None
        if self.resumed:
            self._restore(checkpoint)
        elif pretrained:
            self.agent.load_state_dict(pretrained(self.agent))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(self.run_dir / "config.json")
        self.logger = RunLogger(self.run_dir, cfg, self.step if self.resumed else None)
        self._print_header()

    # --- set-up ---------------------------------------------------------------
    def _restore(self, checkpoint: dict) -> None:
        self.agent.load_state_dict(checkpoint["agent"])
        self.step, self.episode = checkpoint["step"], checkpoint["episode"]
        self.elapsed_before = checkpoint["elapsed"]
        self.burst_left = burst_left(checkpoint, self.cfg.seed_steps)
        self.next_score_check = next_multiple(self.step, self.cfg.score_check_freq)
        # Due at once when a stop interrupted it (checkpoints from before stopping have no flag: not due).
        due = checkpoint.get("eval_due", False)
        self.next_eval = self.step if due else next_multiple(self.step, self.cfg.eval_freq)
        self.diagnostics.values = checkpoint.get("diagnostics_ema", {})  # absent in checkpoints from before the diagnostics
        self.monte_carlo_eval_returns = saved_monte_carlo_returns(checkpoint)
        restore_random_state(checkpoint["rng"], self.rng, self.device)
        if self.step >= self.cfg.steps:
            # It trains no further (at most it plays an evaluation left due): its replay, which may not fit a
            # buffer sized for fewer steps, stays on disk as it is, and save() keeps that file.
            self.replay_left_on_disk = True
            return
        buffer_file = self.run_dir / BUFFER
        if buffer_file.exists():
            self.buffer.load(buffer_file)
            self.updates_from = self.random_steps
        else:
            self.updates_from = self.step + self.cfg.seed_steps

    def _print_header(self) -> None:
        cfg = self.cfg
        counts = self.agent.model.parameter_counts()
        state = f"resuming at step {self.step:,}" if self.resumed else "training"
        print(f"mbdpo: {state} {cfg.task} with planner={cfg.planner} "
              f"(preset {cfg.planner_preset}) on {self.device}, run dir {self.run_dir}")
        if self.kept_note:
            print(self.kept_note)
        print("parameters: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
        if cfg.act_mode != "mc":
            network = "distilled policy" if cfg.score_sampler == "policy" else "score network"
            print(f"{network}: {self.agent.score_network.parameter_count():,} parameters, act_mode={cfg.act_mode}, "
                  f"acting with {self.agent.acting_mode}")
        print(f"replay buffer: {self.buffer.capacity:,} rows, up to {self.buffer.nbytes / 2**20:.1f} MiB "
              f"(committed as it fills)")

    # --- the loop ---------------------------------------------------------------
    def run(self) -> Path:
        cfg = self.cfg
        self.start_time = time.time()
        if self.step >= cfg.steps and self.step < self.next_eval:
            print(f"mbdpo: {self.run_dir} is already complete at step {self.step:,} (steps={cfg.steps:,})")
            self.logger.close()
            return self.run_dir
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not cfg.progress, unit="step", dynamic_ncols=True)
        try:
            with StopRequest("episode (a seed-phase update burst ends at the current update)") as stop:
                while True:
                    # an evaluation at each multiple of eval_freq and at the end; cut short by a stop, it stays due
                    eval_due = self.step >= min(self.next_eval, cfg.steps)
                    if eval_due:
                        evaluated = self._evaluate(bar, stopping=stop.requested)
                        self.next_eval = next_multiple(self.step, cfg.eval_freq) if evaluated else self.step
                    if eval_due or stop.requested():
                        self.save()
                    if stop.requested():
                        raise RunStopped(self.run_dir, self.step, stop.signal)
                    if self.step >= cfg.steps:
                        break
                    steps_before = self.step
                    self._train_episode(stopping=stop.requested)
                    bar.update(self.step - steps_before)
        finally:
            bar.close()
            self.logger.close()
        return self.run_dir

    def _train_episode(self, stopping: Callable[[], bool]) -> None:
        cfg, agent = self.cfg, self.agent
        obs, _ = self.env.reset(seed=episode_seed(cfg.seed, "train", self.episode))
        agent.reset()
        observations, actions, rewards, terminals = [obs], [], [], []
        episode_start, done = time.time(), False
        planner_acted = self.step >= self.random_steps
        metric_sums: dict[str, torch.Tensor] = {}
        updates = 0
        act_seconds, update_seconds = 0.0, 0.0
        while not done:
            tick = time.perf_counter()
            if self.step < self.random_steps:
                action = self.rng.uniform(-1, 1, cfg.action_dim).astype(np.float32)
            else:
                action = agent.act(obs, explore=True, task=self.task_index)
            act_seconds += time.perf_counter() - tick
            obs, reward, terminated, truncated, _ = self.env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(reward)
            terminals.append(float(terminated))
            self.step += 1
            done = terminated or truncated
            if done:  # store first, so that a seed phase ending here has data for its burst
                episode = (np.stack(observations), np.stack(actions), np.array(rewards), np.array(terminals))
                self._check_score_network(episode[0])
                self.buffer.add_episode(*episode)
            tick = time.perf_counter()
            for metrics in self._updates(stopping):
                # Running sums, not a list: thousands of tiny tensors kept alive fragment the heap.
                metric_sums = {k: metric_sums.get(k, 0.0) + v for k, v in metrics.items()}
                updates += 1
            update_seconds += time.perf_counter() - tick
        self.episode += 1
        length = len(rewards)
        row = {
            "step": self.step, "episode": self.episode, "episode_reward": float(np.sum(rewards)),
            "episode_length": length, "elapsed": self.elapsed(),
            "steps_per_second": length / (time.time() - episode_start),
            "ms_per_action": 1000 * act_seconds / length,
            "ms_per_update": 1000 * update_seconds / updates if updates else float("nan"),
            "updates": updates, "peak_rss_mib": peak_rss_mib(),
            "acting_with_score_network": float(agent.acting_mode == "score"),
        }
        row.update({k: float(total) / updates for k, total in metric_sums.items()})
        if planner_acted:
            diagnostics = episode_diagnostics(agent.model, *episode, task=self.task_index)
            row.update({**diagnostics, **self.diagnostics.update(diagnostics)})
        self.logger.log("train", row)

    def _check_score_network(self, observations: np.ndarray) -> None:
        """Every ``score_check_freq`` steps, measure the score network on the episode just played.

        Its states are held out: the episode is not yet in the replay buffer.
        A diagnostic (per-step score errors, imagined returns): whether
        ``act_mode=auto`` acts with the network is decided at evaluations, by
        the return it gets in the environment (:meth:`_evaluate_network`).
        The distilled policy (``score_sampler=policy``) has no denoiser to check.
        """
        cfg, agent = self.cfg, self.agent
        if (cfg.act_mode == "mc" or cfg.score_sampler == "policy" or not agent.score_network.trained
                or self.step < self.next_score_check):
            return
        self.next_score_check = next_multiple(self.step, cfg.score_check_freq)
        states = self.rng.choice(len(observations), min(cfg.score_check_states, len(observations)), replace=False)
        tick = time.perf_counter()
        check = agent.check_score_network(observations[states], self.task_index)
        row = {
            "step": self.step, "return_gap": check.return_gap, "network_return": check.network_return,
            "monte_carlo_return": check.monte_carlo_return, "random_return": check.random_return,
            "error_ratio": check.ratio, "seconds": time.perf_counter() - tick,
            "acting_with_score_network": float(agent.acting_mode == "score"),
        }
        row.update({f"network_error_tau{tau}": float(e) for tau, e in enumerate(check.network_error)})
        row.update({f"monte_carlo_error_tau{tau}": float(e) for tau, e in enumerate(check.monte_carlo_error)})
        self.logger.log("score", row)

    def _updates(self, stopping: Callable[[], bool]) -> Iterator[dict[str, torch.Tensor]]:
        """The updates due after one environment step, yielding their metrics: none in the seed phase; the
        burst at its end, in place of that step's update; one per step after it, after what a stop left of
        the burst. ``stopping()`` ends the burst at the current update (the rest stays in ``burst_left``)."""
        if self.step < self.updates_from or self.buffer.num_transitions == 0:
            return
        own_update = self.step > self.updates_from or self.burst_left == 0
        while self.burst_left > 0 and not stopping():
            yield self._update()
            self.burst_left -= 1
        if own_update:
            yield self._update()

    def _update(self) -> dict[str, torch.Tensor]:
        batch = self.buffer.sample(self.cfg.batch_size, self.rng, self.device)
        batch.task = self.agent.task_tensor(self.task_index, self.cfg.batch_size)
        return self.agent.update(batch)

    def _evaluate(self, bar: tqdm, stopping: Callable[[], bool]) -> bool:
        """Evaluate and log; False (nothing logged) if ``stopping()`` cut the evaluation short."""
        cfg = self.cfg
        bar.set_description(f"evaluating ({cfg.eval_episodes} episodes)")
        video = self.run_dir / "videos" / f"{self.step}.mp4" if cfg.save_video else None
        episodes = self._play_evaluation(video, stopping)
        bar.set_description("training")
        if episodes is None:
            return False
        summary = summarise(episodes)
        row = {"step": self.step, **summary, "elapsed": self.elapsed()}
        if cfg.act_mode == "auto" and self.agent.score_network.trained:
            network = self._evaluate_network(episodes, stopping)
            if network is None:
                return False
            row.update(network)
        self.logger.log("eval", row)
        bar.set_postfix(eval_return=f"{summary['episode_reward']:.1f}")
        return True

    def _play_evaluation(self, video: Path | None, stopping: Callable[[], bool]) -> list[dict[str, float]] | None:
        """The evaluation episodes (the run's evaluation seeds) in the agent's acting mode, each episode's
        results; None if ``stopping()`` cut them short."""
        cfg = self.cfg
        episodes = evaluate(self.agent, self.eval_env, cfg.eval_episodes, cfg.seed, self.task_index, video, stopping)
        return episodes if len(episodes) == cfg.eval_episodes else None

    def _evaluate_network(
        self, episodes: list[dict[str, float]], stopping: Callable[[], bool]
    ) -> dict[str, float] | None:
        """``act_mode=auto``: the score network's evaluation return, and the switch it decides.

        Acting by Monte Carlo, the evaluation ``episodes`` just played are
        played again (same seeds) with the network, which is cheap (no
        rollouts); acting with the network, they were the network's, and are
        held against the last Monte-Carlo evaluation's. The agent acts with
        the network while :func:`network_within_gap` holds, by Monte Carlo
        otherwise. With ``score_candidates`` K > 1, the replay by the network
        is played twice, with its one plan and with the best of K, and the
        network acts from then on as the better did (the one plan on a tie:
        ranking helps where the model's J ranks plans well and hurts where it
        does not, benchmarks/NOTES.md). Returns the eval.csv columns, or None
        if ``stopping()`` cut the episodes short.
        """
        cfg, agent = self.cfg, self.agent
        ranked = {}
        if agent.acting_mode == "mc":
            self.monte_carlo_eval_returns = episode_returns(episodes)
            network = self._play_network(1, stopping)
            if network is None:
                return None
            if cfg.score_candidates > 1:
                best_of = self._play_network(cfg.score_candidates, stopping)
                if best_of is None:
                    return None
                one_plan_return, ranked_return = (float(np.mean(episode_returns(e))) for e in (network, best_of))
                ranked = {"score_network_one_plan_reward": one_plan_return,
                          "score_network_ranked_reward": ranked_return}
                rank = ranked_return > one_plan_return
                agent.planner.score_candidates = cfg.score_candidates if rank else 1
                network = best_of if rank else network
        else:
            network = episodes
        before = agent.acting_mode
        if self.monte_carlo_eval_returns is not None:
            within = network_within_gap(episode_returns(network), self.monte_carlo_eval_returns,
                                        cfg.score_switch_gap, cfg.score_switch_confidence)
            agent.set_acting_mode("score" if within else "mc")
        summary = summarise(network)
        if agent.acting_mode != before:
            tqdm.write(f"mbdpo: step {self.step:,}: acting with {agent.acting_mode} from now on (evaluation return "
                       f"{summary['episode_reward']:.1f} with the score network, "
                       f"{np.mean(self.monte_carlo_eval_returns):.1f} by Monte Carlo; the network acts while it "
                       f"loses at most {cfg.score_switch_gap:.1%}, less {cfg.score_switch_confidence:g} standard "
                       "errors of the paired difference)")
        return {"score_network_reward": summary["episode_reward"],
                "score_network_reward_std": summary["episode_reward_std"],
                "score_network_success": summary["episode_success"],
                **ranked,
                **({"score_network_candidates": agent.planner.score_candidates} if cfg.score_candidates > 1 else {}),
                "acting_with_score_network": float(agent.acting_mode == "score")}

    def _play_network(self, candidates: int, stopping: Callable[[], bool]) -> list[dict[str, float]] | None:
        """The evaluation episodes played with the score network ranking ``candidates`` of its plans per
        action; the agent's acting mode and ranking are left as they were."""
        agent = self.agent
        kept_mode, kept_candidates = agent.acting_mode, agent.planner.score_candidates
        agent.planner.score_candidates = candidates
        agent.set_acting_mode("score")
        try:
            return self._play_evaluation(None, stopping)
        finally:
            agent.set_acting_mode(kept_mode)
            agent.planner.score_candidates = kept_candidates

    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.start_time

    def save(self) -> None:
        """Checkpoint (and replay buffer) for resuming, written atomically."""
        if self.cfg.save_buffer and not self.replay_left_on_disk:
            self.buffer.save(self.run_dir / BUFFER)
        save_checkpoint(self.run_dir / CHECKPOINT, {
            "config": self.cfg.to_dict(),
            "agent": self.agent.state_dict(),
            "step": self.step,
            "episode": self.episode,
            "elapsed": self.elapsed(),
            "burst_left": self.burst_left,
            "eval_due": self.step >= self.next_eval,
            "monte_carlo_eval_returns": self.monte_carlo_eval_returns,
            "diagnostics_ema": self.diagnostics.values,
            "rng": random_state(self.rng, self.device),
        })
