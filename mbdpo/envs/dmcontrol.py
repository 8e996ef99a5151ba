"""DeepMind Control Suite tasks behind a Gymnasium interface.

:class:`DMControlEnv` wraps a ``dm_control`` environment so that it exposes
flat ``float32`` state observations, actions in ``[-1, 1]``, a fixed action
repeat and a fixed episode length. Tasks are named ``"domain-task"`` (for
example ``"walker-walk"``); besides the standard suite tasks there are custom
tasks defined in :mod:`mbdpo.envs.custom_tasks`.

``dm_control`` is imported only when a task is loaded, so importing this
module is cheap.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import gymnasium
import numpy as np
from gymnasium import spaces

if TYPE_CHECKING:
    from dm_control.rl import control

EPISODE_LENGTH = 500
"""Agent steps per episode; the episode is truncated after the last one."""

ACTION_REPEAT = 2
"""Physics control steps per agent step."""

SUITE_TASKS = (
    "acrobot-swingup",
    "cartpole-balance",
    "cartpole-balance-sparse",
    "cartpole-swingup",
    "cartpole-swingup-sparse",
    "cheetah-run",
    "cup-catch",
    "dog-run",
    "dog-stand",
    "dog-trot",
    "dog-walk",
    "finger-spin",
    "finger-turn-easy",
    "finger-turn-hard",
    "fish-swim",
    "hopper-hop",
    "hopper-stand",
    "humanoid-run",
    "humanoid-stand",
    "humanoid-walk",
    "pendulum-swingup",
    "quadruped-run",
    "quadruped-walk",
    "reacher-easy",
    "reacher-hard",
    "walker-run",
    "walker-stand",
    "walker-walk",
)
"""Tasks that ``dm_control.suite`` provides as they are."""

CUSTOM_TASKS = (
    "cheetah-jump",
    "cheetah-run-back",
    "cheetah-run-backwards",
    "cheetah-run-front",
    "cup-spin",
    "hopper-hop-backwards",
    "pendulum-spin",
    "reacher-three-easy",
    "reacher-three-hard",
    "walker-run-backwards",
    "walker-walk-backwards",
)
"""Tasks built in :mod:`mbdpo.envs.custom_tasks` on top of the suite."""

DMCONTROL_TASKS = SUITE_TASKS + CUSTOM_TASKS
"""Every task :class:`DMControlEnv` can load."""

_DOMAIN_ALIASES = {"cup": "ball_in_cup"}
"""Short domain names used in task names, mapped to dm_control's names."""


def suite_names(task: str) -> tuple[str, str]:
    """Split a task name into dm_control's ``(domain_name, task_name)``.

    For example ``"cup-catch"`` becomes ``("ball_in_cup", "catch")`` and
    ``"finger-turn-easy"`` becomes ``("finger", "turn_easy")``.
    """
    domain, _, name = task.partition("-")
    return _DOMAIN_ALIASES.get(domain, domain), name.replace("-", "_")


def load_suite_env(domain: str, task: str, seed: int | None) -> control.Environment:
    """Load a ``dm_control.suite`` task that never ends an episode by itself.

    The time limit is infinite because :class:`DMControlEnv` enforces the
    episode length; the control timestep is the domain's default.
    """
    from dm_control import suite

    return suite.load(domain, task, task_kwargs={"random": seed, "time_limit": float("inf")})


def use_headless_rendering() -> None:
    """Pick MuJoCo's headless EGL backend when there is no display (unless MUJOCO_GL is set).

    Must run before dm_control is imported: without a display, its default
    GLFW backend prints a warning on import.
    """
    if not os.environ.get("DISPLAY"):
        os.environ.setdefault("MUJOCO_GL", "egl")


def load_dmcontrol(task: str, seed: int) -> control.Environment:
    """Build the dm_control environment of a task from :data:`DMCONTROL_TASKS`.

    ``seed`` seeds the task's random number generator, which draws the initial
    state of every episode.
    """
    use_headless_rendering()
    if task in CUSTOM_TASKS:
        from mbdpo.envs.custom_tasks import BUILDERS

        return BUILDERS[task](seed)
    return load_suite_env(*suite_names(task), seed)


