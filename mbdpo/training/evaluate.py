"""Evaluation episodes: the agent acts without exploration noise."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gymnasium
import numpy as np

from mbdpo.agent import Agent
from mbdpo.diagnostics import episode_diagnostics
from mbdpo.envs import MANISKILL_TASKS, METAWORLD_TASKS, MYOSUITE_TASKS, make_env
from mbdpo.envs.padding import PaddedEnv
from mbdpo.training.video import write_video

SUCCESS_RATED_TASKS = frozenset(METAWORLD_TASKS + MYOSUITE_TASKS + MANISKILL_TASKS)


EPISODE_STREAMS = {"train": 0, "eval": 1, "collect": 2}


def episode_seed(seed: int, kind: str, index: int) -> int:
    """A reproducible reset seed for episode ``index`` of a ``train``, ``eval`` or ``collect`` stream."""
    return int(np.random.SeedSequence([seed, EPISODE_STREAMS[kind], index]).generate_state(1)[0])


@dataclass
class Episode:
    """What one episode produced: ``observations [T+1, D]``, ``actions [T, A]``, ``rewards [T]``,
    ``terminals [T]`` and whether the task reported success at any step."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    success: float


def play_episode(
    agent: Agent, env: gymnasium.Env, seed: int, task: int | None = None, explore: bool = False,
    frames: list[np.ndarray] | None = None,
) -> Episode:
    """One episode of the agent acting (as task index ``task`` if multi-task), without exploration noise
    unless ``explore``; appends the rendered frames (T+1, the first after the reset) to ``frames`` when given."""
    obs, _ = env.reset(seed=seed)
    if frames is not None:
        frames.append(env.render())
    agent.reset()
    observations, actions, rewards, terminals = [obs], [], [], []
    success, done = 0.0, False
    while not done:
        action = agent.act(obs, explore=explore, task=task)
        obs, reward, terminated, truncated, info = env.step(action)
        if frames is not None:
            frames.append(env.render())
        observations.append(obs)
        actions.append(action)
        rewards.append(float(reward))
        terminals.append(float(terminated))
        success = max(success, float(info.get("success", 0.0)))
        done = terminated or truncated
    return Episode(np.stack(observations), np.stack(actions), np.array(rewards), np.array(terminals), success)


def run_episode(
    agent: Agent, env: gymnasium.Env, seed: int, task: int | None = None, video: Path | None = None
) -> dict[str, float]:
    """One evaluation episode; returns its reward, success, length and the diagnostics of its actions.

    With ``video``, its frames are written there as an MP4.
    """
    frames: list[np.ndarray] | None = [] if video else None
    episode = play_episode(agent, env, seed, task, frames=frames)
    if video:
        write_video(video, frames)
    diagnostics = episode_diagnostics(agent.model, episode.observations, episode.actions, episode.rewards,
                                      episode.terminals, task)
    return {"episode_reward": float(episode.rewards.sum()), "episode_success": episode.success,
            "episode_length": len(episode.rewards), **diagnostics}


def never() -> bool:
    return False


def evaluate(
    agent: Agent, env: gymnasium.Env, episodes: int, seed: int, task: int | None = None, video: Path | None = None,
    stopping: Callable[[], bool] = never,
) -> list[dict[str, float]]:
    """Run ``episodes`` evaluation episodes with reproducible initial states; with ``video``, the first
    one is also written there as an MP4. Before each episode ``stopping()`` is asked: once it is true, the
    episodes played so far are returned (fewer than ``episodes``)."""
    results = []
    for i in range(episodes):
        if stopping():
            break
        results.append(run_episode(agent, env, episode_seed(seed, "eval", i), task, video if i == 0 else None))
    return results


def summarise(results: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each field over episodes, plus the std of the reward."""
    summary = {key: float(np.mean([r[key] for r in results])) for key in results[0]}
    summary["episode_reward_std"] = float(np.std([r["episode_reward"] for r in results]))
    return summary


def episode_rewards_text(results: list[dict[str, float]]) -> str:
    """Each episode's return, in episode order, space-separated. Runs of one checkpoint with the same seed play
    the same initial states, so two acting modes can be compared episode by episode (paired)."""
    return " ".join(f"{r['episode_reward']:.3f}" for r in results)


def evaluate_tasks(agent: Agent, tasks: list[int], episodes: int, seed: int) -> list[dict[str, float | str]]:
    """Evaluate a multi-task agent on each task index of ``tasks``; one summary row per task.

    Each task runs in its own environment, seen through the model's padded
    observation and action spaces.
    """
    cfg, rows = agent.cfg, []
    for task in tasks:
        env = PaddedEnv(make_env(cfg.tasks[task], seed), cfg.obs_dim, cfg.action_dim)
        rows.append({"task": cfg.tasks[task], **summarise(evaluate(agent, env, episodes, seed, task))})
        env.close()
    return rows


def normalised_score(rows: list[dict[str, float | str]]) -> float:
    """The multi-task score: DMControl return / 10, and success x 100 for the suites rated by success
    (MetaWorld, MyoSuite, ManiSkill), averaged over tasks."""
    scores = [100 * float(row["episode_success"]) if str(row["task"]) in SUCCESS_RATED_TASKS
              else float(row["episode_reward"]) / 10 for row in rows]
    return float(np.mean(scores))
