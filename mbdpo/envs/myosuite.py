"""MyoSuite's 10 musculoskeletal hand tasks as ``myo-<name>`` (ALGORITHM.md section 8).

Each task is a MyoSuite hand environment driving 39 muscles with actions in
[-1, 1]; the plain name is its ``Fixed`` variant (one fixed target) and
``-hard`` its ``Random`` variant (a new random target every episode). An
episode is 100 agent steps whatever MyoSuite's own time limit is, MyoSuite's
own early endings (for example a hand that strays far from a reach target)
are ignored so that every episode has the same length, there is no action
repeat beyond MyoSuite's own frame skip, and ``info["success"]`` is
MyoSuite's ``solved``.

MyoSuite is an optional suite: ``pip install 'mbdpo[myosuite]'``.
"""

from __future__ import annotations

import gymnasium
import numpy as np

from mbdpo.envs.suite import SuiteEnv, import_suite

MYOSUITE_IDS = {
    "myo-reach": "myoHandReachFixed-v0",
    "myo-reach-hard": "myoHandReachRandom-v0",
    "myo-pose": "myoHandPoseFixed-v0",
    "myo-pose-hard": "myoHandPoseRandom-v0",
    "myo-obj-hold": "myoHandObjHoldFixed-v0",
    "myo-obj-hold-hard": "myoHandObjHoldRandom-v0",
    "myo-key-turn": "myoHandKeyTurnFixed-v0",
    "myo-key-turn-hard": "myoHandKeyTurnRandom-v0",
    "myo-pen-twirl": "myoHandPenTwirlFixed-v0",
    "myo-pen-twirl-hard": "myoHandPenTwirlRandom-v0",
}
"""mbdpo's task names and the MyoSuite environments they stand for."""

MYOSUITE_TASKS: tuple[str, ...] = tuple(MYOSUITE_IDS)
EPISODE_LENGTH = 100
INSTALL = "pip install 'mbdpo[myosuite]'"


class MyoSuiteEnv(SuiteEnv):
    """One MyoSuite hand task, 100 agent steps, success = solved."""

    episode_length = EPISODE_LENGTH
    action_repeat = 1
    can_terminate = False
    success_key = "solved"
    module = "myosuite"
    _renderer = None

    def make_suite_env(self, task: str, seed: int) -> gymnasium.Env:
        import_suite(task, self.module, INSTALL)
        # The bare environment: mbdpo keeps the episode length, not MyoSuite's TimeLimit.
        return gymnasium.make(MYOSUITE_IDS[task], disable_env_checker=True).unwrapped

    def render(self) -> np.ndarray:
        """The hand seen from MyoSuite's first camera, 256x256 RGB."""
        if self._renderer is None:
            import mujoco

            self._renderer = mujoco.Renderer(self._env.mj_model, 256, 256)
        self._renderer.update_scene(self._env.mj_data, camera=0)
        return self._renderer.render()
