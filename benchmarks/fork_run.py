"""Fork a training run: a copy of its run directory whose checkpoint continues under other settings.

    python benchmarks/fork_run.py RUN_DIR NEW_RUN_DIR score_updates=4
    mbdpo train run_dir=NEW_RUN_DIR steps=20000 ...   # the run's own settings, with score_updates=4

The copy resumes from the same step, with the same world model, replay
buffer and random state, so that it and the original, each continued, differ
by the changed settings alone (a paired comparison). Only the checkpoint's
configuration and ``config.json`` change, and a change to or from
``score_sampler=policy`` starts the new kind of network untrained; the logs
are copied as they are.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from mbdpo.agent import for_acting_network
from mbdpo.checkpoint import AGENT, load_checkpoint, save_checkpoint
from mbdpo.config import Config, parse_overrides, parse_values
from mbdpo.errors import ConfigError, exit_on_user_error


def fork(run_dir: Path, new_run_dir: Path, changes: dict[str, str]) -> Config:
    """Copy ``run_dir`` to ``new_run_dir`` with ``changes`` applied to its configuration; returns it."""
    if new_run_dir.exists():
        raise ConfigError(f"{new_run_dir} already exists; give a new directory")
    checkpoint = load_checkpoint(run_dir / "checkpoint.pt", holds=AGENT)
    cfg = Config.from_dict({**checkpoint["config"], **parse_values(changes, Config)})
    cfg.validate()
    agent_state = for_acting_network(checkpoint["agent"], Config.from_dict(checkpoint["config"]), cfg)
    shutil.copytree(run_dir, new_run_dir)
    save_checkpoint(new_run_dir / "checkpoint.pt", {**checkpoint, "agent": agent_state, "config": cfg.to_dict()})
    cfg.save(new_run_dir / "config.json")
    return cfg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("new_run_dir", type=Path)
    parser.add_argument("changes", nargs="+", help="key=value settings to change")
    args = parser.parse_args()
    fork(args.run_dir, args.new_run_dir, parse_overrides(args.changes))
    print(f"forked {args.run_dir} -> {args.new_run_dir} with {' '.join(args.changes)}")


if __name__ == "__main__":
    exit_on_user_error(main, "fork_run")
