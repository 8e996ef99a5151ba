"""Entry points of training: ``train`` picks online or offline training from the task."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mbdpo.config import Config
from mbdpo.envs.task_sets import is_task_set
from mbdpo.errors import ConfigError
from mbdpo.training.distributed import launched_in_parallel
from mbdpo.training.run_dir import keys_set


def train(config: Config | dict[str, Any] | None = None, **overrides: Any) -> Path:
    """Train and return the run directory.

    A single task trains online from scratch; a task set (``task=mt30`` or
    ``mt80``, with ``data_dir=``) pre-trains one multi-task agent offline.
    ``config`` is a :class:`Config` or a dict of overrides; keyword arguments
    are further overrides, e.g. ``train(task="walker-walk", steps=10_000)``.
    Resuming a run, the keys given keep their values and the others take the
    run's (of a :class:`Config`, the keys away from their defaults count as given).
    """
    if isinstance(config, Config):
        cfg = dataclasses.replace(config, **overrides) if overrides else config
        given = keys_set(config) | set(overrides)
    else:
        given_values = {**(config or {}), **overrides}
        cfg, given = Config.from_overrides(given_values), set(given_values)
    if is_task_set(cfg.task):
        from mbdpo.training.offline import OfflineTrainer

        return OfflineTrainer(cfg, given).run()
    if launched_in_parallel():
        raise ConfigError(f"data-parallel training (torchrun) is for offline multi-task runs (task=mt30 or mt80), "
                          f"not task={cfg.task}")
    from mbdpo.training.online import OnlineTrainer

    return OnlineTrainer(cfg, given=given).run()
