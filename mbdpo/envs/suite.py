"""The part every wrapped simulator suite shares: fixed-length episodes, action repeat and success.

MetaWorld, MyoSuite and ManiSkill each ship Gymnasium environments with their
own episode lengths and termination rules. :class:`SuiteEnv` puts one of them
behind mbdpo's task conventions (ALGORITHM.md section 8): actions clipped to
[-1, 1], each action repeated :attr:`action_repeat` times with the rewards
summed, an episode truncated after :attr:`episode_length` agent steps, and
``info["success"]`` set to 1.0 at a step where the suite reports success
during any of its repeated simulator steps. A suite whose episodes can end
early (:attr:`can_terminate`) passes ``terminated`` on; the others never
terminate.
"""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from mbdpo.envs.dmcontrol import use_headless_rendering
from mbdpo.errors import require_installed


def import_suite(task: str, module: str, install: str) -> None:
    """Import a suite's package (which registers its environments with Gymnasium).

    Raises:
        MissingSuiteError: naming ``install``, if the package is not installed.
    """
    use_headless_rendering()  # before the suite imports mujoco
    require_installed(module.partition(".")[0], f"task {task!r}", install)
    importlib.import_module(module)


class SuiteEnv(gymnasium.Env):
    """A suite's environment ``env`` seen through mbdpo's task conventions (see the module docstring).

    The first reset without a seed uses the constructor's ``seed`` (unless
    an earlier reset was seeded); later unseeded resets continue the stream of
    the last seed.

    Subclasses set the class attributes, import the suite and build its
    environment in :meth:`make_suite_env`, and may override :meth:`_reset_suite`.
    """

    metadata = {"render_modes": ["rgb_array"]}
    episode_length: int
    action_repeat: int
    can_terminate: bool
    success_key: str
    """The key of the suite's ``info`` dict that says whether the task is solved."""
    module: str
    """The suite's Python package, which says whether it is installed."""

    def __init__(self, task: str, seed: int):
        env = self.make_suite_env(task, seed)
        self.task = task
        self._seed: int | None = seed
        self._env = env
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=env.observation_space.shape, dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=env.action_space.shape, dtype=np.float32)
        self._steps: int | None = None

    def make_suite_env(self, task: str, seed: int) -> gymnasium.Env:
        """The suite's own environment of ``task`` (importing the suite with :func:`import_suite`)."""
        raise NotImplementedError

    def _reset_suite(self, seed: int | None) -> np.ndarray:
        """Reset the suite's environment and return its first observation."""
        obs, _ = self._env.reset(seed=seed)
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode; the same ``seed`` gives the same first observation."""
        constructor_seed, self._seed = self._seed, None  # it starts the stream of episodes, if nothing else does
        seed = constructor_seed if seed is None else seed
        super().reset(seed=seed)
        obs = self._reset_suite(seed)
        self._steps = 0
        return np.asarray(obs, dtype=np.float32), {}

    def step(self, action: np.ndarray):
        if self._steps is None:
            raise RuntimeError("no episode is running; call reset() before step()")
        action = np.clip(np.asarray(action, dtype=np.float32), -1.0, 1.0)
        reward, success, terminated = 0.0, 0.0, False
        for _ in range(self.action_repeat):
            obs, step_reward, suite_terminated, _, info = self._env.step(action)
            reward += float(step_reward)
            success = max(success, float(info[self.success_key]))
            terminated = self.can_terminate and bool(suite_terminated)
            if terminated:
                break
        self._steps += 1
        truncated = not terminated and self._steps >= self.episode_length
        if terminated or truncated:
            self._steps = None
        return np.asarray(obs, dtype=np.float32), reward, terminated, truncated, {"success": success}

    def render(self) -> np.ndarray:
        """The current frame as an RGB array (height, width, 3) of ``uint8``."""
        return np.asarray(self._env.render(), dtype=np.uint8)

    def close(self) -> None:
        self._env.close()
