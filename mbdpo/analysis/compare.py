"""``mbdpo compare``: two configurations on the same tasks and seeds, and a Markdown report.

Runs live in ``out/<task>/<a|b>/<seed>``; running the command again resumes
unfinished runs and rebuilds the report (``report_only=true`` only rebuilds).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from mbdpo.analysis.plots import plot_curves, plot_diagnostics
from mbdpo.analysis.runs import Run, area_under_curve, find_runs, seed_curve
from mbdpo.config import Config, parse_overrides
from mbdpo.errors import ConfigError

# How much of the end of a run the diagnostics are averaged over (fraction of its training episodes).
FINAL_FRACTION = 0.25


@dataclass
class CompareOptions:
    """Settings of ``mbdpo compare``."""

    a: str = "planner=diffusion"  # space-separated key=value overrides of configuration A
    b: str = "planner=mppi energy_eta=0"  # ... and of configuration B
    common: str = "model_size=1 steps=20000"  # overrides both share
    tasks: str = "cartpole-swingup,walker-walk"
    seeds: str = "1,2,3"
    out: str = "compare"
    report_only: bool = False


def side_configs(options: CompareOptions) -> dict[str, dict[str, str]]:
    """The overrides of each side, checked against the configuration schema."""
    common = parse_overrides(options.common.split())
    sides = {"a": parse_overrides(options.a.split()), "b": parse_overrides(options.b.split())}
    if sides["a"] == sides["b"]:
        raise ConfigError(f"a={options.a!r} and b={options.b!r} are the same configuration; nothing to compare")
    return {name: {**common, **overrides} for name, overrides in sides.items()}


def seeds_of(options: CompareOptions) -> list[int]:
    try:
        return [int(seed) for seed in options.seeds.split(",")]
    except ValueError:
        raise ConfigError(f"seeds={options.seeds!r} is not a comma-separated list of integers") from None


def run_all(options: CompareOptions) -> None:
    """Train (or resume) every task x seed x side, one after another."""
    from mbdpo.training.launch import train

    configs = {name: {**overrides, "task": task, "seed": seed, "run_dir": str(Path(options.out) / task / name / str(seed))}
               for task in options.tasks.split(",") for seed in seeds_of(options)
               for name, overrides in side_configs(options).items()}
    for overrides in configs.values():  # all bad input before any run
        Config.from_overrides(overrides)
    for overrides in configs.values():
        train(overrides)


def final_mean(rows: list[dict[str, str]], column: str) -> float:
    """Mean of ``column`` over the last FINAL_FRACTION of the run's rows (those of them that have it).

    The fraction is of all rows, so that a run which started logging ``column`` late (resumed
    with a newer version) is averaged over the same end of training as one that always logged it.
    """
    final_rows = rows[-max(1, int(len(rows) * FINAL_FRACTION)):]
    values = [float(r[column]) for r in final_rows if r.get(column, "") != ""]
    return float(np.mean(values)) if values else float("nan")


def last_eval_step(run: Run) -> int:
    return int(run.evals[-1]["step"]) if run.evals else 0


def cut_at_common_step(groups: dict[tuple[str, str], list[Run]]) -> dict[str, int]:
    """Cut every run of a task at the last evaluation all of that task's runs reached, in place.

    Returns, per task, the step the runs were cut at when one of them had gone further. Without
    the cut, a run still training would be compared over less training than its partner.
    """
    last_steps: dict[str, list[int]] = {}
    for (task, _), runs in groups.items():
        last_steps.setdefault(task, []).extend(last_eval_step(run) for run in runs)
    reached = {task: min(steps) for task, steps in last_steps.items()}
    for (task, _), runs in groups.items():
        runs[:] = [replace(run, evals=[r for r in run.evals if int(r["step"]) <= reached[task]],
                           trains=[r for r in run.trains if int(r["step"]) <= reached[task]]) for run in runs]
    return {task: reached[task] for task, steps in last_steps.items() if max(steps) > reached[task]}


def summary_row(task: str, label: str, runs: list[Run]) -> dict[str, str]:
    """Final return, area under the curve, diagnostics and speed of one group, as table cells."""
    curve = seed_curve([run.evals for run in runs], "episode_reward")
    finals = [float(run.evals[-1]["episode_reward"]) for run in runs]

    def across_seeds(column: str, digits: int = 3) -> str:
        values = [value for run in runs if not np.isnan(value := final_mean(run.trains, column))]
        return f"{np.mean(values):.{digits}g}" if values else "not logged"

    return {
        "task": task, "configuration": label, "seeds": str(len(runs)), "steps": f"{int(curve.steps[-1]):,}",
        "final return": f"{np.mean(finals):.1f} ± {np.std(finals):.1f}",
        "area under curve": f"{area_under_curve(curve):.1f}",
        "cross-TD error": across_seeds("cross_td_error"),
        "policy drift": across_seeds("policy_drift"),
        "steps/s": across_seeds("steps_per_second"),
    }


def markdown_table(rows: list[dict[str, str]]) -> str:
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row[key] for key in header) + " |" for row in rows]
    return "\n".join(lines)


def write_report(options: CompareOptions) -> Path:
    """``out/report.md`` with the curves, the diagnostics and the summary table."""
    out = Path(options.out)
    labels = {"a": f"A: {options.a}", "b": f"B: {options.b}"}
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in find_runs([str(out)]):
        if run.path.parent.name in labels:
            groups.setdefault((run.task, labels[run.path.parent.name]), []).append(run)
    cut = cut_at_common_step(groups)
    plot_curves(groups, out / "curves")
    plot_diagnostics(groups, out / "diagnostics")
    rows = [summary_row(task, label, group) for (task, label), group in sorted(groups.items())]
    report = "\n\n".join([
        "# Comparison",
        f"A: `{options.a}`; B: `{options.b}`; both: `{options.common}`; seeds {options.seeds}.",
        markdown_table(rows),
        f"Final return: last evaluation, mean ± std over seeds. Area under curve: mean evaluation return over the "
        f"run. Cross-TD error, policy drift and steps/s: training episodes of the last {FINAL_FRACTION:.0%} of "
        f"each run, averaged over seeds.",
        *(["Cut at the step all runs of the task reached: "
           + ", ".join(f"{task} {step:,}" for task, step in sorted(cut.items())) + "."] if cut else []),
        "![learning curves](curves.png)",
        "![cross-TD error and policy drift](diagnostics.png)",
    ])
    path = out / "report.md"
    path.write_text(report + "\n")
    return path


def compare(options: CompareOptions) -> Path:
    if not options.report_only:
        run_all(options)
    return write_report(options)
