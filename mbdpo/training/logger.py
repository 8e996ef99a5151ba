"""What a run writes to its directory: CSV logs, TensorBoard events, optional Weights & Biases."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from mbdpo.config import Config
from mbdpo.errors import MBDPOError

EVAL_COLUMNS = ["step", "episode_reward", "episode_success", "episode_length", "elapsed", "episode_reward_std"]


class CSVLog:
    """An append-only CSV log.

    When a row brings new columns (e.g. loss values once updates start), the
    file is rewritten once with the wider header. On resume, rows logged after
    the checkpoint's step (work that the resumed run will redo) are dropped,
    so the file never holds a step twice.
    """

    def __init__(self, path: Path, resume_step: int | None, columns: list[str] | None = None):
        self.path = path
        self.columns = list(columns or [])
        if path.exists():
            rows = self._read()
            if rows:
                self.columns = list(rows[0].keys())
            if resume_step is not None:
                self._rewrite([row for row in rows if int(float(row["step"])) <= resume_step])

    def _read(self) -> list[dict[str, str]]:
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, restval="")
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(self.path)

    def write(self, row: dict[str, Any]) -> None:
        new_columns = [key for key in row if key not in self.columns]
        if new_columns:
            self.columns += new_columns
            if self.path.exists():
                self._rewrite(self._read())
        new_file = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, restval="")
            if new_file:
                writer.writeheader()
            writer.writerow({key: _format(value) for key, value in row.items()})


def _format(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value):
        return f"{value:.6g}"
    return value


class RunLogger:
    """train.csv, eval.csv, score.csv (score-network checks), TensorBoard events (``tb/``) and, if asked,
    Weights & Biases."""

    def __init__(self, run_dir: Path, cfg: Config, resume_step: int | None):
        from torch.utils.tensorboard import SummaryWriter

        self.csv = {
            "train": CSVLog(run_dir / "train.csv", resume_step),
            "eval": CSVLog(run_dir / "eval.csv", resume_step, EVAL_COLUMNS),
            "score": CSVLog(run_dir / "score.csv", resume_step),
        }
        self.tensorboard = SummaryWriter(str(run_dir / "tb"), purge_step=resume_step)
        self.wandb = _start_wandb(run_dir, cfg) if cfg.wandb else None

    def log(self, kind: str, row: dict[str, Any]) -> None:
        """Log a ``train``, ``eval`` or ``score`` row (must hold ``step``)."""
        self.csv[kind].write(row)
        step = int(row["step"])
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)):
                self.tensorboard.add_scalar(f"{kind}/{key}", value, step)
        if self.wandb is not None:
            self.wandb.log({f"{kind}/{k}": v for k, v in row.items() if k != "step"}, step=step)

    def close(self) -> None:
        self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()


def _start_wandb(run_dir: Path, cfg: Config):
    try:
        import wandb
    except ImportError:
        raise MBDPOError("wandb=true needs the wandb package: pip install wandb") from None
    return wandb.init(project=cfg.wandb_project, dir=str(run_dir), config=cfg.to_dict(), resume="allow",
                      id=run_dir.name)
