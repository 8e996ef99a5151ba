"""Plots, latent embeddings and comparison reports, from generated run directories and a tiny agent."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mbdpo.agent import Agent
from mbdpo.analysis import latents
from mbdpo.analysis.compare import CompareOptions, final_mean, write_report
from mbdpo.analysis.runs import area_under_curve, find_runs, group_runs, reference_curve, seed_curve, write_csv
from mbdpo.config import Config
from mbdpo.envs.task_sets import MT30
from mbdpo.errors import ConfigError
from tests.test_cli import mbdpo_in_process

EVAL_STEPS = [0, 500, 1000, 1500]


def fake_run(path: Path, task: str, seed: int, slope: float, steps: list[int] = EVAL_STEPS, **settings) -> Path:
    """A run directory as training writes it (evaluated at ``steps``): config.json, eval.csv and train.csv."""
    path.mkdir(parents=True)
    config = {**Config().to_dict(), "task": task, "seed": seed, **settings}
    (path / "config.json").write_text(json.dumps(config))
    write_csv(path / "eval.csv", [{"step": s, "episode_reward": slope * s + seed, "episode_success": 0,
                                    "episode_length": 500, "elapsed": s / 10} for s in steps])
    write_csv(path / "train.csv", [{"step": s, "episode_reward": slope * s, "steps_per_second": 5.0 + seed,
                                     "cross_td_error": 1 / s, "cross_td_error_ema": 1 / s,
                                     "policy_drift": slope, "policy_drift_ema": slope} for s in steps[1:]])
    return path


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    for seed in (1, 2):
        fake_run(tmp_path / "cartpole-swingup" / "a" / str(seed), "cartpole-swingup", seed, 0.2, planner="diffusion")
        fake_run(tmp_path / "cartpole-swingup" / "b" / str(seed), "cartpole-swingup", seed, 0.1, planner="mppi",
                 energy_eta=0.0)
    return tmp_path


def test_runs_are_grouped_by_the_settings_that_differ_and_averaged_over_seeds(runs_dir):
    groups = group_runs(find_runs([str(runs_dir)]))
    assert sorted(groups) == [("cartpole-swingup", "energy_eta=0.0 planner=mppi"),
                              ("cartpole-swingup", "energy_eta=0.1 planner=diffusion")]
    diffusion = groups[("cartpole-swingup", "energy_eta=0.1 planner=diffusion")]
    curve = seed_curve([run.evals for run in diffusion], "episode_reward")
    assert curve.steps.tolist() == EVAL_STEPS
    assert np.allclose(curve.mean, [0.2 * s + 1.5 for s in EVAL_STEPS]) and np.allclose(curve.std, 0.5)
    assert area_under_curve(curve) == pytest.approx(0.2 * 750 + 1.5)  # mean of a straight line


def test_reference_curve_averages_the_published_seeds():
    curve = reference_curve("tdmpc2", "walker-walk")
    with open(Path(__file__).parent.parent / "mbdpo" / "reference" / "tdmpc2" / "walker-walk.csv") as f:
        at_100k = [float(r["reward"]) for r in csv.DictReader(f) if float(r["step"]) == 100_000]
    assert len(at_100k) == 3
    assert curve.mean[curve.steps.tolist().index(100_000)] == pytest.approx(np.mean(at_100k))
    assert reference_curve("tdmpc2", "no-such-task") is None
    with pytest.raises(ConfigError, match="unknown reference 'tdmpc3'; valid: mbdpo, tdmpc2"):
        reference_curve("tdmpc3", "walker-walk")


def test_plot_commands_write_png_and_svg(runs_dir, tmp_path):
    result = mbdpo_in_process("plot", "curves", str(runs_dir), "--reference", "mbdpo,tdmpc2", f"out={tmp_path / 'c'}")
    assert result.returncode == 0, result.stderr
    result = mbdpo_in_process("plot", "diagnostics", str(runs_dir / "cartpole-swingup"), f"out={tmp_path / 'd'}")
    assert result.returncode == 0, result.stderr
    for name in ("c.png", "c.svg", "d.png", "d.svg"):
        assert (tmp_path / name).stat().st_size > 5000


@pytest.mark.parametrize("args, fragment", [
    (["plot"], "needs a kind first, got nothing; valid: curves, diagnostics, latents, tasks"),
    (["plot", "curves", "/no/such/dir"], "run directory '/no/such/dir' does not exist"),
    (["plot", "curves", "."], "no run directory (with config.json and eval.csv) under '.'"),
    (["plot", "latents"], "needs checkpoint=PATH"),
    (["compare", "a=planner=mppi", "b=planner=mppi"], "are the same configuration"),
])
def test_bad_plot_and_compare_input_is_a_one_line_error(args, fragment, tmp_path):
    result = mbdpo_in_process(*args, cwd=tmp_path)
    assert result.returncode == 2 and fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_an_unknown_metric_is_a_one_line_error_naming_the_columns(runs_dir, tmp_path):
    result = mbdpo_in_process("plot", "curves", str(runs_dir), "metric=episode_rewrd", f"out={tmp_path / 'c'}")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "metric='episode_rewrd' is not an eval.csv column of these runs; valid: " in result.stderr
    assert "episode_reward" in result.stderr and not (tmp_path / "c.png").exists()


def test_compare_report_has_the_table_and_the_plots(runs_dir):
    report = write_report(CompareOptions(out=str(runs_dir), seeds="1,2", tasks="cartpole-swingup")).read_text()
    table = [line for line in report.splitlines() if line.startswith("| cartpole-swingup")]
    assert len(table) == 2
    a_row, b_row = (next(line for line in table if f"| {side}: " in line) for side in "AB")
    assert "| 301.5 ± 0.5 |" in a_row and "| 151.5 ± 0.5 |" in b_row  # final return over the two seeds
    assert "| 0.2 |" in a_row and "| 0.1 |" in b_row  # policy drift
    assert (runs_dir / "curves.png").exists() and (runs_dir / "diagnostics.png").exists()


def test_compare_report_cuts_a_task_at_the_step_all_its_runs_reached(tmp_path):
    for seed in (1, 2):
        fake_run(tmp_path / "cartpole-swingup" / "a" / str(seed), "cartpole-swingup", seed, 0.2, planner="diffusion")
    fake_run(tmp_path / "cartpole-swingup" / "b" / "1", "cartpole-swingup", 1, 0.1, steps=EVAL_STEPS[:3],
             planner="mppi", energy_eta=0.0)  # still training: evaluated up to 1,000 steps
    report = write_report(CompareOptions(out=str(tmp_path), seeds="1,2", tasks="cartpole-swingup")).read_text()
    a_row = next(line for line in report.splitlines() if line.startswith("| cartpole-swingup | A: "))
    assert "| 1,000 | 201.5 ± 0.5 |" in a_row  # A's last return at 1,000 steps, not at 1,500
    assert "Cut at the step all runs of the task reached: cartpole-swingup 1,000." in report
    assert "Cut at" not in write_report(CompareOptions(out=str(tmp_path / "cartpole-swingup" / "a"))).read_text()


def tiny_agent(num_tasks: int = 1) -> Agent:
    cfg = Config.from_overrides({"model_size": 1, "enc_dim": 32, "mlp_dim": 32, "latent_dim": 16, "num_samples": 16,
                                 "num_elites": 4, "num_pi_trajs": 2, "diffusion_steps": 2, "device": "cpu"})
    resolved = cfg.resolve_multitask(MT30[:num_tasks]) if num_tasks > 1 else cfg.resolve(5, 1, 500)
    return Agent(resolved, torch.device("cpu"))


@pytest.mark.slow
def test_latent_trajectories_are_embedded_per_episode_and_plotted(tmp_path):
    agent = tiny_agent()  # the default task, cartpole-swingup (5 observations, 1 action)
    episodes = latents.episode_latents(agent, episodes=2, seed=1)
    assert [z.shape for z in episodes] == [(501, 16), (501, 16)]
    states, times = latents.subsample(episodes, points=300)
    assert sum(len(z) for z in states) <= 300 and times[0][1] == 4
    embedded = latents.embed_trajectories(states, seed=1)
    assert [e.shape for e in embedded] == [(len(t), 2) for t in times]
    paths = latents.plot_trajectories(embedded, times, "cartpole-swingup", tmp_path / "latents", overlay=False)
    assert all(path.stat().st_size > 5000 for path in paths)


def test_task_embeddings_are_embedded_with_tsne_and_single_task_models_are_refused(tmp_path):
    embedded = latents.embed_tasks(tiny_agent(num_tasks=4), seed=0)
    assert embedded.shape == (4, 2) and np.isfinite(embedded).all()
    assert latents.plot_tasks(embedded, list(MT30[:4]), tmp_path / "tasks")[0].stat().st_size > 5000
    with pytest.raises(ConfigError, match="single-task: it has no task embeddings"):
        latents.embed_tasks(tiny_agent(), seed=0)


def test_final_diagnostics_average_the_last_quarter_of_the_run_even_if_it_logged_them_late():
    rows = [{"step": str(s), "policy_drift": ""} for s in range(12)]
    rows += [{"step": str(s), "policy_drift": str(s)} for s in range(12, 20)]
    assert final_mean(rows, "policy_drift") == pytest.approx(np.mean([15, 16, 17, 18, 19]))
    assert np.isnan(final_mean(rows[:10], "policy_drift"))
