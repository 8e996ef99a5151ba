"""Checkpoint files: written atomically, read without executing code.

A checkpoint is a dict of tensors and plain Python values, saved with
``torch.save`` to a temporary file that is then renamed over the target, so a
crash never leaves a half-written checkpoint in place of a good one. It is
read with ``torch.load(..., weights_only=True)``, which refuses to run code.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from mbdpo.errors import CheckpointError, first_line, refused_global

FORMAT = "mbdpo-checkpoint"
VERSION = 1


def save_atomically(path: Path, obj: Any) -> None:
    """``torch.save(obj)`` to ``path`` through a temporary file, fsync and rename, so that a crash never
    leaves a half-written file in place of a good one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` with the checkpoint header to ``path`` atomically."""
    save_atomically(path, {"format": FORMAT, "version": VERSION, **payload})


AGENT = ("config", "agent")  # what a trained agent's checkpoint (mbdpo train's checkpoint.pt) holds


def load_checkpoint(path: Path | str, map_location: str | torch.device = "cpu",
                    holds: tuple[str, ...] = ()) -> dict[str, Any]:
    """Read a checkpoint, with one-line errors for missing, corrupt or foreign files, and for mbdpo files
    that lack any of the entries ``holds`` (e.g. :data:`AGENT`)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as error:
        unknown = refused_global(error)
        if unknown:
            raise CheckpointError(f"{str(path)!r} is not an mbdpo checkpoint (it names {unknown}, "
                                  f"which a checkpoint never holds)") from None
        raise CheckpointError(f"checkpoint {str(path)!r} is truncated or corrupt ({first_line(error)})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not an mbdpo checkpoint (no '{FORMAT}' header)")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {payload.get('version')}; this mbdpo reads {VERSION}"
        )
    missing = [key for key in holds if key not in payload]
    if missing:
        held = sorted(set(payload) - {"format", "version"})
        raise CheckpointError(f"{str(path)!r} holds {held}, not {missing}: give the checkpoint.pt that mbdpo "
                              "train writes in its run directory")
    return payload
