"""TD-MPC2's public multi-task data sets (mt30, mt80): a safe memory-mapped reader and a writer.

The public format (ALGORITHM.md section 7): files ``chunk_*.pt``, each a
TensorDict with batch shape ``[episodes, T]`` and keys

    obs     [E, T, obs_dim]  float, zero-padded to the set's largest task (24 for mt30, 39 for mt80)
    action  [E, T, A]        float, zero-padded (A = 6)
    reward  [E, T]           float
    task    [E, T]           integer index into the ordered task list (mbdpo.envs.task_sets)
    terminated [E, T]        optional

Row 0 of each episode holds the initial observation and NaN action/reward.

Reading never executes code from the file: ``torch.load(weights_only=True)``
with the two globals a pickled TensorDict names (its class and tensordict's
rebuild function) mapped to a plain holder defined here, so the tensordict
package is not even needed to read. (Once tensordict is imported, it
allow-lists its own classes for ``weights_only`` loading, and those rebuild a
real TensorDict, which is read the same way.) ``mmap=True`` maps the file instead of
reading it, so a data set larger than RAM costs only the pages that sampled
windows touch. Writing (``mbdpo collect``, the tests) uses tensordict itself,
so that files are exactly what TD-MPC2 writes.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mbdpo.checkpoint import save_atomically
from mbdpo.data.buffer import Batch
from mbdpo.errors import DatasetError, first_line, refused_global

REQUIRED_KEYS = ("obs", "action", "reward", "task")


class _TensorDictState:
    """What a pickled TensorDict rebuilds into here: its tensors and batch size, nothing else."""

    def __init__(self, tensors: dict[str, torch.Tensor], batch_size: tuple[int, ...]):
        self.tensors, self.batch_size = tensors, batch_size

    def __setstate__(self, state: dict) -> None:  # older tensordict versions pickle through __setstate__
        self.__init__(dict(state.get("_tensordict", {})), tuple(state.get("_batch_size", ())))


def _rebuild_tensordict(cls: type, state: dict) -> _TensorDictState:
    """Stands in for ``tensordict._reductions._make_td``: keeps the tensors, builds no TensorDict."""
    return _TensorDictState(dict(state.get("_tensordict", {})), tuple(state.get("_batch_size", ())))


_SAFE_GLOBALS = [
    (_rebuild_tensordict, "tensordict._reductions._make_td"),
    (_TensorDictState, "tensordict._td.TensorDict"),
    (_TensorDictState, "tensordict.tensordict.TensorDict"),
]


def read_chunk(path: Path) -> tuple[dict[str, torch.Tensor], tuple[int, ...]]:
    """The tensors of one chunk file (memory-mapped) and its batch shape; one-line errors for bad files."""
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as error:
        unknown = refused_global(error)
        reason = f"it names {unknown}, which is not allowed" if unknown else first_line(error)
        raise DatasetError(f"data file {str(path)!r} cannot be read safely ({reason})") from None
    if isinstance(payload, _TensorDictState):
        return payload.tensors, payload.batch_size
    if type(payload).__name__ == "TensorDict":  # tensordict, when imported, allow-lists its own classes first
        return {key: payload.get(key) for key in payload.keys()}, tuple(payload.batch_size)
    raise DatasetError(f"data file {str(path)!r} holds a {type(payload).__name__}, not a TensorDict of episodes")


@dataclass
class Chunk:
    """One validated chunk: memory-mapped tensors ``[E, T, ...]`` and each episode's task."""

    path: Path
    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor | None
    episode_task: torch.Tensor  # [E]

    @property
    def episodes(self) -> int:
        return self.obs.shape[0]

    @property
    def length(self) -> int:
        return self.obs.shape[1]


def load_chunk(path: Path, obs_dim: int, action_dim: int, num_tasks: int, horizon: int) -> Chunk:
    """Read and check one chunk against the task set's padded dimensions."""
    tensors, batch_size = read_chunk(path)
    name = str(path)
    missing = [key for key in REQUIRED_KEYS if key not in tensors]
    if missing:
        raise DatasetError(f"data file {name!r} lacks key {missing[0]!r}; it has {sorted(tensors)}, "
                           f"needs {', '.join(REQUIRED_KEYS)} (optional terminated)")
    if len(batch_size) != 2:
        raise DatasetError(f"data file {name!r} has batch shape {list(batch_size)}; expected [episodes, T]")
    episodes, length = batch_size
    expected = {"obs": (episodes, length, obs_dim), "action": (episodes, length, action_dim),
                "reward": (episodes, length), "task": (episodes, length), "terminated": (episodes, length)}
    for key, shape in expected.items():
        if key in tensors and tuple(tensors[key].shape) != shape:
            raise DatasetError(f"data file {name!r}: {key} has shape {list(tensors[key].shape)}; expected {list(shape)}"
                               f" (obs padded to {obs_dim}, actions to {action_dim} for this task set)")
    if length < horizon + 2:
        raise DatasetError(f"data file {name!r} has episodes of {length} rows; need at least horizon + 2 = {horizon + 2}")
    if tensors["task"].is_floating_point():
        raise DatasetError(f"data file {name!r}: task has dtype {tensors['task'].dtype}; expected an integer index")
    episode_task = tensors["task"][:, 0].clone()
    bad = (episode_task < 0) | (episode_task >= num_tasks)
    if bad.any():
        raise DatasetError(f"data file {name!r}: task id {int(episode_task[bad][0])} is outside the task set's "
                           f"0..{num_tasks - 1}")
    return Chunk(path, tensors["obs"], tensors["action"], tensors["reward"], tensors.get("terminated"), episode_task)


