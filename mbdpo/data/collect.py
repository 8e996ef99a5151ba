"""``mbdpo collect``: play episodes and write them as a data set in TD-MPC2's public format.

Episodes come from a trained agent (``checkpoint=PATH``) or from uniformly
random actions (``policy=random``). Observations and actions are zero-padded
to the task set's dimensions and the task index is the task's position in the
set, so the files mix freely with the public mt30/mt80 chunks and train with
``mbdpo train task=mt30 data_dir=OUT``. New files are numbered after the
chunks already in ``out``, so collecting task after task into one folder
builds a multi-task data set.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from mbdpo.envs import make_env
from mbdpo.envs.task_sets import padded_dims, task_set, task_shape
from mbdpo.errors import ConfigError, DatasetError

if TYPE_CHECKING:  # torch-dependent modules are imported when collecting, so that the CLI starts fast
    from mbdpo.training.evaluate import Episode


@dataclass
class CollectOptions:
    """Settings of ``mbdpo collect``."""

    task: str = ""
    policy: Literal["agent", "random"] = "agent"  # agent: the checkpoint's planner; random: uniform actions
    checkpoint: str = ""
    episodes: int = 10
    out: str = ""
    task_set: Literal["mt30", "mt80"] = "mt30"  # the padding and task indices of the files
    explore: bool = False  # add the planner's exploration noise, as in a training run
    chunk_episodes: int = 1000  # episodes per chunk file
    seed: int = 1
    device: str = "auto"


class RandomPolicy:
    """Uniform random actions in [-1, 1], with the interface of :class:`mbdpo.agent.Agent` that episodes use."""

    def __init__(self, action_dim: int, seed: int):
        self.action_dim = action_dim
        self.rng = np.random.default_rng(seed)

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray, explore: bool = False, task: int | None = None) -> np.ndarray:
        return self.rng.uniform(-1, 1, self.action_dim).astype(np.float32)


def next_chunk_index(out: Path) -> int:
    """One past the highest ``chunk_<n>.pt`` in ``out`` (0 for an empty folder)."""
    numbers = [int(m.group(1)) for p in out.glob("chunk_*.pt") if (m := re.fullmatch(r"chunk_(\d+)\.pt", p.name))]
    return max(numbers, default=-1) + 1


def padded_arrays(episodes: list[Episode], obs_dim: int, action_dim: int, task: int) -> dict[str, np.ndarray]:
    """Episodes as public-format arrays ``[E, T+1, ...]``: padded, row 0 NaN action and reward."""
    count, rows = len(episodes), len(episodes[0].observations)
    if any(len(episode.observations) != rows for episode in episodes):
        raise DatasetError("episodes of different lengths cannot share a chunk (the format has one T per file)")
    obs = np.zeros((count, rows, obs_dim), np.float32)
    action = np.zeros((count, rows, action_dim), np.float32)
    reward = np.zeros((count, rows), np.float32)
    terminated = np.zeros((count, rows), np.float32)
    for e, episode in enumerate(episodes):
        obs[e, :, : episode.observations.shape[1]] = episode.observations
        action[e, 1:, : episode.actions.shape[1]] = episode.actions
        reward[e, 1:] = episode.rewards
        terminated[e, 1:] = episode.terminals
    action[:, 0], reward[:, 0] = np.nan, np.nan
    return {"obs": obs, "action": action, "reward": reward, "task": np.full((count, rows), task, np.int64),
            "terminated": terminated}


def collect(options: CollectOptions) -> list[Path]:
    """Play ``options.episodes`` episodes and write them; returns the chunk files written."""
    from mbdpo.agent import Agent
    from mbdpo.data.offline import write_chunk
    from mbdpo.envs.padding import PaddedEnv
    from mbdpo.training.evaluate import episode_seed, play_episode
    from mbdpo.training.run_dir import seed_everything

    tasks = task_set(options.task_set)
    if options.task not in tasks:
        raise ConfigError(f"task={options.task!r} is not in {options.task_set}; collect writes task indices of that set")
    if not options.out:
        raise ConfigError("mbdpo collect needs out=DIR")
    if options.episodes < 1:
        raise ConfigError(f"episodes={options.episodes} must be positive")
    obs_dim, action_dim = padded_dims(tasks)
    index = tasks.index(options.task)
    env = make_env(options.task, options.seed)
    if options.policy == "random":
        actor, task_arg = RandomPolicy(env.action_space.shape[0], options.seed), None
    else:
        if not options.checkpoint:
            raise ConfigError("mbdpo collect needs checkpoint=PATH, or policy=random")
        actor = Agent.from_checkpoint(options.checkpoint, options.device)
        seed_everything(options.seed)  # the planner's samples: the same command writes the same episodes
        task_arg = None
        if actor.cfg.multitask:
            if options.task not in actor.cfg.tasks:
                raise ConfigError(f"task={options.task!r} is not one of the checkpoint's tasks")
            task_arg = actor.cfg.tasks.index(options.task)
            env = PaddedEnv(env, actor.cfg.obs_dim, actor.cfg.action_dim)
        elif actor.cfg.task != options.task:
            raise ConfigError(f"the checkpoint was trained on {actor.cfg.task}, not task={options.task}")
        if actor.cfg.obs != "state":
            raise ConfigError(f"the checkpoint acts from obs={actor.cfg.obs}; the data-set format holds states")

    out, written = Path(options.out), []
    first = next_chunk_index(out) if out.exists() else 0
    episodes: list[Episode] = []
    own = task_shape(options.task)
    for number in range(options.episodes):
        episode = play_episode(actor, env, episode_seed(options.seed, "collect", number), task_arg,
                               explore=options.explore)
        # A multi-task actor plays in its own padded spaces (mt80's are wider than mt30's): keep the task's values.
        episodes.append(dataclasses.replace(episode, observations=episode.observations[:, : own.obs_dim],
                                            actions=episode.actions[:, : own.action_dim]))
        if len(episodes) == options.chunk_episodes or number == options.episodes - 1:
            path = out / f"chunk_{first + len(written)}.pt"
            write_chunk(path, **padded_arrays(episodes, obs_dim, action_dim, index))
            written.append(path)
            episodes = []
    env.close()
    return written
