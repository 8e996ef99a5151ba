"""MetaWorld's 50 MT50 manipulation tasks as ``mw-<name>`` (ALGORITHM.md section 8).

Each task is the current MetaWorld's v3 version (``Meta-World/MT1``, one task
with a new random goal position at every reset), 100 agent steps with action
repeat 2, observations of 39 numbers, 4 actions in [-1, 1]. ``info["success"]``
is 1 at a step where the task reports success (during either repeated step).

TD-MPC2's public mt80 data set was recorded on the v2 tasks. The v3 tasks
keep the 39-number observation layout (hand, gripper, two objects, goal), so
a model trained on the data set acts in them, but their dynamics and reward
shaping were revised, so returns and success rates are not comparable one to
one with numbers reported on v2.

MetaWorld is an optional suite: ``pip install --no-deps metaworld==3.1.1``.
It declares ``mujoco==3.3.0``, which conflicts with dm-control's pin, but runs
on mujoco 3.16, so it is installed without its dependencies (the others,
gymnasium, numpy, scipy and imageio, are already there).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding

from mbdpo.envs.task_sets import METAWORLD_MT80
from mbdpo.errors import UnknownTaskError

METAWORLD_TASKS: tuple[str, ...] = METAWORLD_MT80
EPISODE_LENGTH = 100
ACTION_REPEAT = 2
INSTALL = "pip install --no-deps metaworld==3.1.1"


def installed() -> bool:
    return importlib.util.find_spec("metaworld") is not None


def env_name(task: str) -> str:
    """``mw-door-open`` -> MetaWorld's ``door-open-v3``."""
    return task.removeprefix("mw-") + "-v3"


class MetaWorldEnv(gymnasium.Env):
    """One MetaWorld v3 task with random goals, 100 agent steps, action repeat 2."""

    metadata = {"render_modes": []}
    episode_length = EPISODE_LENGTH
    action_repeat = ACTION_REPEAT

    def __init__(self, task: str, seed: int):
        if not installed():
            raise UnknownTaskError(f"task {task!r} needs MetaWorld, which is not installed: {INSTALL}")
        importlib.import_module("metaworld")  # registers the Meta-World/ environments with gymnasium
        self.task = task
        self._env = gymnasium.make("Meta-World/MT1", env_name=env_name(task), seed=seed, disable_env_checker=True)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=self._env.observation_space.shape, dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=self._env.action_space.shape, dtype=np.float32)
        self._steps: int | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode with a random goal; ``seed`` fixes the goal and the initial state.

        MetaWorld draws the goal from the task's 50 goal positions (fixed by
        the constructor's seed) before it seeds the reset, so a seeded reset
        seeds that draw first.
        """
        super().reset(seed=seed)
        if seed is not None:
            self._env.unwrapped.np_random, _ = seeding.np_random(seed)
        obs, _ = self._env.reset(seed=seed)
        self._steps = 0
        return np.asarray(obs, dtype=np.float32), {}

    def step(self, action: np.ndarray):
        if self._steps is None:
            raise RuntimeError("no episode is running; call reset() before step()")
        action = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        reward, success = 0.0, 0.0
        for _ in range(self.action_repeat):
            obs, step_reward, _, _, info = self._env.step(action)
            reward += float(step_reward)
            success = max(success, float(info["success"]))
        self._steps += 1
        truncated = self._steps >= self.episode_length
        if truncated:
            self._steps = None
        return np.asarray(obs, dtype=np.float32), reward, False, truncated, {"success": success}

    def close(self) -> None:
        self._env.close()
