"""Evaluation videos (``save_video=true``): the frames of an episode written as an MP4 with imageio."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from mbdpo.errors import MissingSuiteError

FPS = 30
INSTALL = "pip install 'mbdpo[video]'"


def require_video_writer() -> None:
    """Raise a one-line :class:`MissingSuiteError` unless imageio can write MP4s (its ffmpeg plug-in)."""
    for module in ("imageio", "imageio_ffmpeg"):
        if importlib.util.find_spec(module) is None:
            raise MissingSuiteError(f"save_video=true needs {module}, which is not installed: {INSTALL}")


def write_video(path: Path, frames: list[np.ndarray]) -> None:
    """Write RGB frames ``(height, width, 3)`` of ``uint8`` to an MP4 at ``path`` (its folder is created)."""
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, frames, fps=FPS, macro_block_size=1)
