"""What every training loop shares: choosing and resuming a run directory, seeds and random state.

A run directory holds ``config.json``, ``checkpoint.pt`` and the logs. Running
the same command again resumes a run whose checkpoint is there (with
``run_dir=`` given, or the newest run of the same task, planner and seed whose
configuration has the values the command gives). The run continues with its
saved configuration: a key the command does not give keeps the run's value; a
key it gives must match it, except the settings in :data:`RESUMABLE_CHANGES`.
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

from mbdpo.checkpoint import AGENT, load_checkpoint
from mbdpo.config import Config, user_keys
from mbdpo.errors import ConfigError

CHECKPOINT = "checkpoint.pt"
# Always this command's, whatever the checkpoint saved: where the run is, whether to resume it, where and how
# it computes and whether it draws a progress bar.
INVOCATION_KEYS = {"run_dir", "resume", "device", "compile_rollouts", "progress"}
# Settings a command may give new values when it resumes a run; any other key it gives must match the checkpoint.
RESUMABLE_CHANGES = INVOCATION_KEYS | {
    "steps", "eval_freq", "eval_episodes", "save_buffer", "save_video", "wandb", "wandb_project",
    "data_dir", "log_freq",
}


def keys_set(cfg: Config) -> set[str]:
    """The keys of ``cfg`` away from their defaults: what its caller set, when only the Config is at hand."""
    defaults = Config().to_dict()
    return {key for key, value in cfg.to_dict().items() if value != defaults[key]}


def with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved config with the keys it lacks (written by an older mbdpo) at their defaults."""
    return {**Config().to_dict(), **saved}


def resolved_like(cfg: Config, run: dict[str, Any]) -> dict[str, Any]:
    """``cfg``'s values as a run resolved its own: an unresolved ``cfg`` gets the run's environment fields,
    and the settings that follow from them (``seed_steps=0``), so that its values compare with the run's."""
    if cfg.episode_length or not run["episode_length"]:
        return cfg.to_dict()
    return cfg.with_environment(run["obs_dim"], run["action_dim"], run["episode_length"]).to_dict()


def config_differences(saved: dict[str, Any], cfg: Config, given: set[str]) -> list[str]:
    """The keys a command gave (``given``) whose values differ from a saved config's, ignoring resumable ones."""
    saved = with_defaults(saved)
    current = resolved_like(cfg, saved)
    return sorted(key for key in given - RESUMABLE_CHANGES if saved[key] != current[key])


def resumed_config(saved: dict[str, Any], cfg: Config, given: set[str]) -> Config:
    """The configuration a resumed run continues with: the saved one, under the keys the command gave and
    its invocation keys. A key the command did not give keeps the run's value, even where the
    command's default differs (a newer mbdpo's default, or a preset resolved on another device)."""
    current = cfg.to_dict()
    return Config.from_dict({**with_defaults(saved), **{key: current[key] for key in given | INVOCATION_KEYS}})


def kept_from_checkpoint(resumed: Config, cfg: Config) -> str:
    """A line naming the settings a resumed run keeps from its checkpoint where the command's values differ
    ("" when there are none)."""
    kept = resumed.to_dict()
    current = resolved_like(cfg, kept)
    settings = [f"{key}={kept[key]!r}" for key in user_keys(Config) if kept[key] != current[key]]
    return "kept from the checkpoint (not given; the command's defaults differ): " + ", ".join(settings) if settings else ""


def find_resumable_run(base: Path, cfg: Config, given: set[str]) -> Path | None:
    """The newest run under ``base`` with a checkpoint and the values of the keys the command gave."""
    for run in sorted(base.glob("*"), reverse=True):
        config_file = run / "config.json"
        if (run / CHECKPOINT).exists() and config_file.exists():
            if not config_differences(json.loads(config_file.read_text()), cfg, given):
                return run
    return None


def choose_run_dir(cfg: Config, given: set[str]) -> Path:
    if cfg.run_dir:
        return Path(cfg.run_dir)
    base = Path("runs") / cfg.task / cfg.planner / str(cfg.seed)
    existing = find_resumable_run(base, cfg, given) if cfg.resume == "auto" else None
    return existing or base / time.strftime("%Y%m%d-%H%M%S")


def resume_point(run_dir: Path, cfg: Config, given: set[str], device: torch.device) -> tuple[Config, dict | None]:
    """The configuration to run with and the checkpoint to resume from (None: start afresh with ``cfg``).

    ``given`` are the keys the command set; one that differs from the checkpoint's (and may not change
    on resume) is an error naming it.
    """
    path = run_dir / CHECKPOINT
    if cfg.resume == "never" or not path.exists():
        return cfg, None
    checkpoint = load_checkpoint(path, device, holds=AGENT)
    differences = config_differences(checkpoint["config"], cfg, given)
    if differences:
        key = differences[0]
        raise ConfigError(
            f"cannot resume {run_dir}: {key}={cfg.to_dict()[key]!r} differs from the "
            f"checkpoint's {key}={with_defaults(checkpoint['config'])[key]!r}; use another run_dir= or resume=never"
        )
    return resumed_config(checkpoint["config"], cfg, given), checkpoint


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
