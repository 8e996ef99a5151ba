"""Tests of the environment layer, :mod:`mbdpo.envs`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mbdpo.envs import DMCONTROL_TASKS, MANISKILL_TASKS, METAWORLD_TASKS, MYOSUITE_TASKS, TASKS, episode_length, make_env
from mbdpo.envs.dmcontrol import CUSTOM_TASKS, DMControlEnv
from mbdpo.errors import UnknownTaskError


def _zero_action(env: DMControlEnv) -> np.ndarray:
    return np.zeros(env.action_space.shape, dtype=np.float32)


def _reward_in_state(
    task: str,
    qpos: dict[str, float] | None = None,
    qvel: dict[str, float] | None = None,
) -> float:
    """Reward of one zero-action step from the model's default pose, edited.

    ``qpos`` and ``qvel`` set named joint positions and velocities.
    """
    env = make_env(task, seed=0)
    env.reset()
    physics = env.physics
    with physics.reset_context():
        for joint, value in (qpos or {}).items():
            physics.named.data.qpos[joint] = value
        for joint, value in (qvel or {}).items():
            physics.named.data.qvel[joint] = value
    return env.step(_zero_action(env))[1]


# Names and lookup.


def test_task_lists() -> None:
    from mbdpo.envs.dmcontrol import use_headless_rendering

    use_headless_rendering()
    from mbdpo.envs.custom_tasks import BUILDERS

    assert len(DMCONTROL_TASKS) == len(set(DMCONTROL_TASKS)) == 39
    assert TASKS == DMCONTROL_TASKS + METAWORLD_TASKS + MYOSUITE_TASKS + MANISKILL_TASKS and len(set(TASKS)) == 104
    assert set(BUILDERS) == set(CUSTOM_TASKS)


def test_import_does_not_load_dm_control() -> None:
    code = "import sys, mbdpo.envs; assert 'dm_control' not in sys.modules"
    root = str(Path(__file__).resolve().parents[1])
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": root})


def test_unknown_task_error_names_the_task_and_suggests() -> None:
    with pytest.raises(UnknownTaskError) as error:
        make_env("walker-wlk", 0)
    message = str(error.value)
    assert "\n" not in message
    assert "'walker-wlk'" in message
    assert "'walker-walk'" in message
    with pytest.raises(UnknownTaskError, match="did you mean 'mt30', 'mt80'"):
        make_env("mt31", 0)
    with pytest.raises(UnknownTaskError, match=r"^unknown task 'zzz'; valid: a DMControl task .* task set "
                                               r"\(mt30, mt80\), all listed in the README section Tasks"):
        episode_length("zzz")


def test_episode_length() -> None:
    assert episode_length("walker-walk") == 500


# Every task.


@pytest.mark.parametrize("task", DMCONTROL_TASKS)
def test_task_runs(task: str) -> None:
    env = make_env(task, seed=0)
    assert env.task == task
    assert (env.episode_length, env.action_repeat) == (500, 2)
    assert env.observation_space.dtype == np.float32
    assert env.action_space.dtype == np.float32
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    env.action_space.seed(0)
    observation, _ = env.reset(seed=1)
    assert observation.dtype == np.float32
    assert observation.shape == env.observation_space.shape
    for _ in range(3):
        observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert observation.dtype == np.float32
        assert observation.shape == env.observation_space.shape
        assert isinstance(reward, float) and 0.0 <= reward <= 2.0
        assert not terminated and not truncated
        assert info["success"] == 0.0


# Seeding, episodes and actions.


def test_same_seed_same_first_observation() -> None:
    first, _ = make_env("walker-walk", seed=3).reset(seed=7)
    env = make_env("walker-walk", seed=5)
    env.reset()
    again, _ = env.reset(seed=7)
    other, _ = env.reset(seed=8)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_unseeded_reset_continues_the_constructor_seed() -> None:
    seeded = make_env("cartpole-swingup", seed=4)
    first, _ = seeded.reset()
    second, _ = seeded.reset()
    reference, _ = make_env("cartpole-swingup", seed=0).reset(seed=4)
    np.testing.assert_array_equal(first, reference)
    assert not np.array_equal(first, second)


def test_episode_truncates_after_500_steps() -> None:
    env = make_env("pendulum-swingup", seed=0)
    env.reset(seed=0)
    for step in range(1, 501):
        _, _, terminated, truncated, _ = env.step(_zero_action(env))
        assert not terminated
        assert truncated == (step == 500)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(_zero_action(env))


def test_step_before_reset_raises() -> None:
    with pytest.raises(RuntimeError, match="reset"):
        make_env("pendulum-swingup", seed=0).step(np.zeros(1))


def test_wrong_action_shape_raises() -> None:
    env = make_env("cheetah-run", seed=0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"\(6,\)"):
        env.step(np.zeros(5))


def test_actions_are_clipped_and_rescaled_to_the_control_range() -> None:
    env = make_env("quadruped-walk", seed=0)
    high = env.physics.model.actuator_ctrlrange[:, 1]
    assert not np.allclose(high, 1.0)  # The test needs a range other than [-1, 1].
    env.reset(seed=0)
    env.step(np.full(env.action_space.shape, 5.0))
    np.testing.assert_allclose(env.physics.data.ctrl, high)


# Custom tasks: rewards respond to the behaviour they describe.


def test_cheetah_run_backwards() -> None:
    assert _reward_in_state("cheetah-run-backwards", qvel={"rootx": -12.0}) > 1.9
    assert _reward_in_state("cheetah-run-backwards", qvel={"rootx": 12.0}) == 0.0
    assert _reward_in_state("cheetah-run-backwards") < 0.1


@pytest.mark.parametrize(
    ("pitch", "favoured", "other"),
    [
        (1.0, "cheetah-run-front", "cheetah-run-back"),
        (-1.0, "cheetah-run-back", "cheetah-run-front"),
    ],
)
def test_cheetah_run_on_one_foot(pitch: float, favoured: str, other: str) -> None:
    # Positive pitch tips the nose down: the cheetah is on its front foot.
    pose = {"rootz": 0.8, "rooty": pitch}
    running = _reward_in_state(favoured, qpos=pose, qvel={"rootx": 8.0})
    assert running > 1.9
    assert running > _reward_in_state(other, qpos=pose, qvel={"rootx": 8.0}) + 0.3
    assert _reward_in_state(favoured, qpos=pose) < running / 2


def test_cheetah_jump() -> None:
    assert _reward_in_state("cheetah-jump", qpos={"rootz": 0.8}) > 1.9
    assert _reward_in_state("cheetah-jump", qpos={"rootz": 0.8}, qvel={"rootx": 3.0}) < 1.8
    assert _reward_in_state("cheetah-jump") < 1.0


@pytest.mark.parametrize(
    ("task", "speed"), [("walker-walk-backwards", 1.0), ("walker-run-backwards", 8.0)]
)
def test_walker_backwards(task: str, speed: float) -> None:
    backwards = _reward_in_state(task, qvel={"rootx": -speed})
    assert backwards > 1.5
    assert _reward_in_state(task, qvel={"rootx": speed}) < backwards / 3


def test_hopper_hop_backwards() -> None:
    assert _reward_in_state("hopper-hop-backwards", qvel={"rootx": -2.0}) > 1.9
    assert _reward_in_state("hopper-hop-backwards", qvel={"rootx": 2.0}) == 0.0


@pytest.mark.parametrize("task", ["reacher-three-easy", "reacher-three-hard"])
def test_reacher_three(task: str) -> None:
    env = make_env(task, seed=0)
    assert env.action_space.shape == (3,)
    assert env.observation_space.shape == (8,)  # 3 positions, 2 to target, 3 velocities.
    env.reset(seed=0)
    physics = env.physics
    fingertip = physics.named.data.geom_xpos["finger", :2].copy()
    physics.named.model.geom_pos["target", :2] = fingertip + 0.3
    assert env.step(_zero_action(env))[1] == 0.0
    physics.named.model.geom_pos["target", :2] = fingertip
    assert env.step(_zero_action(env))[1] == 2.0


def test_cup_spin_mostly_starts_in_the_cup_and_rewards_nothing_there() -> None:
    env = make_env("cup-spin", seed=0)
    in_cup = []
    for seed in range(30):
        env.reset(seed=seed)
        in_cup.append(env.physics.in_target())
    assert 0.7 <= np.mean(in_cup) < 1.0
    env.reset(seed=in_cup.index(1.0))
    assert env.step(_zero_action(env))[1] == 0.0


def test_cup_spin_rewards_a_fast_ball_outside_the_cup() -> None:
    # Level with the cup's bottom, string nearly taut, moving along the circle.
    outside = {"ball_x": 0.28, "ball_z": 0.292}
    assert _reward_in_state("cup-spin", qpos=outside, qvel={"ball_z": 10.0}) > 1.0
    assert _reward_in_state("cup-spin", qpos=outside) < 0.1


def test_pendulum_spin() -> None:
    assert _reward_in_state("pendulum-spin", qvel={"hinge": -12.0}) > 1.9
    assert _reward_in_state("pendulum-spin", qvel={"hinge": 6.75}) == pytest.approx(1.5, abs=0.1)
    assert _reward_in_state("pendulum-spin") < 0.1
