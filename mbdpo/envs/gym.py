"""Any registered Gymnasium environment with a continuous action space, as task ``gym:<id>``.

``make_env("gym:Hopper-v5", seed)`` wraps ``gymnasium.make("Hopper-v5")``:

- observations: the Box observation flattened to ``float32``;
- actions: in [-1, 1], rescaled to the environment's bounds (which must be finite);
- episodes: ``terminated`` and ``truncated`` kept apart; the length is the
  environment's TimeLimit (``max_episode_steps``), and one agent step is one
  environment step (no action repeat);
- :attr:`GymEnv.can_terminate`: whether episodes can end early, which
  switches on the termination head (``episodic``) for the run. Gymnasium does
  not declare it, so it is read from the environment where it says
  (MuJoCo's ``terminate_when_unhealthy``) and otherwise assumed, except for
  environments known never to terminate.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from mbdpo.envs.dmcontrol import use_headless_rendering
from mbdpo.errors import MissingSuiteError, UnknownTaskError, closest, first_line

PREFIX = "gym:"
# Environment ids (without version) whose episodes only ever end by the time limit.
NEVER_TERMINATE = ("Pendulum", "HalfCheetah", "Swimmer", "Reacher", "Pusher")


def gym_id(task: str) -> str:
    return task.removeprefix(PREFIX)


def _check_registered(env_id: str) -> None:
    if env_id not in gymnasium.registry:
        raise UnknownTaskError(f"unknown Gymnasium environment {env_id!r}; "
                               f"{closest(env_id, gymnasium.registry.keys())}")


class GymEnv(gymnasium.Wrapper):
    """A Gymnasium environment seen through mbdpo's task interface (see the module docstring)."""

    def __init__(self, task: str, seed: int):
        env_id = gym_id(task)
        _check_registered(env_id)
        use_headless_rendering()
        try:
            env = gymnasium.make(env_id, render_mode="rgb_array")
        except (gymnasium.error.DependencyNotInstalled, ImportError) as error:
            raise UnknownTaskError(f"task {task!r} needs a package that is not installed ({error}); "
                                   f"for MuJoCo environments: pip install 'mbdpo[gym]'") from None
        super().__init__(env)
        if not isinstance(env.action_space, spaces.Box):
            raise UnknownTaskError(f"task {task!r} has a {type(env.action_space).__name__} action space; "
                                   f"mbdpo needs continuous (Box) actions")
        if not isinstance(env.observation_space, spaces.Box):
            raise UnknownTaskError(f"task {task!r} has {type(env.observation_space).__name__} observations; "
                                   f"mbdpo needs a Box of state observations")
        low, high = env.action_space.low.astype(np.float64), env.action_space.high.astype(np.float64)
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise UnknownTaskError(f"task {task!r} has unbounded actions; mbdpo rescales actions from [-1, 1]")
        if env.spec is None or env.spec.max_episode_steps is None:
            raise UnknownTaskError(f"task {task!r} has no TimeLimit (max_episode_steps); register it with one")
        self.task = task
        self.episode_length = int(env.spec.max_episode_steps)
        self.action_repeat = 1
        self._low, self._high = low, high
        size = int(np.prod(env.observation_space.shape))
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=env.action_space.shape, dtype=np.float32)
        self._seed = seed
        self._seeded = False

    def render(self) -> np.ndarray:
        """The current frame as RGB ``uint8`` (for evaluation videos)."""
        try:
            return self.env.render()
        except gymnasium.error.DependencyNotInstalled as error:
            raise MissingSuiteError(f"rendering task {self.task!r} needs a package that is not installed "
                                    f"({first_line(error)})") from None

    @property
    def can_terminate(self) -> bool:
        unhealthy = getattr(self.env.unwrapped, "_terminate_when_unhealthy", None)
        if unhealthy is not None:
            return bool(unhealthy)
        return not gym_id(self.task).split("-")[0].endswith(NEVER_TERMINATE)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if seed is None and not self._seeded:
            seed = self._seed  # the constructor's seed starts the stream of initial states
        self._seeded = True
        obs, info = self.env.reset(seed=seed, options=options)
        return np.asarray(obs, dtype=np.float32).ravel(), info

    def step(self, action: np.ndarray):
        unit = (np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0) + 1.0) / 2.0
        obs, reward, terminated, truncated, info = self.env.step((self._low + unit * (self._high - self._low))
                                                                 .astype(self.env.action_space.dtype))
        info = {**info, "success": float(info.get("success", info.get("is_success", 0.0)))}
        return np.asarray(obs, dtype=np.float32).ravel(), float(reward), bool(terminated), bool(truncated), info
