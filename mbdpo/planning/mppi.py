"""TD-MPC2's planner: MPPI over imagined returns (ALGORITHM.md section 6).

With ``energy_eta=0`` this is exactly TD-MPC2's acting policy, so the two
methods can be compared from the same code.
"""

from __future__ import annotations

import torch

from mbdpo.config import Config
from mbdpo.model.world_model import WorldModel
from mbdpo.planning.base import Planner
from mbdpo.planning.rollout import imagined_return, policy_trajectories


class MPPIPlanner(Planner):
    def __init__(self, model: WorldModel, cfg: Config):
        super().__init__(model, cfg)
        self.iterations = cfg.mppi_iterations + (2 if cfg.action_dim >= 20 else 0)
        self.last_std: torch.Tensor | None = None

    @torch.no_grad()
    def plan(self, z: torch.Tensor, task: torch.Tensor | None = None, obs: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.cfg
        horizon, samples, num_pi = cfg.horizon, cfg.num_samples, cfg.num_pi_trajs
        mean = self.shifted_previous_plan(z.device)
        std = torch.full_like(mean, cfg.max_std)
        pi_actions = policy_trajectories(self.model, z, horizon, num_pi, task)[0].transpose(0, 1) if num_pi else None
        z_candidates = z.expand(samples, -1)
        task_candidates = None if task is None else task.expand(samples)
        mask = self.model.action_mask(task)
        for _ in range(self.iterations):
            noise = torch.randn(horizon, samples - num_pi, cfg.action_dim, device=z.device)
            actions = (mean.unsqueeze(1) + std.unsqueeze(1) * noise).clamp(-1, 1)
            if mask is not None:
                actions = actions * mask
            if pi_actions is not None:
                actions = torch.cat([pi_actions, actions], dim=1)
            returns = imagined_return(self.model, z_candidates, actions, cfg.energy_eta, task_candidates)
            elite_returns, elite_index = returns.squeeze(-1).topk(cfg.num_elites)
            elite_actions = actions[:, elite_index]
            weights = torch.softmax(cfg.mppi_temperature * elite_returns, dim=0)
            mean = torch.einsum("e,hea->ha", weights, elite_actions)
            variance = torch.einsum("e,hea->ha", weights, (elite_actions - mean.unsqueeze(1)) ** 2)
            std = variance.sqrt().clamp(cfg.min_std, cfg.max_std)
        chosen = elite_actions[:, torch.multinomial(weights, 1).squeeze(0)]
        self.previous_plan = mean
        self.last_std = std
        return chosen

    def exploration_std(self) -> torch.Tensor:
        """TD-MPC2 explores with the final sampling std of the first action."""
        return self.last_std[0]
