"""Environment cost of each suite on this machine: agent steps per second, and rendering for obs=rgb.

For each task, in one run: agent steps per second with uniformly random
actions (an agent step includes the task's action repeat and, for obs=rgb,
rendering and stacking a 64x64 frame), and frames per second of rendering
alone at 64x64 (the pixel observation) and 256x256 (evaluation videos).
Tasks whose suite is not installed, or cannot start here (ManiSkill without
Vulkan), are listed with the reason.

    OMP_NUM_THREADS=1 python benchmarks/env_speed.py --steps 500

Results: benchmarks/results/env_speed.csv.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from mbdpo.envs import make_env
from mbdpo.errors import MBDPOError

RESULTS = Path(__file__).resolve().parent / "results"
TASKS = [
    ("dmcontrol", "cartpole-swingup", "state"), ("dmcontrol", "walker-walk", "state"),
    ("dmcontrol", "humanoid-walk", "state"), ("dmcontrol", "dog-run", "state"),
    ("pixels", "cartpole-swingup", "rgb"), ("pixels", "walker-walk", "rgb"), ("pixels", "quadruped-walk", "rgb"),
    ("metaworld", "mw-reach", "state"), ("metaworld", "mw-assembly", "state"),
    ("myosuite", "myo-reach", "state"), ("myosuite", "myo-key-turn-hard", "state"),
    ("gymnasium", "gym:Hopper-v5", "state"), ("gymnasium", "gym:Pendulum-v1", "state"),
    ("maniskill", "pick-cube", "state"),
]


def steps_per_second(env, steps: int, rng: np.random.Generator) -> float:
    env.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape).astype(np.float32))
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def render_fps(env, size: int, frames: int) -> float:
    start = time.perf_counter()
    for _ in range(frames):
        env.unwrapped.render(size, size)
    return frames / (time.perf_counter() - start)


def measure(suite: str, task: str, obs: str, steps: int) -> dict[str, object]:
    row: dict[str, object] = {"suite": suite, "task": task, "obs": obs}
    try:
        env = make_env(task, seed=0, obs=obs)
    except MBDPOError as error:
        return {**row, "note": str(error)}
    row["action_repeat"] = env.action_repeat
    row["agent_steps_per_s"] = round(steps_per_second(env, steps, np.random.default_rng(0)), 1)
    if obs == "rgb":
        row["render_fps_64"] = round(render_fps(env, 64, steps // 5), 1)
        row["render_fps_256"] = round(render_fps(env, 256, steps // 5), 1)
    env.close()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    rows = [measure(suite, task, obs, args.steps) for suite, task, obs in TASKS]
    RESULTS.mkdir(exist_ok=True)
    fields = ["suite", "task", "obs", "action_repeat", "agent_steps_per_s", "render_fps_64", "render_fps_256", "note"]
    with open(RESULTS / "env_speed.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
