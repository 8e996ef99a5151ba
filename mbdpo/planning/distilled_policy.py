"""The distilled policy of ``score_sampler=policy``: Monte Carlo's first action, regressed on the state.

The amortisation with the fewest parts: a network shaped as the policy
prior (an MLP on ``[z, task embedding]`` to a pre-tanh mean and a log-std, of
which only the mean is used), started from the prior's weights at its first
update, then trained only to regress the first action of the plans Monte Carlo
returned at stored states (:func:`distillation_loss`). It acts with one call,
no chain and no rollouts.

Where the score network regresses Monte Carlo's denoiser at every diffusion
step (paper eq. 16), this regresses the sampler's end point at the chain's
start, as ``score_sampler=jump`` does, but without the random chain start as an
input (which says nothing of the plan), on the acted action alone, and from
the prior's weights rather than new ones. On the frozen 20k walker-walk model
where the score network acted at 85 % of Monte Carlo and the jump network at
76 %, such copies of the prior fitted on Monte Carlo's first actions at the
replay's 20,040 states acted at 98 % (benchmarks/NOTES.md, "The regression
on the 20k model of the network run").
"""

from __future__ import annotations

import torch
import torch.nn as nn

from mbdpo.config import Config
from mbdpo.model.layers import count_parameters, mlp
from mbdpo.model.world_model import WorldModel


def distillation_loss(actions: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Squared error between the policy's mean actions ``[B, A]`` and Monte Carlo's first actions ``[B, A]``,
    summed over the action, averaged over B. Its minimiser is E[a_MC | z]: at a state, the mean of the
    actions Monte Carlo plans there, as the score network's regression (eq. 16) converges to the mean of
    its targets."""
    return (actions - labels).pow(2).sum(-1).mean()


class DistilledPolicy(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.horizon, self.action_dim = cfg.horizon, cfg.action_dim
        self.net = mlp(cfg.latent_dim + cfg.task_dim, [cfg.mlp_dim, cfg.mlp_dim], 2 * cfg.action_dim)
        # Gradient steps taken; 0 means untrained (acting with it is refused), and the first step starts
        # from the prior's weights (start_from_prior).
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def start_from_prior(self, model: WorldModel) -> None:
        """Copy the policy prior's weights (same shape): the regression starts from what the prior does."""
        self.net.load_state_dict(model.policy_head.state_dict())

    def actions(self, model: WorldModel, z: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """The mean action ``[B, A]`` at latents ``z [B, L]``: tanh of the pre-tanh mean, the dimensions a
        task does not use zeroed (as the prior's, :meth:`WorldModel.mean_action`)."""
        mean, _ = self.net(model.inputs(z, task=task)).chunk(2, dim=-1)
        return model.mean_action(mean, task)

    def plans(self, model: WorldModel, z: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """Plans ``[B, H, A]`` to act on: the mean action first, zeros after (only the first action is
        acted and nothing is rolled out)."""
        first = self.actions(model, z, task)
        rest = first.new_zeros(len(first), self.horizon - 1, self.action_dim)
        return torch.cat([first.unsqueeze(1), rest], dim=1)

    @property
    def trained(self) -> bool:
        return bool(self.updates > 0)

    def parameter_count(self) -> int:
        return count_parameters(self)
