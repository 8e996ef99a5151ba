"""Evaluation videos (``save_video=true``): the frames of an episode written as an MP4 with imageio."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mbdpo.errors import require_installed

FPS = 30
INSTALL = "pip install 'mbdpo[video]'"


def require_video_writer() -> None:
    """Raise a one-line :class:`MissingSuiteError` unless imageio can write MP4s (its ffmpeg plug-in)."""
    for package in ("imageio", "imageio_ffmpeg"):
        require_installed(package, "save_video=true", INSTALL)


def write_video(path: Path, frames: list[np.ndarray]) -> None:
    """Write RGB frames ``(height, width, 3)`` of ``uint8`` to an MP4 at ``path`` (its folder is created)."""
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, frames, fps=FPS, macro_block_size=1)
