"""Learning-curve and diagnostics figures from run directories (``mbdpo plot curves|diagnostics``)."""

from __future__ import annotations

from pathlib import Path

from mbdpo.analysis.runs import Run, reference_curve, seed_curve
from mbdpo.errors import ConfigError, MBDPOError

Groups = dict[tuple[str, str], list[Run]]  # (task, label) -> the seeds of one configuration
DIAGNOSTICS = {"cross_td_error_ema": "cross-TD error (EMA)", "policy_drift_ema": "policy drift (EMA)"}


def pyplot():
    """matplotlib's pyplot on a file-only backend, or a one-line error naming the extra to install."""
    try:
        import matplotlib
    except ImportError:
        raise MBDPOError("plotting needs matplotlib: pip install 'mbdpo[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, out: Path) -> list[Path]:
    """Write ``out`` as PNG and SVG; returns both paths."""
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [out.with_suffix(".png"), out.with_suffix(".svg")]
    for path in paths:
        figure.savefig(path, dpi=120, bbox_inches="tight")
    return paths


def colours_by_label(groups: Groups, references: list[str] = ()) -> dict[str, str]:
    """One colour per configuration and reference, the same in every panel."""
    labels = sorted({label for _, label in groups}) + [f"{name} (published)" for name in references]
    return {label: f"C{index % 10}" for index, label in enumerate(labels)}


def _draw_groups(ax, groups: Groups, task: str, source: str, column: str, colours: dict[str, str]) -> float:
    """Mean line and +-1 std band per group of ``task``; returns the last step drawn."""
    last = 0.0
    for (group_task, label), runs in groups.items():
        if group_task != task:
            continue
        curve = seed_curve([run.evals if source == "eval" else run.trains for run in runs], column)
        if not len(curve.steps):
            continue
        ax.plot(curve.steps, curve.mean, color=colours[label],
                label=f"{label} ({len(runs)} seed{'s' * (len(runs) > 1)})")
        if len(runs) > 1:
            ax.fill_between(curve.steps, curve.mean - curve.std, curve.mean + curve.std, color=colours[label],
                            alpha=0.2)
        last = max(last, float(curve.steps[-1]))
    return last


def _draw_reference(ax, algorithm: str, task: str, last_step: float, colours: dict[str, str]) -> None:
    """Published points up to ``last_step``, and at least up to the first one after step 0 (they come
    every 100k steps, so shorter runs still get one point to compare with)."""
    curve = reference_curve(algorithm, task)
    if curve is None:
        return
    shown = curve.steps <= max(last_step, curve.steps[min(1, len(curve.steps) - 1)])
    label = f"{algorithm} (published)"
    ax.errorbar(curve.steps[shown], curve.mean[shown], yerr=curve.std[shown], fmt="o--", capsize=3,
                color=colours[label], label=label)


def plot_curves(groups: Groups, out: Path, metric: str = "episode_reward", references: list[str] = ()) -> list[Path]:
    """One panel per task: ``metric`` of eval.csv, mean and spread over seeds, with published references."""
    columns = sorted({column for runs in groups.values() for run in runs for row in run.evals for column in row})
    if metric not in columns:
        raise ConfigError(f"metric={metric!r} is not an eval.csv column of these runs; valid: {', '.join(columns)}")
    plt = pyplot()
    tasks, colours = sorted({task for task, _ in groups}), colours_by_label(groups, references)
    figure, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        last = _draw_groups(ax, groups, task, "eval", metric, colours)
        for algorithm in references:
            _draw_reference(ax, algorithm, task, last, colours)
        ax.set(title=task, xlabel="environment step", ylabel=metric.replace("_", " "))
        ax.legend(fontsize=7)
    paths = save_figure(figure, out)
    plt.close(figure)
    return paths


def plot_diagnostics(groups: Groups, out: Path) -> list[Path]:
    """Cross-TD error and policy drift (train.csv) side by side, one row per task, one line per group."""
    plt = pyplot()
    tasks, colours = sorted({task for task, _ in groups}), colours_by_label(groups)
    figure, axes = plt.subplots(len(tasks), len(DIAGNOSTICS), figsize=(5 * len(DIAGNOSTICS), 3.5 * len(tasks)),
                                squeeze=False)
    for row, task in zip(axes, tasks):
        for ax, (column, title) in zip(row, DIAGNOSTICS.items()):
            if not _draw_groups(ax, groups, task, "train", column, colours):
                raise ConfigError(f"no run of {task} logged {column} (runs written before mbdpo logged diagnostics)")
            ax.set(title=f"{task}: {title}", xlabel="environment step")
            ax.legend(fontsize=7)
    figure.tight_layout()  # one row per task: keep titles clear of the axis labels above them
    paths = save_figure(figure, out)
    plt.close(figure)
    return paths
