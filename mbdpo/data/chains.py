"""The most recent Monte-Carlo chains of the agent: the data of ``score_target=chain``.

The chains come from Monte-Carlo acting and, with ``score_replay_chains``,
from states drawn across the replay. Each row is one chain: the observation
it planned from, its task, the inputs x_tau its reverse chain visited
(tau = 0..N-1) and the final plan x_0 it returned. Rows live on the CPU; a
full memory overwrites its oldest rows.
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

    def add(self, obs: torch.Tensor, task: torch.Tensor, visited: torch.Tensor, plan: torch.Tensor) -> None:
        """Store B chains: ``obs [B, *obs_shape]``, ``task [B]``, ``visited [B, N, H, A]``, ``plan [B, H, A]``."""
        rows = (self.count + torch.arange(len(plan))) % self.capacity
        self.obs[rows], self.task[rows] = obs.cpu().to(self.obs.dtype), task.cpu()
        self.visited[rows], self.plan[rows] = visited.cpu(), plan.cpu()
        self.count += len(plan)

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
