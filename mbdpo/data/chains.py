"""The most recent Monte-Carlo chains the agent ran while acting: the data of ``score_target=chain``.

Each row is one planning call: the observation it planned from, its task,
the inputs x_tau its reverse chain visited (tau = 0..N-1) and the final
plan x_0 it returned. Rows live on the CPU; a full memory overwrites its
oldest row.
"""

from __future__ import annotations

import torch


class ChainMemory:
    def __init__(self, capacity: int, obs_shape: tuple[int, ...], steps: int, horizon: int, action_dim: int,
                 obs_dtype: torch.dtype = torch.float32):
        self.capacity = capacity
        self.obs = torch.zeros(capacity, *obs_shape, dtype=obs_dtype)
        self.task = torch.zeros(capacity, dtype=torch.long)
        self.visited = torch.zeros(capacity, steps, horizon, action_dim)
        self.plan = torch.zeros(capacity, horizon, action_dim)
        self.count = torch.zeros((), dtype=torch.long)  # rows ever added

    def __len__(self) -> int:
        return int(min(self.count, self.capacity))

    def add(self, obs: torch.Tensor, task: int, visited: torch.Tensor, plan: torch.Tensor) -> None:
        """Store one chain: ``obs [*obs_shape]``, ``visited [N, H, A]``, ``plan [H, A]``."""
        row = int(self.count % self.capacity)
        self.obs[row], self.task[row] = obs.cpu(), task
        self.visited[row], self.plan[row] = visited.cpu(), plan.cpu()
        self.count += 1

    def sample(self, size: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        """``size`` rows, uniformly with replacement: (obs, task, visited, plan) on ``device``."""
        rows = torch.randint(len(self), (size,))
        return tuple(t[rows].to(device) for t in (self.obs, self.task, self.visited, self.plan))

    def state_dict(self) -> dict[str, torch.Tensor]:
        size = len(self)
        return {"obs": self.obs[:size], "task": self.task[:size], "visited": self.visited[:size],
                "plan": self.plan[:size], "count": self.count}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        size = len(state["plan"])
        for name in ("obs", "task", "visited", "plan"):
            getattr(self, name)[:size] = state[name]
        self.count = state["count"].clone()
