"""Replay buffer: windows stay inside episodes, the ring evicts old episodes, saving round-trips."""

import numpy as np
import pytest
import torch

from mbdpo.data.buffer import ReplayBuffer
from mbdpo.data.chains import ChainMemory
from mbdpo.errors import CheckpointError


def episode(index: int, length: int, obs_dim: int = 3):
    """An episode whose every value encodes (episode index, step) so that windows can be checked."""
    steps = np.arange(length + 1, dtype=np.float32)
    obs = np.stack([np.full(length + 1, index, np.float32), steps, np.zeros(length + 1, np.float32)], 1)
    action = (index + steps[1:, None] / 1000).astype(np.float32)
    reward = steps[1:].copy()
    return obs[:, :obs_dim], action, reward, np.zeros(length, np.float32)


def test_windows_stay_inside_one_episode_and_are_aligned():
    buffer = ReplayBuffer(1000, 3, 1, horizon=3)
    for i, length in enumerate([5, 9, 20]):
        buffer.add_episode(*episode(i, length))
    batch = buffer.sample(512, np.random.default_rng(0), torch.device("cpu"))
    assert batch.obs.shape == (4, 512, 3) and batch.action.shape == (3, 512, 1)
    assert batch.reward.shape == (3, 512, 1) and batch.terminated.shape == (3, 512, 1)
    episode_id = batch.obs[..., 0]
    assert (episode_id == episode_id[0]).all()  # one episode per window
    steps = batch.obs[..., 1]
    assert torch.equal(steps[1:] - steps[:-1], torch.ones(3, 512))  # consecutive rows
    # action[t] leads from obs[t] to obs[t+1] and earns reward[t] (= index of obs[t+1])
    assert torch.allclose(batch.action[..., 0], episode_id[1:] + steps[1:] / 1000)
    assert torch.equal(batch.reward[..., 0], steps[1:])
    assert not torch.isnan(batch.action).any()


def test_sampling_is_uniform_over_windows():
    buffer = ReplayBuffer(1000, 3, 1, horizon=3)
    buffer.add_episode(*episode(0, 4))  # 5 rows: 2 windows of 4 rows
    buffer.add_episode(*episode(1, 12))  # 13 rows: 10 windows
    batch = buffer.sample(20_000, np.random.default_rng(0), torch.device("cpu"))
    share = (batch.obs[0, :, 0] == 0).float().mean().item()
    assert share == pytest.approx(2 / 12, abs=0.015)


def test_ring_drops_the_oldest_episodes():
    buffer = ReplayBuffer(25, 3, 1, horizon=2)
    for i in range(4):
        buffer.add_episode(*episode(i, 9))  # 10 rows each
    assert buffer.num_transitions == 18  # only episodes 2 and 3 fit
    ids = buffer.sample(200, np.random.default_rng(0), torch.device("cpu")).obs[..., 0].unique()
    assert set(ids.tolist()) == {2.0, 3.0}
    assert buffer.num_transitions_added == 36


def test_save_and_load_into_a_larger_buffer(tmp_path):
    buffer = ReplayBuffer(100, 3, 1, horizon=3)
    for i in range(3):
        buffer.add_episode(*episode(i, 10))
    buffer.save(tmp_path / "buffer.npz")
    restored = ReplayBuffer(1000, 3, 1, horizon=3)
    restored.load(tmp_path / "buffer.npz")
    a = buffer.sample(64, np.random.default_rng(1), torch.device("cpu"))
    b = restored.sample(64, np.random.default_rng(1), torch.device("cpu"))
    assert torch.equal(a.obs, b.obs) and torch.equal(a.action, b.action)
    with pytest.raises(CheckpointError, match="obs 3"):
        ReplayBuffer(1000, 4, 1, horizon=3).load(tmp_path / "buffer.npz")
    (tmp_path / "broken.npz").write_bytes((tmp_path / "buffer.npz").read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        restored.load(tmp_path / "broken.npz")
    with pytest.raises(CheckpointError, match="^replay buffer '.*missing.npz' does not exist$"):
        restored.load(tmp_path / "missing.npz")


def chain_memory_holding(capacity: int, added: int) -> ChainMemory:
    """A memory of ``capacity`` after ``added`` chains, chain i's plan filled with i."""
    memory = ChainMemory(capacity, (2,), 3, 2, 1)
    for i in range(added):
        memory.add(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), torch.zeros(1, 3, 2, 1),
                   torch.full((1, 2, 1), float(i)))
    return memory


def stored_plans(memory: ChainMemory) -> list[int]:
    return [int(plan) for plan in memory.plan[:len(memory), 0, 0]]


def test_a_chain_memory_loads_into_another_capacity_as_its_newest_chains_oldest_first():
    saved = chain_memory_holding(5, 8).state_dict()  # wrapped: rows hold chains 5, 6, 7, 3, 4
    same = chain_memory_holding(5, 0)
    same.load_state_dict(saved)
    assert stored_plans(same) == [5, 6, 7, 3, 4] and int(same.count) == 8  # the same ring, as saved
    larger = chain_memory_holding(10, 0)
    larger.load_state_dict(saved)
    assert stored_plans(larger) == [3, 4, 5, 6, 7]  # never rows it was not given
    larger.add(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long), torch.zeros(1, 3, 2, 1), torch.full((1, 2, 1), 8.0))
    assert stored_plans(larger) == [3, 4, 5, 6, 7, 8]
    smaller = chain_memory_holding(3, 0)
    smaller.load_state_dict(saved)
    assert stored_plans(smaller) == [5, 6, 7]
    empty = chain_memory_holding(10, 0)
    empty.load_state_dict(chain_memory_holding(5, 0).state_dict())
    assert len(empty) == 0
