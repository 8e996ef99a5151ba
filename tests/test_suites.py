"""MyoSuite, ManiSkill (against a stand-in simulator) and the messages for suites that are missing."""

import importlib.util

import gymnasium
import imageio.v2 as imageio
import numpy as np
import pytest
from gymnasium import spaces

import mbdpo
from mbdpo.config import Config
from mbdpo.envs import MANISKILL_TASKS, MYOSUITE_TASKS, TASKS, available, episode_length, make_env, maniskill
from mbdpo.errors import MissingSuiteError
from tests.test_cli import TINY, mbdpo as run_cli, mbdpo_in_process, rows

# The observation sizes the README documents; every MyoSuite hand task has 39 muscle actions.
MYOSUITE_OBSERVATIONS = {"reach": 115, "pose": 108, "obj-hold": 91, "key-turn": 93, "pen-twirl": 83}


def step_randomly(env: gymnasium.Env, steps: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        yield env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))


@pytest.mark.parametrize("task", MYOSUITE_TASKS)
def test_every_myosuite_task_runs_and_seeds_repeat(task):
    pytest.importorskip("myosuite", reason="MyoSuite is optional: pip install 'mbdpo[myosuite]'")
    env = make_env(task, seed=0)
    size = MYOSUITE_OBSERVATIONS[task.removeprefix("myo-").removesuffix("-hard")]
    assert env.observation_space.shape == (size,) and env.action_space.shape == (39,)
    first, _ = env.reset(seed=3)
    assert first.dtype == np.float32 and np.array_equal(first, make_env(task, seed=0).reset(seed=3)[0])
    for obs, reward, terminated, truncated, info in step_randomly(env, 3):
        assert obs.shape == (size,) and np.isfinite(reward) and not terminated and not truncated
        assert info["success"] in (0.0, 1.0)
    env.close()


def test_myosuite_episodes_last_100_steps_and_hard_targets_move():
    pytest.importorskip("myosuite", reason="MyoSuite is optional: pip install 'mbdpo[myosuite]'")
    assert episode_length("myo-key-turn") == 100  # MyoSuite's own limit for key-turn is 200
    env = make_env("myo-key-turn", seed=0)
    env.reset()
    ends = [truncated for *_, truncated, _ in step_randomly(env, 100)]
    assert ends == [False] * 99 + [True]
    for task, moves in (("myo-reach", False), ("myo-reach-hard", True)):
        env = make_env(task, seed=0)
        targets = {tuple(np.round(env.reset()[0][-54:-39], 4)) for _ in range(3)}  # fingertip-to-target vectors
        assert (len(targets) > 1) == moves, task


