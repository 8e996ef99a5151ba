"""ManiSkill's tabletop tasks with state observations: lift-cube, pick-cube, stack-cube, pick-ycb, turn-faucet.

Each task is a ManiSkill 3 environment (CPU simulation, one environment,
``obs_mode="state"``, end-effector delta-pose control: 7 actions in [-1, 1]),
seen through ManiSkill's own ``CPUGymWrapper`` (numpy arrays without a batch
dimension), 100 agent steps with action repeat 2. ManiSkill ends an episode
when the task succeeds, so these tasks are episodic: ``terminated`` is passed
on and training switches on the termination head. ``info["success"]`` is
ManiSkill's ``success``.

ManiSkill is an optional suite: ``pip install 'mbdpo[maniskill]'``. Its
simulator, SAPIEN, needs a Vulkan GPU device even for state observations, so
on a machine without one (a CPU-only server, or software Vulkan) the tasks
fail with a one-line error that says so. ``pick-ycb`` also needs ManiSkill's
YCB object models (``python -m mani_skill.utils.download_asset ycb``).
``lift-cube`` was ManiSkill 2's ``LiftCube-v0``; ManiSkill 3 has no such task,
so it fails with an error naming the nearest one.
"""

from __future__ import annotations

import gymnasium

from mbdpo.envs.suite import SuiteEnv, import_suite
from mbdpo.errors import MissingSuiteError

MANISKILL_IDS = {
    "lift-cube": None,
    "pick-cube": "PickCube-v1",
    "stack-cube": "StackCube-v1",
    "pick-ycb": "PickSingleYCB-v1",
    "turn-faucet": "TurnFaucet-v1",
}
"""mbdpo's task names and the ManiSkill 3 environments they stand for (None: not in ManiSkill 3)."""

MANISKILL_TASKS: tuple[str, ...] = tuple(MANISKILL_IDS)
EPISODE_LENGTH = 100
ACTION_REPEAT = 2
INSTALL = "pip install 'mbdpo[maniskill]'"


def make_maniskill(task: str) -> gymnasium.Env:
    """Build ManiSkill's environment of ``task`` as numpy arrays without a batch dimension.

    Raises:
        MissingSuiteError: If ManiSkill is not installed, the task is not in
            ManiSkill 3, or its simulator cannot start here (no Vulkan device).
    """
    env_id = MANISKILL_IDS[task]
    if env_id is None:
        raise MissingSuiteError(f"task {task!r} was ManiSkill 2's LiftCube-v0, which ManiSkill 3 does not have; "
                                f"the nearest ManiSkill 3 task is 'pick-cube'")
    import_suite(task, "mani_skill.envs", INSTALL)  # registers ManiSkill's environments
    from mani_skill.utils.wrappers.gymnasium import CPUGymWrapper

    try:
        env = gymnasium.make(env_id, obs_mode="state", control_mode="pd_ee_delta_pose", num_envs=1,
                             sim_backend="cpu", render_mode="rgb_array",
                             max_episode_steps=EPISODE_LENGTH * ACTION_REPEAT)
    except RuntimeError as error:
        raise MissingSuiteError(f"task {task!r} cannot run here: ManiSkill's simulator SAPIEN needs a Vulkan "
                                f"GPU device ({str(error).strip()[:80]})") from None
    return CPUGymWrapper(env)


class ManiSkillEnv(SuiteEnv):
    """One ManiSkill 3 task with state observations; episodes end early on success."""

    episode_length = EPISODE_LENGTH
    action_repeat = ACTION_REPEAT
    can_terminate = True
    success_key = "success"
    module = "mani_skill"

    def make_suite_env(self, task: str, seed: int) -> gymnasium.Env:
        return make_maniskill(task)