def camera_id(task: str) -> int:
    """The camera that frames the agent: quadruped's default camera 0 looks at the floor; 2 follows it."""
    return 2 if task.startswith("quadruped") else 0


def flatten_observation(observation: Mapping[str, Any]) -> np.ndarray:
    """Concatenate the values of an observation dict, in order, as ``float32``."""
    parts = [np.asarray(value, dtype=np.float32).ravel() for value in observation.values()]
    return np.concatenate(parts)


def _observation_size(observation_spec: Mapping[str, Any]) -> int:
    """Length of the flattened observation described by ``observation_spec``."""
    return sum(int(np.prod(spec.shape)) for spec in observation_spec.values())


class DMControlEnv(gymnasium.Env):
    """A dm_control task with a Gymnasium interface.

    Observations are the task's state observations flattened into one
    ``float32`` vector. Actions lie in ``[-1, 1]`` and are rescaled to the
    actuators' control range. Each step repeats the action for
    :attr:`action_repeat` control steps and returns the summed reward; the
    episode is truncated after :attr:`episode_length` steps and never
    terminates. ``info["success"]`` is always ``0.0`` because suite tasks have
    no success signal.
    """

    metadata = {"render_modes": ["rgb_array"]}
    episode_length = EPISODE_LENGTH
    action_repeat = ACTION_REPEAT
    can_terminate = False

    def __init__(self, task: str, seed: int) -> None:
        """Load ``task`` (a name from :data:`DMCONTROL_TASKS`) seeded with ``seed``."""
        self.task = task
        self._env = load_dmcontrol(task, seed)
        self._steps: int | None = None

        size = _observation_size(self._env.observation_spec())
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(size,), dtype=np.float32)
        spec = self._env.action_spec()
        self.action_space = spaces.Box(-1.0, 1.0, shape=spec.shape, dtype=np.float32)
        self._control_low = np.broadcast_to(spec.minimum, spec.shape).astype(np.float64)
        self._control_high = np.broadcast_to(spec.maximum, spec.shape).astype(np.float64)

    @property
    def physics(self) -> Any:
        """The underlying ``dm_control`` physics, e.g. to inspect or set the state."""
        return self._env.physics

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; ``seed`` restarts the random stream of initial states.

        Without a seed the next initial state is drawn from the stream started
        by the constructor's seed (or by the last seeded reset).
        """
        super().reset(seed=seed)
        if seed is not None:
            self._env.task.random.seed(seed)
        time_step = self._env.reset()
        self._steps = 0
        return flatten_observation(time_step.observation), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply ``action`` for :attr:`action_repeat` control steps.

        Raises:
            ValueError: If ``action`` does not have the action space's shape.
            RuntimeError: If no episode is running (call :meth:`reset` first).
        """
        if self._steps is None:
            raise RuntimeError("no episode is running; call reset() before step()")
        physics_action = self._to_control(action)
        reward = 0.0
        for _ in range(self.action_repeat):
            time_step = self._env.step(physics_action)
            reward += float(time_step.reward)
        self._steps += 1
        truncated = self._steps >= self.episode_length
        if truncated:
            self._steps = None
        observation = flatten_observation(time_step.observation)
        return observation, reward, False, truncated, {"success": 0.0}

    def render(self, height: int = 256, width: int = 256) -> np.ndarray:
        """The current frame of the task's camera as ``uint8`` RGB ``(height, width, 3)``."""
        return self._env.physics.render(height, width, camera_id=camera_id(self.task))

    def close(self) -> None:
        """Release the dm_control environment."""
        self._env.close()

    def _to_control(self, action: np.ndarray) -> np.ndarray:
        """Clip an action to ``[-1, 1]`` and rescale it to the control range."""
        action = np.asarray(action, dtype=np.float64)
        if action.shape != self.action_space.shape:
            raise ValueError(
                f"action has shape {action.shape}; expected shape {self.action_space.shape}"
            )
        unit = (np.clip(action, -1.0, 1.0) + 1.0) / 2.0
        return self._control_low + unit * (self._control_high - self._control_low)
