"""Image observations of DMControl tasks (``obs=rgb``, ALGORITHM.md section 1).

:class:`PixelObservations` replaces a task's state observation by its last
:data:`FRAME_STACK` camera frames, each ``IMAGE_SIZE`` x ``IMAGE_SIZE`` RGB,
stacked along the channel axis: ``uint8`` arrays of shape ``(9, 64, 64)``,
oldest frame first. At a reset the first frame fills the stack.

Rendering is headless: without a display MuJoCo's EGL backend is chosen
(``MUJOCO_GL=egl``, Mesa's software renderer on a CPU-only machine); set
``MUJOCO_GL=osmesa`` before starting to use OSMesa instead. Frames come from
:meth:`DMControlEnv.render <mbdpo.envs.dmcontrol.DMControlEnv.render>`.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

IMAGE_SIZE = 64
FRAME_STACK = 3

VISUAL_TASKS = ("acrobot-swingup", "cheetah-run", "finger-spin", "finger-turn-easy", "finger-turn-hard",
                "quadruped-walk", "reacher-easy", "reacher-hard", "walker-run", "walker-walk")
"""The paper's 10 visual-control tasks (reference/README.md); any DMControl task renders."""


class PixelObservations(gymnasium.Wrapper):
    """Observations of a DMControl environment as the last 3 rendered 64x64 frames (see the module docstring)."""

    def __init__(self, env: gymnasium.Env):
        super().__init__(env)
        self.task, self.episode_length, self.action_repeat = env.task, env.episode_length, env.action_repeat
        self.can_terminate = env.can_terminate
        self.observation_space = spaces.Box(0, 255, (3 * FRAME_STACK, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
        self._frames: deque[np.ndarray] = deque(maxlen=FRAME_STACK)

    def _frame(self) -> np.ndarray:
        return self.env.unwrapped.render(IMAGE_SIZE, IMAGE_SIZE).transpose(2, 0, 1)  # channels first

    def _stacked(self) -> np.ndarray:
        return np.concatenate(self._frames, axis=0)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict[str, Any]]:
        _, info = self.env.reset(**kwargs)
        frame = self._frame()
        self._frames.extend([frame] * FRAME_STACK)
        return self._stacked(), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        _, reward, terminated, truncated, info = self.env.step(action)
        self._frames.append(self._frame())
        return self._stacked(), reward, terminated, truncated, info
