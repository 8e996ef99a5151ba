"""Any Gymnasium environment as task gym:<id>: rescaled actions, terminated vs truncated, episodic mode."""

import gymnasium
import numpy as np
import pytest

from mbdpo.envs import episode_length, make_env
from mbdpo.errors import UnknownTaskError
from tests.test_cli import TINY, mbdpo_in_process, rows


def test_actions_in_unit_range_reach_the_environment_rescaled_and_seeds_repeat():
    env = make_env("gym:Pendulum-v1", seed=3)  # torque bounds [-2, 2]
    raw = gymnasium.make("Pendulum-v1")
    first, _ = env.reset(seed=5)
    assert np.array_equal(first, env.reset(seed=5)[0]) and first.dtype == np.float32 and first.shape == (3,)
    raw.reset(seed=5)
    for unit, torque in [(1.0, 2.0), (-0.5, -1.0), (0.25, 0.5)]:
        obs, reward, terminated, truncated, info = env.step(np.array([unit], np.float32))
        expected, expected_reward, *_ = raw.step(np.array([torque], np.float32))
        assert np.allclose(obs, expected) and reward == pytest.approx(expected_reward)
        assert not terminated and not truncated and info["success"] == 0.0
    assert env.episode_length == 200 == episode_length("gym:Pendulum-v1") and env.action_repeat == 1


def test_termination_is_told_apart_from_the_time_limit():
    assert not make_env("gym:Pendulum-v1", 0).can_terminate
    assert make_env("gym:MountainCarContinuous-v0", 0).can_terminate
    hopper = make_env("gym:Hopper-v5", 0)
    assert hopper.can_terminate and hopper.observation_space.shape == (11,) and hopper.action_space.shape == (3,)
    hopper.reset(seed=0)
    rng = np.random.default_rng(0)
    for step in range(1000):
        _, _, terminated, truncated, _ = hopper.step(rng.uniform(-1, 1, 3).astype(np.float32))
        if terminated or truncated:
            break
    assert terminated and not truncated and step < 999  # random actions make the hopper fall


@pytest.mark.parametrize("task, message", [
    ("gym:CartPole-v1", "has a Discrete action space; mbdpo needs continuous (Box) actions"),
    ("gym:Pendulm-v1", "did you mean 'Pendulum-v1'"),
])
def test_unusable_gymnasium_tasks_are_named(task, message):
    with pytest.raises(UnknownTaskError) as error:
        make_env(task, 0)
    assert message in str(error.value)


@pytest.mark.slow
def test_a_short_run_on_a_terminating_gymnasium_task_switches_on_the_termination_head(tmp_path):
    result = mbdpo_in_process("train", *TINY, "task=gym:Hopper-v5", "steps=700", "eval_freq=700", f"run_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    assert '"episodic": true' in (tmp_path / "config.json").read_text()
    lengths = [int(r["episode_length"]) for r in rows(tmp_path / "train.csv")]
    assert sum(lengths) >= 700 and max(lengths) < 1000  # episodes end when the hopper falls
    assert [int(r["step"]) for r in rows(tmp_path / "eval.csv")][0] == 0
    assert "termination_loss" in rows(tmp_path / "train.csv")[-1]
