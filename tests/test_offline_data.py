"""The public data-set format: writing, safe memory-mapped reading, sampling, and bad files."""

from pathlib import Path

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from mbdpo.data.collect import padded_arrays
from mbdpo.data.offline import OfflineDataset, write_chunk
from mbdpo.envs import make_env
from mbdpo.envs.task_sets import MT30, MT80, TASK_SHAPES
from mbdpo.errors import DatasetError
from mbdpo.training.evaluate import Episode

HORIZON = 3


def numbered_episodes(episodes: int, rows: int, task_of_episode) -> dict[str, np.ndarray]:
    """Arrays in the public layout whose values say where they come from: obs[e, t] = 1000 e + t,
    action[e, t] = -(1000 e + t), reward[e, t] = t / 1000; row 0 NaN action and reward."""
    where = 1000 * np.arange(episodes)[:, None] + np.arange(rows)[None, :]
    obs = np.repeat(where[..., None], 24, axis=-1).astype(np.float32)
    action = np.repeat(-where[..., None], 6, axis=-1).astype(np.float32)
    reward = (np.arange(rows)[None, :] / 1000 + np.zeros((episodes, 1))).astype(np.float32)
    action[:, 0], reward[:, 0] = np.nan, np.nan
    task = np.repeat(np.array([task_of_episode(e) for e in range(episodes)])[:, None], rows, axis=1)
    return {"obs": obs, "action": action, "reward": reward, "task": task}


def test_written_chunks_read_back_as_windows_inside_episodes(tmp_path):
    write_chunk(tmp_path / "chunk_0.pt", **numbered_episodes(4, 11, lambda e: e % 2))
    write_chunk(tmp_path / "chunk_1.pt", **numbered_episodes(3, 11, lambda e: 7))
    dataset = OfflineDataset(tmp_path, obs_dim=24, action_dim=6, num_tasks=30, horizon=HORIZON)
    assert dataset.num_transitions == 7 * 10 and dataset.tasks() == [0, 1, 7]
    batch = dataset.sample(256, np.random.default_rng(0), torch.device("cpu"))
    assert batch.obs.shape == (HORIZON + 1, 256, 24) and batch.action.shape == (HORIZON, 256, 6)
    assert batch.reward.shape == batch.terminated.shape == (HORIZON, 256, 1) and batch.task.shape == (256,)
    start = batch.obs[0, :, 0]
    episode, step = start // 1000, start % 1000
    # consecutive rows of one episode; action[t] and reward[t] lead from obs[t] to obs[t+1]
    assert torch.equal(batch.obs[:, :, 0], start + torch.arange(HORIZON + 1).unsqueeze(1))
    assert torch.equal(batch.action[:, :, 0], -batch.obs[1:, :, 0])
    assert torch.allclose(batch.reward[..., 0], (step + torch.arange(1, HORIZON + 1).unsqueeze(1)) / 1000)
    assert step.max() <= 10 - HORIZON and not torch.isnan(batch.action).any()
    # each window's task is its episode's: which chunk it came from shows in the task
    assert set(batch.task.tolist()) == {0, 1, 7}
    assert ((batch.task == 7) | (batch.task == episode.long() % 2)).all()


