"""The interface every planner implements."""

from __future__ import annotations

import torch

from mbdpo.config import Config
from mbdpo.model.world_model import WorldModel


class Planner:
    """Chooses actions by searching with the world model.

    Subclasses implement :meth:`plan`, which returns an action sequence
    ``[H, A]`` for one latent state (and may take the observation it was
    encoded from: the score network of ``score_state=observation`` does). A
    planner may remember its last plan to warm-start the next one;
    :meth:`reset` forgets it at an episode start.
    """

    def __init__(self, model: WorldModel, cfg: Config):
        self.model = model
        self.cfg = cfg
        self.previous_plan: torch.Tensor | None = None

    def reset(self) -> None:
        self.previous_plan = None

    def plan(self, z: torch.Tensor, task: torch.Tensor | None = None, obs: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def exploration_std(self) -> torch.Tensor | float:
        """Standard deviation of the Gaussian noise added to actions while training."""
        return self.cfg.explore_std

    @torch.no_grad()
    def act(self, z: torch.Tensor, task: torch.Tensor | None = None, explore: bool = False,
            obs: torch.Tensor | None = None) -> torch.Tensor:
        """First action of a new plan for latent ``z [1, L]`` (encoded from ``obs [1, ·]``), with exploration
        noise if asked."""
        action = self.plan(z, task, obs)[0]
        if explore:
            action = action + self.exploration_std() * torch.randn_like(action)
        return action.clamp(-1, 1)

    def shifted_previous_plan(self, device: torch.device) -> torch.Tensor:
        """The previous plan moved one step forward, zero-padded (zeros at an episode start)."""
        if self.previous_plan is None:
            return torch.zeros(self.cfg.horizon, self.cfg.action_dim, device=device)
        return shifted(self.previous_plan)


def shifted(plans: torch.Tensor) -> torch.Tensor:
    """Plans ``[..., H, A]`` moved one step forward, zero-padded at the end."""
    return torch.cat([plans[..., 1:, :], torch.zeros_like(plans[..., :1, :])], dim=-2)
