"""Replay buffer of whole episodes (ALGORITHM.md section 7).

Each episode is stored as T+1 consecutive rows: row 0 holds the initial
observation (NaN action and reward, as in TD-MPC2's data sets), row t > 0 holds
the observation reached by ``action[t]`` and its ``reward[t]``. Rows live in one
preallocated ring of ``capacity`` rows; when it is full, the oldest episodes
are dropped. Sampling draws windows of H+1 observations that stay inside one
episode, uniformly over all valid windows.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mbdpo.errors import CheckpointError, first_line

# What a saved buffer file holds.
ARRAYS = ("obs", "action", "reward", "terminated", "episode_start", "episode_rows", "counters")


def shape_text(shape: tuple[int, ...]) -> str:
    """``(3,)`` -> ``3``, ``(9, 64, 64)`` -> ``9x64x64``."""
    return "x".join(str(size) for size in shape)


@dataclass
class Batch:
    """Windows of H+1 steps, time-major.

    obs ``[H+1, B, obs_dim]`` (or ``[H+1, B, C, 64, 64]`` ``uint8`` frames); action, reward, terminated ``[H, B, ·]``:
    ``action[t]`` leads from ``obs[t]`` to ``obs[t+1]`` and earns ``reward[t]``.
    """

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    task: torch.Tensor | None = None

    def states(self, part: slice) -> "Batch":
        """The windows ``part`` of the batch (its second axis)."""
        return Batch(self.obs[:, part], self.action[:, part], self.reward[:, part], self.terminated[:, part],
                     None if self.task is None else self.task[part])


class ReplayBuffer:
    """Episodes in a ring of ``capacity`` rows.

    The arrays are zero-initialised, which the operating system commits
    lazily: rows cost memory once written, so a large capacity is free until
    it fills.
    """

    def __init__(self, capacity: int, obs_shape: int | tuple[int, ...], action_dim: int, horizon: int,
                 obs_dtype: type = np.float32):
        """``obs_shape``: one observation's shape (an int for a vector); images are stored as ``obs_dtype=np.uint8``."""
        self.capacity, self.horizon = capacity, horizon
        shape = (obs_shape,) if isinstance(obs_shape, int) else tuple(obs_shape)
        self.obs = np.zeros((capacity, *shape), dtype=obs_dtype)
        self.action = np.zeros((capacity, action_dim), dtype=np.float32)
        self.reward = np.zeros((capacity,), dtype=np.float32)
        self.terminated = np.zeros((capacity,), dtype=np.float32)
        self.episode_start = np.zeros((0,), dtype=np.int64)  # first row of each stored episode
        self.episode_rows = np.zeros((0,), dtype=np.int64)  # T + 1 of each stored episode
        self.next_row = 0
        self.num_transitions_added = 0

    @property
    def nbytes(self) -> int:
        return self.obs.nbytes + self.action.nbytes + self.reward.nbytes + self.terminated.nbytes

    @property
    def num_transitions(self) -> int:
        return int((self.episode_rows - 1).sum())

    def add_episode(
        self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, terminated: np.ndarray
    ) -> None:
        """Store one episode: obs ``[T+1, O]``, action ``[T, A]``, reward and terminated ``[T]``."""
        rows = len(obs)
        if rows > self.capacity:
            raise ValueError(f"an episode of {rows} rows does not fit a buffer of {self.capacity} rows")
        if self.next_row + rows > self.capacity:
            self.next_row = 0
        start, stop = self.next_row, self.next_row + rows
        overlaps = (self.episode_start < stop) & (self.episode_start + self.episode_rows > start)
        self.episode_start, self.episode_rows = self.episode_start[~overlaps], self.episode_rows[~overlaps]
        self.obs[start:stop] = obs
        self.action[start] = np.nan
        self.reward[start] = np.nan
        self.terminated[start] = 0.0
        self.action[start + 1 : stop] = action
        self.reward[start + 1 : stop] = reward
        self.terminated[start + 1 : stop] = terminated
        self.episode_start = np.append(self.episode_start, start)
        self.episode_rows = np.append(self.episode_rows, rows)
        self.next_row = stop
        self.num_transitions_added += rows - 1

    def sample(self, batch_size: int, rng: np.random.Generator, device: torch.device) -> Batch:
        """B windows of H+1 rows, each inside one episode, as a time-major :class:`Batch`."""
        windows = self.episode_rows - self.horizon  # valid window starts per episode
        usable = windows > 0
        if not usable.any():
            raise RuntimeError(f"no stored episode is longer than the horizon {self.horizon}")
        counts = np.where(usable, windows, 0)
        episode = rng.choice(len(counts), size=batch_size, p=counts / counts.sum())
        offset = (rng.random(batch_size) * counts[episode]).astype(np.int64)
        rows = (self.episode_start[episode] + offset)[None, :] + np.arange(self.horizon + 1)[:, None]  # [H+1, B]

        def tensor(array: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(array, device=device)

        return Batch(
            obs=tensor(self.obs[rows]),
            action=tensor(self.action[rows[1:]]),
            reward=tensor(self.reward[rows[1:]])[..., None],
            terminated=tensor(self.terminated[rows[1:]])[..., None],
        )

    # --- persistence (numpy .npz, loaded without pickle) -------------------------
    @property
    def rows_used(self) -> int:
        return int((self.episode_start + self.episode_rows).max()) if len(self.episode_start) else 0

    def save(self, path: Path) -> None:
        """Write the used rows atomically; a buffer of any capacity that fits them can load the file."""
        used = self.rows_used
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(
                f, obs=self.obs[:used], action=self.action[:used], reward=self.reward[:used],
                terminated=self.terminated[:used], episode_start=self.episode_start,
                episode_rows=self.episode_rows, counters=np.array([self.next_row, self.num_transitions_added]),
            )
        tmp.replace(path)

    def load(self, path: Path) -> None:
        """Read a file written by :meth:`save`; a missing, corrupt or mismatched file is a :class:`CheckpointError`."""
        if not path.is_file():
            raise CheckpointError(f"replay buffer {str(path)!r} does not exist")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in ARRAYS}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
            raise CheckpointError(f"replay buffer {str(path)!r} is truncated or corrupt ({first_line(error)})") from None
        used, obs_shape = len(arrays["obs"]), arrays["obs"].shape[1:]
        action_dim = arrays["action"].shape[1]
        if used > self.capacity or obs_shape != self.obs.shape[1:] or action_dim != self.action.shape[1]:
            raise CheckpointError(
                f"replay buffer {str(path)!r} holds {used} rows of obs {shape_text(obs_shape)} / action {action_dim}; "
                f"this run has {self.capacity} rows of obs {shape_text(self.obs.shape[1:])} / action "
                f"{self.action.shape[1]}"
            )
        for key in ("obs", "action", "reward", "terminated"):
            getattr(self, key)[:used] = arrays[key]
        self.episode_start, self.episode_rows = arrays["episode_start"], arrays["episode_rows"]
        self.next_row, self.num_transitions_added = (int(v) for v in arrays["counters"])
