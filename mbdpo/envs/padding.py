"""An environment seen through a multi-task model's padded observation and action spaces."""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces


class PaddedEnv(gymnasium.Wrapper):
    """Zero-pads observations to ``obs_dim`` and uses the first ``action_dim`` entries of each action.

    A multi-task model acts in the padded spaces of its task set (ALGORITHM.md
    section 1); the wrapped task sees only its own action dimensions.
    """

    def __init__(self, env: gymnasium.Env, obs_dim: int, action_dim: int):
        super().__init__(env)
        self.task_obs_dim = env.observation_space.shape[0]
        self.task_action_dim = env.action_space.shape[0]
        if self.task_obs_dim > obs_dim or self.task_action_dim > action_dim:
            raise ValueError(f"task has {self.task_obs_dim} observations and {self.task_action_dim} actions; "
                             f"the model's padded spaces hold {obs_dim} and {action_dim}")
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(obs_dim,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(action_dim,), dtype=np.float32)

    def _pad(self, obs: np.ndarray) -> np.ndarray:
        padded = np.zeros(self.observation_space.shape, dtype=np.float32)
        padded[: self.task_obs_dim] = obs
        return padded

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(**kwargs)
        return self._pad(obs), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(np.asarray(action)[: self.task_action_dim])
        return self._pad(obs), reward, terminated, truncated, info
