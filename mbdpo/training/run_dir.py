"""What every training loop shares: choosing and resuming a run directory, seeds and random state.

A run directory holds ``config.json``, ``checkpoint.pt`` and the logs. Running
the same command again resumes a run whose checkpoint is there (with
``run_dir=`` given, or the newest run of the same task, planner and seed with
the same configuration); settings in :data:`RESUMABLE_CHANGES` may differ, any
other difference is an error that names the key.
"""

from __future__ import annotations

import json
import random
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mbdpo.checkpoint import load_checkpoint
from mbdpo.config import Config
from mbdpo.errors import ConfigError

CHECKPOINT = "checkpoint.pt"
# Settings that may change when a run is resumed; any other difference is an error.
RESUMABLE_CHANGES = {
    "steps", "device", "run_dir", "resume", "progress", "eval_freq", "eval_episodes",
    "save_buffer", "save_video", "wandb", "wandb_project", "data_dir", "log_freq",
}


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Keys whose values differ between two resolved configs, ignoring resumable ones.

    A key that ``saved`` lacks (written by an older mbdpo) counts at its default.
    """
    saved = {**Config().to_dict(), **saved}
    keys = (set(saved) | set(current)) - RESUMABLE_CHANGES
    return sorted(k for k in keys if saved.get(k) != current.get(k))


def find_resumable_run(base: Path, cfg: Config) -> Path | None:
    """The newest run under ``base`` with a checkpoint and the same configuration."""
    for run in sorted(base.glob("*"), reverse=True):
        config_file = run / "config.json"
        if (run / CHECKPOINT).exists() and config_file.exists():
            if not config_differences(json.loads(config_file.read_text()), cfg.to_dict()):
                return run
    return None


def choose_run_dir(cfg: Config) -> Path:
    if cfg.run_dir:
        return Path(cfg.run_dir)
    base = Path("runs") / cfg.task / cfg.planner / str(cfg.seed)
    existing = find_resumable_run(base, cfg) if cfg.resume == "auto" else None
    return existing or base / time.strftime("%Y%m%d-%H%M%S")


def checkpoint_to_resume(run_dir: Path, cfg: Config, device: torch.device) -> dict | None:
    """The checkpoint in ``run_dir`` if the run should resume from it; an error if its config differs."""
    path = run_dir / CHECKPOINT
    if cfg.resume == "never" or not path.exists():
        return None
    checkpoint = load_checkpoint(path, device)
    differences = config_differences(checkpoint["config"], cfg.to_dict())
    if differences:
        key = differences[0]
        raise ConfigError(
            f"cannot resume {run_dir}: {key}={cfg.to_dict().get(key)!r} differs from the "
            f"checkpoint's {key}={checkpoint['config'].get(key)!r}; use another run_dir= or resume=never"
        )
    return checkpoint


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def random_state(rng: np.random.Generator, device: torch.device) -> dict[str, Any]:
    """Every random stream a run draws from, for its checkpoint."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
        "numpy": rng.bit_generator.state,
    }


def restore_random_state(state: dict[str, Any], rng: np.random.Generator, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state["cuda"]:
        torch.cuda.set_rng_state_all(state["cuda"])
    rng.bit_generator.state = state["numpy"]