class StandInManiSkill(gymnasium.Env):
    """What ManiSkill's CPUGymWrapper gives for one state-observation task: a 42-number observation,
    7 end-effector actions, ``terminated`` and ``info["success"]`` when the cube reaches the goal.
    Here the "cube" is a point moved by the first three actions."""

    def __init__(self):
        self.observation_space = spaces.Box(-np.inf, np.inf, (42,), np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, (7,), np.float32)
        self.simulator_steps = 0

    def observation(self) -> np.ndarray:
        return np.concatenate([self.position, self.goal, np.zeros(36)]).astype(np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position, self.goal = self.np_random.uniform(-0.2, 0.2, (2, 3))
        return self.observation(), {}

    def step(self, action):
        assert action.shape == (7,) and np.all(np.abs(action) <= 1.0)
        self.simulator_steps += 1
        self.position = self.position + 0.05 * action[:3]
        success = np.linalg.norm(self.position - self.goal) < 0.05
        return self.observation(), float(-np.linalg.norm(self.position - self.goal)), success, False, {
            "success": np.bool_(success), "fail": np.bool_(False), "elapsed_steps": self.simulator_steps}


@pytest.fixture
def stand_in_maniskill(monkeypatch):
    monkeypatch.setattr(maniskill, "make_maniskill", lambda task: StandInManiSkill())


def test_maniskill_wrapper_repeats_actions_and_ends_episodes_on_success(stand_in_maniskill):
    env = make_env("pick-cube", seed=0)
    assert env.observation_space.shape == (42,) and env.action_space.shape == (7,) and env.can_terminate
    first, _ = env.reset(seed=1)
    assert np.array_equal(first, make_env("pick-cube", seed=0).reset(seed=1)[0])
    following, _ = env.reset()  # continues the stream of seed 1; the constructor's seed 0 is not used
    fresh = make_env("pick-cube", seed=0)
    fresh.reset(seed=1)
    assert np.array_equal(following, fresh.reset()[0])
    assert not np.array_equal(following, make_env("pick-cube", seed=0).reset()[0])
    obs, reward, terminated, truncated, info = env.step(np.full(7, 5.0, np.float32))  # clipped to 1
    assert env._env.simulator_steps == 2 and info["success"] == 0.0 and not terminated
    for _ in range(200):  # walk straight to the goal
        toward = np.clip((obs[3:6] - obs[:3]) / 0.05, -1, 1)
        obs, reward, terminated, truncated, info = env.step(np.concatenate([toward, np.zeros(4)]).astype(np.float32))
        if terminated:
            break
    assert terminated and not truncated and info["success"] == 1.0
    env.reset()
    ends = [(terminated, truncated) for _, _, terminated, truncated, _ in
            (env.step(np.zeros(7, np.float32)) for _ in range(100))]
    assert ends[-1] == (False, True) and not any(map(any, ends[:-1]))  # a cube that never moves: 100 steps


@pytest.mark.slow
def test_a_maniskill_task_trains_in_episodic_mode(stand_in_maniskill, tmp_path):
    overrides = dict(item.split("=", 1) for item in TINY)
    cfg = Config.from_overrides({**overrides, "task": "pick-cube", "steps": "300", "seed_steps": "200",
                                 "eval_freq": "300", "run_dir": str(tmp_path)})
    mbdpo.train(cfg)
    assert '"episodic": true' in (tmp_path / "config.json").read_text()
    evals = rows(tmp_path / "eval.csv")
    assert [int(r["step"]) for r in evals] == [0, 300]
    assert all(0.0 <= float(r["episode_success"]) <= 1.0 for r in evals)


@pytest.mark.parametrize("task, package, extra", [("mw-reach", "metaworld", "metaworld"),
                                                  ("myo-reach", "myosuite", "myosuite"),
                                                  ("stack-cube", "mani_skill", "maniskill")])
def test_a_missing_suite_names_the_extra_to_install(monkeypatch, task, package, extra):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == package
                        else find_spec(name, *args))
    assert not available(task) and available("walker-walk")
    with pytest.raises(MissingSuiteError, match=fr"^task '{task}' needs {package}, which is not installed: "
                                                fr"pip install 'mbdpo\[{extra}\]'$"):
        make_env(task, 0)


def test_every_maniskill_task_is_registered_and_lift_cube_names_its_replacement():
    assert set(MANISKILL_TASKS) == {"lift-cube", "pick-cube", "stack-cube", "pick-ycb", "turn-faucet"}
    assert set(MANISKILL_TASKS) <= set(TASKS) and episode_length("turn-faucet") == 100
    result = mbdpo_in_process("train", "task=lift-cube", "progress=false")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "mbdpo: error: task 'lift-cube' was ManiSkill 2's LiftCube-v0, which ManiSkill 3 does not have; "
        "the nearest ManiSkill 3 task is 'pick-cube'"]


@pytest.mark.slow
def test_a_short_run_on_a_myosuite_task_reports_success(tmp_path):
    pytest.importorskip("myosuite", reason="MyoSuite is optional: pip install 'mbdpo[myosuite]'")
    result = run_cli("train", *TINY, "task=myo-reach", "steps=300", "seed_steps=200", "eval_freq=300",
                     "save_video=true", f"run_dir={tmp_path}")
    assert result.returncode == 0, result.stderr
    evals = rows(tmp_path / "eval.csv")
    assert [int(r["step"]) for r in evals] == [0, 300]
    assert all(0.0 <= float(r["episode_success"]) <= 1.0 and int(float(r["episode_length"])) == 100 for r in evals)
    for step in (0, 300):  # the first evaluation episode of each evaluation, every frame of it
        frames = imageio.mimread(tmp_path / "videos" / f"{step}.mp4", memtest=False)
        assert len(frames) == 101 and frames[0].shape == (256, 256, 3)


def test_videos_without_their_writer_are_refused_before_the_run_starts(monkeypatch, tmp_path):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "imageio_ffmpeg"
                        else find_spec(name, *args))
    cfg = Config.from_overrides({"task": "cartpole-balance", "save_video": "true", "run_dir": str(tmp_path / "run")})
    with pytest.raises(MissingSuiteError, match=r"^save_video=true needs imageio_ffmpeg, which is not installed: "
                                                r"pip install 'mbdpo\[video\]'$"):
        mbdpo.train(cfg)
    assert not (tmp_path / "run").exists()
