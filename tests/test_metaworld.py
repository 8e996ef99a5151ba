"""MetaWorld's 50 MT50 tasks (v3) as mw-<name>: creation, seeding, success, and a short training run."""

import numpy as np
import pytest

from mbdpo.envs import METAWORLD_TASKS, episode_length, make_env
from mbdpo.envs import metaworld as metaworld_suite
from tests.test_cli import TINY, mbdpo_in_process, rows

metaworld = pytest.importorskip("metaworld", reason="MetaWorld is optional: pip install 'mbdpo[metaworld]'")


def test_every_task_name_is_a_metaworld_v3_environment():
    assert len(METAWORLD_TASKS) == 50
    assert {metaworld_suite.env_name(task) for task in METAWORLD_TASKS} == set(metaworld.ALL_V3_ENVIRONMENTS)


@pytest.mark.parametrize("task", METAWORLD_TASKS)
def test_task_runs_and_seeds_repeat(task):
    env = make_env(task, seed=0)
    assert (env.episode_length, env.action_repeat) == (100, 2) and episode_length(task) == 100
    assert env.observation_space.shape == (39,) and env.action_space.shape == (4,)
    first, _ = env.reset(seed=3)
    assert first.dtype == np.float32
    rng = np.random.default_rng(0)
    for _ in range(3):
        obs, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, 4).astype(np.float32))
        assert obs.shape == (39,) and np.isfinite(reward) and not terminated and not truncated
        assert info["success"] in (0.0, 1.0)
    assert np.array_equal(first, env.reset(seed=3)[0])  # the same seed again, after the episode moved the arm
    env.close()


def test_goals_are_random_and_episodes_last_100_steps():
    env = make_env("mw-reach", seed=0)
    goals = {tuple(np.round(env.reset()[0][-3:], 4)) for _ in range(5)}
    assert len(goals) > 1  # the goal position is part of the observation
    for step in range(1, 101):
        *_, truncated, _ = env.step(np.zeros(4, np.float32))
        assert truncated == (step == 100)


@pytest.mark.slow
def test_a_short_run_on_a_metaworld_task_reports_success(tmp_path):
    result = mbdpo_in_process("train", *TINY, "task=mw-reach", "steps=600", "eval_freq=600", f"run_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    evals = rows(tmp_path / "eval.csv")
    assert [int(r["step"]) for r in evals] == [0, 600]
    assert all(0.0 <= float(r["episode_success"]) <= 1.0 and int(float(r["episode_length"])) == 100 for r in evals)
    assert '"discount": 0.95' in (tmp_path / "config.json").read_text()
