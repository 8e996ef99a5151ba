"""Environments with a Gymnasium interface, looked up by task name.

>>> env = make_env("walker-walk", seed=0)
>>> observation, info = env.reset()
>>> observation, reward, terminated, truncated, info = env.step(env.action_space.sample())

Importing this package is cheap: simulators are imported when a task is made.
"""

from __future__ import annotations

import gymnasium

from mbdpo.envs import metaworld
from mbdpo.envs.dmcontrol import DMCONTROL_TASKS, EPISODE_LENGTH, DMControlEnv
from mbdpo.envs.metaworld import METAWORLD_TASKS
from mbdpo.errors import UnknownTaskError, closest

__all__ = ["DMCONTROL_TASKS", "METAWORLD_TASKS", "TASKS", "available", "episode_length", "make_env"]

TASKS: tuple[str, ...] = DMCONTROL_TASKS + METAWORLD_TASKS
"""Every named task :func:`make_env` accepts; besides them, ``gym:<id>`` wraps any registered
Gymnasium environment with continuous actions (:mod:`mbdpo.envs.gym`)."""


def _require_known(task: str) -> None:
    """Raise :class:`UnknownTaskError` unless ``task`` is in :data:`TASKS` or a ``gym:`` task."""
    if task not in TASKS and not task.startswith("gym:"):
        raise UnknownTaskError(f"unknown task {task!r}; {closest(task, TASKS)} (or gym:<id> for a Gymnasium "
                               f"environment)")


def make_env(task: str, seed: int) -> gymnasium.Env:
    """Build the environment of ``task``, its initial states seeded by ``seed``.

    Raises:
        UnknownTaskError: If ``task`` is neither in :data:`TASKS` nor a usable ``gym:<id>``.
    """
    _require_known(task)
    if task.startswith("gym:"):
        from mbdpo.envs.gym import GymEnv

        return GymEnv(task, seed)
    if task in METAWORLD_TASKS:
        return metaworld.MetaWorldEnv(task, seed)
    return DMControlEnv(task, seed)


def available(task: str) -> bool:
    """Whether :func:`make_env` can build ``task`` on this install (its optional suite is there)."""
    return task not in METAWORLD_TASKS or metaworld.installed()


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
    return metaworld.EPISODE_LENGTH if task in METAWORLD_TASKS else EPISODE_LENGTH
