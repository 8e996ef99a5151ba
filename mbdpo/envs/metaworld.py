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

MetaWorld is an optional suite: ``pip install 'mbdpo[metaworld]'`` installs
MetaWorld 3.0.0, whose requirements allow the mujoco that dm-control is pinned
to. MetaWorld 3.1.1 differs only in one reward term of
button-press-topdown-wall but declares ``mujoco==3.3.0``; it runs on the
pinned mujoco when installed with ``pip install --no-deps metaworld==3.1.1``.
"""

from __future__ import annotations

import gymnasium
import numpy as np
from gymnasium.utils import seeding

from mbdpo.envs.suite import SuiteEnv, import_suite
from mbdpo.envs.task_sets import METAWORLD_MT80

METAWORLD_TASKS: tuple[str, ...] = METAWORLD_MT80
EPISODE_LENGTH = 100
INSTALL = "pip install 'mbdpo[metaworld]'"


def env_name(task: str) -> str:
    """``mw-door-open`` -> MetaWorld's ``door-open-v3``."""
    return task.removeprefix("mw-") + "-v3"


class MetaWorldEnv(SuiteEnv):
    """One MetaWorld v3 task with random goals, 100 agent steps, action repeat 2."""

    episode_length = EPISODE_LENGTH
    action_repeat = 2
    can_terminate = False
    success_key = "success"
    module = "metaworld"

    def make_suite_env(self, task: str, seed: int) -> gymnasium.Env:
        import_suite(task, self.module, INSTALL)
        return gymnasium.make("Meta-World/MT1", env_name=env_name(task), seed=seed, render_mode="rgb_array",
                              disable_env_checker=True)

    def _reset_suite(self, seed: int | None) -> np.ndarray:
        """MetaWorld draws the goal from the task's 50 goal positions (fixed by
        the constructor's seed) before it seeds the reset, so a seeded reset
        seeds that draw first."""
        if seed is not None:
            self._env.unwrapped.np_random, _ = seeding.np_random(seed)
        obs, _ = self._env.reset(seed=seed)
        return obs
