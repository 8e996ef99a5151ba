"""Environments with a Gymnasium interface, looked up by task name.

>>> env = make_env("walker-walk", seed=0)
>>> observation, info = env.reset()
>>> observation, reward, terminated, truncated, info = env.step(env.action_space.sample())

Importing this package is cheap: simulators are imported when a task is made.
Every environment has ``episode_length``, ``action_repeat`` and
``can_terminate``, and puts ``success`` in the step's info.
"""

from __future__ import annotations

import importlib.util

import gymnasium

from mbdpo.envs import maniskill, metaworld, myosuite
from mbdpo.envs.dmcontrol import DMCONTROL_TASKS, EPISODE_LENGTH, DMControlEnv
from mbdpo.envs.maniskill import MANISKILL_TASKS
from mbdpo.envs.metaworld import METAWORLD_TASKS
from mbdpo.envs.myosuite import MYOSUITE_TASKS
from mbdpo.envs.pixels import PixelObservations
from mbdpo.envs.suite import SuiteEnv
from mbdpo.envs.task_sets import TASK_SETS
from mbdpo.errors import UnknownTaskError, closest

__all__ = ["DMCONTROL_TASKS", "MANISKILL_TASKS", "METAWORLD_TASKS", "MYOSUITE_TASKS", "TASKS", "available",
           "episode_length", "make_env"]

SUITES: dict[tuple[str, ...], type[SuiteEnv]] = {
    METAWORLD_TASKS: metaworld.MetaWorldEnv,
    MYOSUITE_TASKS: myosuite.MyoSuiteEnv,
    MANISKILL_TASKS: maniskill.ManiSkillEnv,
}
"""The optional suites: their tasks and environment class."""

TASKS: tuple[str, ...] = DMCONTROL_TASKS + METAWORLD_TASKS + MYOSUITE_TASKS + MANISKILL_TASKS
"""Every named task :func:`make_env` accepts; besides them, ``gym:<id>`` wraps any registered
Gymnasium environment with continuous actions (:mod:`mbdpo.envs.gym`)."""


def _require_known(task: str) -> None:
    """Raise :class:`UnknownTaskError` unless ``task`` is in :data:`TASKS` or a ``gym:`` task."""
    if task not in TASKS and not task.startswith("gym:"):
        summary = ("a DMControl task (e.g. walker-walk), mw-<MetaWorld task>, myo-<MyoSuite task>, a ManiSkill "
                   "task (e.g. pick-cube) or a task set (mt30, mt80), all listed in the README section Tasks")
        raise UnknownTaskError(f"unknown task {task!r}; {closest(task, (*TASKS, *TASK_SETS), otherwise=summary)} "
                               f"(or gym:<id> for a Gymnasium environment)")


def _suite(task: str) -> type[SuiteEnv] | None:
    """The environment class of ``task``'s optional suite; None for DMControl and gym: tasks."""
    return next((env_class for tasks, env_class in SUITES.items() if task in tasks), None)


def make_env(task: str, seed: int, obs: str = "state") -> gymnasium.Env:
    """Build the environment of ``task``, its initial states seeded by ``seed``.

    ``obs="rgb"`` gives a DMControl task's stacked camera frames instead of its
    state (:mod:`mbdpo.envs.pixels`).

    Raises:
        UnknownTaskError: If ``task`` is neither in :data:`TASKS` nor a usable ``gym:<id>``.
        MissingSuiteError: If the task's optional suite is not installed or cannot run here.
    """
    _require_known(task)
    if task.startswith("gym:"):
        from mbdpo.envs.gym import GymEnv

        return GymEnv(task, seed)
    suite = _suite(task)
    if suite is not None:
        return suite(task, seed)
    return PixelObservations(DMControlEnv(task, seed)) if obs == "rgb" else DMControlEnv(task, seed)


def available(task: str) -> bool:
    """Whether the simulator suite of ``task`` is installed (ManiSkill may still fail to start without Vulkan)."""
    suite = _suite(task)
    return suite is None or importlib.util.find_spec(suite.module) is not None


def episode_length(task: str) -> int:
    """Number of agent steps in an episode of ``task``.

    Raises:
        UnknownTaskError: If ``task`` is not in :data:`TASKS` or ``gym:<id>``.
    """
    _require_known(task)
    if task.startswith("gym:"):
        env = make_env(task, 0)
        env.close()
        return env.episode_length
    suite = _suite(task)
    return EPISODE_LENGTH if suite is None else suite.episode_length