def test_ranks_sample_disjoint_episodes(tmp_path):
    write_chunk(tmp_path / "chunk_0.pt", **numbered_episodes(6, 11, lambda e: 0))
    seen = []
    for rank in range(2):
        dataset = OfflineDataset(tmp_path, 24, 6, 30, HORIZON, rank=rank, world_size=2)
        batch = dataset.sample(200, np.random.default_rng(rank), torch.device("cpu"))
        seen.append(set((batch.obs[0, :, 0] // 1000).long().tolist()))
    assert seen == [{0, 2, 4}, {1, 3, 5}]


def anonymous_rss_bytes() -> int:
    """Resident memory the process owns (RssAnon). Pages of a memory-mapped file that sampling touched
    are resident too, but file-backed (RssFile): the kernel drops them under memory pressure."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no RssAnon in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
def test_a_memory_mapped_chunk_does_not_grow_rss_by_its_size(tmp_path):
    episodes, rows = 2000, 501  # ~130 MB, the shape of mt30 episodes
    arrays = numbered_episodes(episodes, rows, lambda e: e % 30)
    write_chunk(tmp_path / "chunk_0.pt", **arrays)
    del arrays
    size = (tmp_path / "chunk_0.pt").stat().st_size
    before = anonymous_rss_bytes()
    dataset = OfflineDataset(tmp_path, 24, 6, 30, HORIZON)
    rng = np.random.default_rng(0)
    for _ in range(20):
        dataset.sample(256, rng, torch.device("cpu"))
    grown = anonymous_rss_bytes() - before
    assert size > 100e6 and grown < 0.2 * size, (grown, size)


def test_task_shapes_match_the_real_environments():
    for task in MT30:
        env = make_env(task, 0)
        shape = TASK_SHAPES[task]
        assert (env.observation_space.shape[0], env.action_space.shape[0]) == (shape.obs_dim, shape.action_dim), task
        env.close()
    assert len(MT30) == 30 and len(MT80) == 80 and len(set(MT80)) == 80
    assert MT80[:30] == MT30 and MT30[10] == "cartpole-swingup" and MT80[30] == "mw-assembly"


def test_collected_episodes_are_padded_with_nan_first_rows():
    episode = Episode(observations=np.ones((4, 5), np.float32), actions=np.full((3, 1), 0.5, np.float32),
                      rewards=np.arange(3.0), terminals=np.zeros(3), success=0.0)
    arrays = padded_arrays([episode, episode], obs_dim=24, action_dim=6, task=10)
    assert arrays["obs"].shape == (2, 4, 24) and arrays["obs"][0, 0, :5].tolist() == [1.0] * 5
    assert not arrays["obs"][..., 5:].any() and np.isnan(arrays["action"][:, 0]).all()
    assert arrays["action"][0, 1].tolist() == [0.5, 0, 0, 0, 0, 0] and arrays["reward"][0, 1:].tolist() == [0, 1, 2]
    assert (arrays["task"] == 10).all()


class RunsCode:
    """Unpickling this would create a file: a data file must never be able to do that."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


@pytest.mark.parametrize("problem, message", [
    ("missing key", "lacks key 'reward'"),
    ("wrong obs size", "obs has shape [2, 11, 17]; expected [2, 11, 24]"),
    ("task out of range", "task id 30 is outside the task set's 0..29"),
    ("short episodes", "episodes of 4 rows"),
    ("not a tensordict", "holds a dict, not a TensorDict"),
    ("corrupt", "cannot be read safely"),
    ("runs code", "cannot be read safely (it names getattr, which is not allowed)"),
])
def test_malformed_chunks_are_one_line_errors_naming_the_file(tmp_path, problem, message):
    path = tmp_path / "chunk_0.pt"
    arrays = numbered_episodes(2, 11, lambda e: 0)
    if problem == "missing key":
        torch.save(TensorDict({k: torch.as_tensor(v) for k, v in arrays.items() if k != "reward"}, [2, 11]), path)
    elif problem == "wrong obs size":
        arrays["obs"] = arrays["obs"][..., :17]
        write_chunk(path, **arrays)
    elif problem == "task out of range":
        arrays["task"][1] = 30
        write_chunk(path, **arrays)
    elif problem == "short episodes":
        write_chunk(path, **{k: v[:, :4] for k, v in arrays.items()})
    elif problem == "not a tensordict":
        torch.save({k: torch.as_tensor(v) for k, v in arrays.items()}, path)
    elif problem == "corrupt":
        write_chunk(path, **arrays)
        path.write_bytes(path.read_bytes()[:300])
    else:
        torch.save({"obs": RunsCode(str(tmp_path / "pwned"))}, path, pickle_protocol=2)
    with pytest.raises(DatasetError) as error:
        OfflineDataset(tmp_path, 24, 6, 30, HORIZON)
    text = str(error.value)
    assert message in text and str(path) in text and "\n" not in text
    assert not (tmp_path / "pwned").exists()


def test_a_missing_or_empty_data_dir_is_named(tmp_path):
    with pytest.raises(DatasetError, match="is not a directory"):
        OfflineDataset(tmp_path / "absent", 24, 6, 30, HORIZON)
    with pytest.raises(DatasetError, match="holds no chunk_"):
        OfflineDataset(tmp_path, 24, 6, 30, HORIZON)