class OfflineDataset:
    """Every ``chunk_*.pt`` under ``data_dir``, sampled as windows of H+1 steps inside episodes.

    With ``world_size > 1`` (data-parallel training) each rank sees only the
    episodes whose global index is ``rank`` modulo ``world_size``.
    """

    def __init__(self, data_dir: str | Path, obs_dim: int, action_dim: int, num_tasks: int, horizon: int,
                 rank: int = 0, world_size: int = 1):
        directory = Path(data_dir)
        if not directory.is_dir():
            raise DatasetError(f"data_dir {str(directory)!r} is not a directory")
        files = sorted(directory.glob("chunk_*.pt"))
        if not files:
            raise DatasetError(f"data_dir {str(directory)!r} holds no chunk_*.pt files")
        self.horizon = horizon
        self.chunks = [load_chunk(path, obs_dim, action_dim, num_tasks, horizon) for path in files]
        # Chunk and index within it of every episode (millions in mt80, hence arrays), then this rank's share.
        counts = np.array([chunk.episodes for chunk in self.chunks])
        episode_chunk = np.repeat(np.arange(len(self.chunks)), counts)
        episode_index = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        self.episode_chunk, self.episode_index = episode_chunk[rank::world_size], episode_index[rank::world_size]
        if len(self.episode_chunk) == 0:
            raise DatasetError(f"data_dir {str(directory)!r} has {counts.sum()} episodes, fewer than {world_size} ranks")
        lengths = np.array([chunk.length for chunk in self.chunks])
        self.windows = lengths[self.episode_chunk] - 1 - horizon
        self.window_probability = self.windows / self.windows.sum()

    @property
    def num_transitions(self) -> int:
        """Transitions in the whole data set (every rank's share)."""
        return sum(chunk.episodes * (chunk.length - 1) for chunk in self.chunks)

    @property
    def nbytes(self) -> int:
        """Size of the mapped tensors: the disk the data set needs, not the RAM it uses."""
        tensors = [t for chunk in self.chunks for t in (chunk.obs, chunk.action, chunk.reward, chunk.terminated)
                   if t is not None]
        return sum(t.numel() * t.element_size() for t in tensors)

    def tasks(self) -> list[int]:
        """The task indices that occur in the data set, sorted."""
        return sorted({int(t) for chunk in self.chunks for t in chunk.episode_task.unique()})

    def sample(self, batch_size: int, rng: np.random.Generator, device: torch.device) -> Batch:
        """B windows, uniformly over all windows of this rank's episodes, as a time-major :class:`Batch`."""
        picks = rng.choice(len(self.episode_chunk), size=batch_size, p=self.window_probability)
        starts = (rng.random(batch_size) * self.windows[picks]).astype(np.int64)
        horizon = self.horizon
        obs = torch.empty(horizon + 1, batch_size, self.chunks[0].obs.shape[-1])
        action = torch.empty(horizon, batch_size, self.chunks[0].action.shape[-1])
        reward, terminated = torch.empty(horizon, batch_size, 1), torch.zeros(horizon, batch_size, 1)
        task = torch.empty(batch_size, dtype=torch.long)
        for c in np.unique(self.episode_chunk[picks]):
            rows = np.flatnonzero(self.episode_chunk[picks] == c)
            chunk = self.chunks[c]
            episode = torch.as_tensor(self.episode_index[picks[rows]]).unsqueeze(1)
            steps = torch.as_tensor(starts[rows]).unsqueeze(1) + torch.arange(horizon + 1)  # [b, H+1]
            obs[:, rows] = chunk.obs[episode, steps].float().transpose(0, 1)
            action[:, rows] = chunk.action[episode, steps[:, 1:]].float().transpose(0, 1)
            reward[:, rows] = chunk.reward[episode, steps[:, 1:]].float().T.unsqueeze(-1)
            if chunk.terminated is not None:
                terminated[:, rows] = chunk.terminated[episode, steps[:, 1:]].float().T.unsqueeze(-1)
            task[rows] = chunk.episode_task[episode.squeeze(1)]
        return Batch(obs=obs.to(device), action=action.to(device), reward=reward.to(device),
                     terminated=terminated.to(device), task=task.to(device))


def write_chunk(path: Path, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, task: np.ndarray,
                terminated: np.ndarray | None = None) -> None:
    """Write episodes as one public-format chunk (a TensorDict saved with ``torch.save``), atomically.

    ``obs [E, T, O]``, ``action [E, T, A]`` (row 0 NaN), ``reward [E, T]`` (row 0 NaN), ``task [E, T]``.
    """
    try:
        from tensordict import TensorDict
    except ImportError:
        raise DatasetError("writing data sets needs tensordict: pip install 'mbdpo[data]'") from None
    tensors = {"obs": torch.as_tensor(obs, dtype=torch.float32), "action": torch.as_tensor(action, dtype=torch.float32),
               "reward": torch.as_tensor(reward, dtype=torch.float32), "task": torch.as_tensor(task, dtype=torch.int64)}
    if terminated is not None:
        tensors["terminated"] = torch.as_tensor(terminated, dtype=torch.float32)
    save_atomically(path, TensorDict(tensors, batch_size=list(tensors["reward"].shape)))
