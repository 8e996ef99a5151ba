"""Data-parallel training: K processes with gloo give the parameters of one process on the combined batch."""

import os
import signal
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp

from mbdpo.agent import Agent
from mbdpo.config import Config
from mbdpo.data.buffer import Batch
from mbdpo.training.distributed import process_group
from tests.test_cli import mbdpo_in_process, rows, signal_once_logged
from tests.test_multitask import TASKS, TINY, random_batch

# Settings that make one update deterministic, so that the two runs can be compared exactly: both Q heads are
# the sampled pair, no dropout, a policy std of e^-10, and no energy objective (its negatives are per process).
DETERMINISTIC = {**TINY, "num_q": 2, "dropout": 0.0, "log_std_min": -10.0, "log_std_max": -10.0, "energy_coef": 0.0}
BATCH = 16


def make_agent(sync=None) -> Agent:
    torch.manual_seed(0)
    return Agent(Config.from_overrides(DETERMINISTIC).resolve_multitask(TASKS), torch.device("cpu"), sync)


def combined_batch() -> Batch:
    torch.manual_seed(1)
    return random_batch(make_agent(), torch.tensor([0, 1, 2, 1] * (BATCH // 4)))


def shard(batch: Batch, rank: int, world: int) -> Batch:
    rows = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    return Batch(obs=batch.obs[:, rows], action=batch.action[:, rows], reward=batch.reward[:, rows],
                 terminated=batch.terminated[:, rows], task=batch.task[rows])


def worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    sync = process_group(torch.device("cpu"))
    agent = make_agent(sync)
    agent.update(shard(combined_batch(), rank, world))
    stops = [sync.any(rank == world - 1), sync.any(False)]  # asked in the last process only; in none
    torch.save({"model": agent.model.state_dict(), "q_scale": agent.q_scale.value, "stops": stops}, f"{out}.{rank}")
    sync.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_mbdpo() -> tuple[str, ...]:
    """The arguments of ``python`` that start ``mbdpo`` in two torchrun processes, on a free port."""
    return ("-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port", str(free_port()), "-m", "mbdpo")


def test_two_gloo_processes_match_one_process_on_the_combined_batch(tmp_path):
    out = str(tmp_path / "state")
    mp.spawn(worker, args=(2, free_port(), out), nprocs=2, join=True)
    single = make_agent()
    before = {k: v.clone() for k, v in single.model.state_dict().items()}
    single.update(combined_batch())
    expected = single.model.state_dict()
    for rank in range(2):
        state = torch.load(f"{out}.{rank}", weights_only=True)
        for key, value in expected.items():
            assert torch.allclose(state["model"][key], value, atol=1e-5, rtol=1e-4), (rank, key)
        assert torch.allclose(state["q_scale"], single.q_scale.value)
        assert state["stops"] == [True, False]  # every process stops when one is asked to
    changed = [k for k, v in expected.items() if not torch.equal(v, before[k])]
    assert any(k.startswith("q_heads") for k in changed) and any(k.startswith("policy_head") for k in changed)


@pytest.mark.slow
def test_torchrun_trains_offline_with_two_processes_and_rank_zero_writes(tmp_path):
    from tests.test_multitask import TINY_CLI

    data = tmp_path / "data"
    collected = mbdpo_in_process("collect", "task=cartpole-swingup", "policy=random", "episodes=2", f"out={data}")
    assert collected.returncode == 0, collected.stderr
    result = subprocess.run(
        [sys.executable, *torchrun_mbdpo(), "train", "task=mt30", f"data_dir={data}", *TINY_CLI, "steps=40",
         "log_freq=20", "eval_freq=40", "eval_episodes=1", f"run_dir={tmp_path / 'run'}"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-6000:]  # the failing process's own lines precede torchrun's report
    assert result.stdout.count("x 2 processes") == 1  # one header: rank 0 speaks
    assert [int(r["step"]) for r in rows(tmp_path / "run" / "train.csv")] == [20, 40]
    assert [int(r["step"]) for r in rows(tmp_path / "run" / "eval.csv")] == [0, 40]
    # A SIGTERM to torchrun reaches every process; they stop at the same update, rank 0 checkpoints it.
    stopped_dir = tmp_path / "stopped"
    stopped = signal_once_logged(
        ["train", "task=mt30", f"data_dir={data}", *TINY_CLI, "steps=100000", "log_freq=10", "eval_freq=100000",
         "eval_episodes=1", f"run_dir={stopped_dir}"], stopped_dir / "train.csv", signal.SIGTERM,
        launcher=torchrun_mbdpo(), env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert stopped.returncode != 0
    step = torch.load(stopped_dir / "checkpoint.pt", weights_only=True)["step"]
    assert step >= 10 and stopped.stderr.count(f"stopped on SIGTERM at step {step:,}") == 2, stopped.stderr[-6000:]
    online = subprocess.run(
        [sys.executable, *torchrun_mbdpo(), "train", "task=cartpole-swingup", *TINY_CLI, "steps=10"],
        capture_output=True, text=True,
    )
    assert online.returncode != 0 and "is for offline multi-task runs" in online.stderr


def test_without_torchrun_there_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    group = process_group(torch.device("cpu"))
    values = torch.arange(3.0)
    assert group.world_size == 1 and group.gather(values) is values
