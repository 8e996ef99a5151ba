"""Reading run directories and the published reference curves, and averaging over seeds."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from mbdpo.config import Config, user_keys
from mbdpo.errors import ConfigError

# Keys that tell nothing about the method: runs differing only in these are seeds of one group.
NOT_A_SETTING = {
    "seed", "run_dir", "steps", "device", "compile_rollouts", "resume", "progress", "eval_freq", "eval_episodes",
    "save_buffer", "wandb", "wandb_project",
}
REFERENCE_ALGORITHMS = ("mbdpo", "tdmpc2", "tdmpc", "dreamerv3", "sac", "mbdpo-pixels", "tdmpc2-pixels")


@dataclass
class Run:
    """One run directory: its resolved config and its CSV logs."""

    path: Path
    config: dict
    evals: list[dict[str, str]]
    trains: list[dict[str, str]]

    @property
    def task(self) -> str:
        return self.config["task"]


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` as a CSV file with a header of every key, in order of appearance (missing values
    empty); nothing if there are none."""
    if not rows:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(key for row in rows for key in row)), restval="")
        writer.writeheader()
        writer.writerows(rows)


def load_run(path: Path) -> Run:
    config_file = path / "config.json"
    if not config_file.exists():
        raise ConfigError(f"{path} is not a run directory: it has no config.json")
    return Run(path, json.loads(config_file.read_text()), read_csv(path / "eval.csv"), read_csv(path / "train.csv"))


def find_runs(paths: list[str]) -> list[Run]:
    """The run directories among ``paths`` and below them (any folder holding config.json and eval.csv)."""
    if not paths:
        raise ConfigError("give one or more run directories (or folders that contain runs)")
    runs = []
    for name in paths:
        path = Path(name)
        if not path.is_dir():
            raise ConfigError(f"run directory {name!r} does not exist")
        found = sorted({f.parent for f in path.rglob("eval.csv") if (f.parent / "config.json").exists()})
        if not found:
            raise ConfigError(f"no run directory (with config.json and eval.csv) under {name!r}")
        runs += [load_run(run) for run in found]
    return runs


def settings_of(run: Run) -> dict:
    """The run's method settings: its config (defaults filling keys older runs lack) without seed-like keys."""
    return {key: value for key, value in {**Config().to_dict(), **run.config}.items()
            if key in user_keys(Config) and key not in NOT_A_SETTING | {"task"}}


def group_runs(runs: list[Run]) -> dict[tuple[str, str], list[Run]]:
    """Runs grouped by (task, label); a group's runs differ only in seed-like keys.

    The label names the settings that differ between the groups of a task
    (``planner=mppi energy_eta=0.0``), or the planner when they all agree.
    """
    groups: dict[tuple[str, str], list[Run]] = {}
    for task in sorted({run.task for run in runs}):
        task_runs = [run for run in runs if run.task == task]
        settings = [settings_of(run) for run in task_runs]
        varying = sorted(k for k in settings[0] if len({json.dumps(s[k]) for s in settings}) > 1)
        for run, setting in zip(task_runs, settings):
            label = " ".join(f"{k}={setting[k]}" for k in varying) or f"planner={setting['planner']}"
            groups.setdefault((task, label), []).append(run)
    return groups


@dataclass
class Curve:
    """Mean and standard deviation over seeds of one logged column, per step."""

    steps: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    seeds: np.ndarray  # how many runs logged each step


def seed_curve(tables: list[list[dict[str, str]]], column: str) -> Curve:
    """Average ``column`` over runs at each step that any run logged (empty cells skipped)."""
    by_step: dict[float, list[float]] = {}
    for rows in tables:
        for row in rows:
            if row.get(column, "") != "":
                by_step.setdefault(float(row["step"]), []).append(float(row[column]))
    steps = np.array(sorted(by_step))
    values = [np.array(by_step[s]) for s in steps]
    return Curve(steps, np.array([v.mean() for v in values]), np.array([v.std() for v in values]),
                 np.array([len(v) for v in values]))


def check_reference(algorithm: str) -> str:
    """``algorithm`` if published curves of it are shipped, else a one-line error listing those that are."""
    if algorithm not in REFERENCE_ALGORITHMS:
        raise ConfigError(f"unknown reference {algorithm!r}; valid: {', '.join(REFERENCE_ALGORITHMS)}")
    return algorithm


def reference_curve(algorithm: str, task: str) -> Curve | None:
    """The published curve of ``algorithm`` on ``task`` (seeds averaged), or None if there is none."""
    check_reference(algorithm)
    path = resources.files("mbdpo") / "reference" / algorithm / f"{task}.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    column = "reward" if "reward" in rows[0] else "success"
    return seed_curve([rows], column)


def area_under_curve(curve: Curve) -> float:
    """Mean value over the logged step range (trapezoid rule), so runs of equal length compare directly."""
    if len(curve.steps) < 2:
        return float(curve.mean[0]) if len(curve.steps) else float("nan")
    trapezoids = (curve.mean[1:] + curve.mean[:-1]) / 2 * np.diff(curve.steps)
    return float(trapezoids.sum() / (curve.steps[-1] - curve.steps[0]))
