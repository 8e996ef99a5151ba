"""The most recent Monte-Carlo chains of the agent: the data of ``score_target=chain``.

The chains come from Monte-Carlo acting and, with ``score_replay_chains``,
from states drawn across the replay. Each row is one chain: the observation
it planned from, its task, the inputs x_tau its reverse chain visited
(tau = 0..N-1) and the final plan x_0 it returned; an ``anchored`` memory
(``score_anchor=chain``) also keeps the policy prior's mean plan from that
state, computed by the same model as the chain. Rows live on the CPU; a full
memory overwrites its oldest rows.
"""

from __future__ import annotations

import torch


class ChainMemory:
    def __init__(self, capacity: int, obs_shape: tuple[int, ...], steps: int, horizon: int, action_dim: int,
                 obs_dtype: torch.dtype = torch.float32, anchored: bool = False):
        self.capacity = capacity
        self.obs = torch.zeros(capacity, *obs_shape, dtype=obs_dtype)
        self.task = torch.zeros(capacity, dtype=torch.long)
        self.visited = torch.zeros(capacity, steps, horizon, action_dim)
        self.plan = torch.zeros(capacity, horizon, action_dim)
        self.anchor = torch.zeros(capacity, horizon, action_dim) if anchored else None
        self.count = torch.zeros((), dtype=torch.long)  # rows ever added

    def __len__(self) -> int:
        return int(min(self.count, self.capacity))

    @property
    def anchored(self) -> bool:
        return self.anchor is not None

    def _fields(self) -> tuple[str, ...]:
        return ("obs", "task", "visited", "plan", "anchor") if self.anchored else ("obs", "task", "visited", "plan")

    def add(self, obs: torch.Tensor, task: torch.Tensor, visited: torch.Tensor, plan: torch.Tensor,
            anchor: torch.Tensor | None = None) -> None:
        """Store B chains: ``obs [B, *obs_shape]``, ``task [B]``, ``visited [B, N, H, A]``, ``plan [B, H, A]``,
        and in an anchored memory (only there) the prior's mean plan ``anchor [B, H, A]``."""
        if (anchor is not None) != self.anchored:
            raise ValueError(f"an {'anchored' if self.anchored else 'unanchored'} chain memory was given "
                             f"{'no anchor' if anchor is None else 'an anchor'}")
        rows = (self.count + torch.arange(len(plan))) % self.capacity
        self.obs[rows], self.task[rows] = obs.cpu().to(self.obs.dtype), task.cpu()
        self.visited[rows], self.plan[rows] = visited.cpu(), plan.cpu()
        if anchor is not None:
            self.anchor[rows] = anchor.cpu()
        self.count += len(plan)

    def sample(self, size: int, device: torch.device) -> tuple[torch.Tensor | None, ...]:
        """``size`` rows, uniformly with replacement: (obs, task, visited, plan, anchor) on ``device``;
        anchor is None in an unanchored memory."""
        rows = torch.randint(len(self), (size,))
        obs, task, visited, plan = (t[rows].to(device) for t in (self.obs, self.task, self.visited, self.plan))
        return obs, task, visited, plan, self.anchor[rows].to(device) if self.anchored else None

    def state_dict(self) -> dict[str, torch.Tensor]:
        size = len(self)
        return {**{name: getattr(self, name)[:size] for name in self._fields()}, "count": self.count}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load :meth:`state_dict`, into a memory of the same capacity or of another one."""
        if ("anchor" in state) != self.anchored:
            raise ValueError(f"saved chains {'with' if 'anchor' in state else 'without'} the prior's anchors do "
                             f"not fit an {'anchored' if self.anchored else 'unanchored'} memory (score_anchor)")
        saved = len(state["plan"])
        if saved == self.capacity:  # the same ring: every row keeps its place, the next is overwritten next
            rows, self.count = torch.arange(saved), state["count"].clone()
        else:  # another capacity (a fork, a fine-tuning run): the newest rows that fit, oldest first
            oldest_first = (torch.arange(saved) + state["count"]) % saved
            rows = oldest_first[-self.capacity:]
            self.count = torch.tensor(len(rows))
        for name in self._fields():
            getattr(self, name)[:len(rows)] = state[name][rows]
