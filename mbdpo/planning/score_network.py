"""The amortised score network s_theta(z, x_tau, tau) (ALGORITHM.md section 5, paper eq. 16).

An MLP on ``[z, task embedding, flattened x_tau, sinusoidal embedding of tau]``.
It predicts the *scaled* score sqrt(1 - alpha_bar) * s, which is minus the
noise prediction of DDPM's epsilon-parameterisation. The raw score grows like
1 / sqrt(1 - alpha_bar) (about 1e2 at the last step of the paper's schedule)
and the denoised mean must be nearly the identity x_tau / sqrt(alpha_bar) at
small noise; the scaled score is O(1) at every step, which makes the
regression well conditioned. Through Tweedie's formula (eq. 12) it gives the
denoised mean a_bar = (x_tau + sqrt(1 - alpha_bar) * output) / sqrt(alpha_bar).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from mbdpo.config import Config
from mbdpo.model.layers import count_parameters, init_weights, mlp, zero_output_layer

TAU_EMBEDDING_DIM = 64


def sinusoidal_embedding(tau: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style embedding of integer diffusion steps ``tau [B]`` -> ``[B, dim]``."""
    half = dim // 2
    frequencies = torch.exp(-math.log(10_000) * torch.arange(half, device=tau.device) / half)
    angles = tau.float().unsqueeze(-1) * frequencies
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class ScoreNetwork(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.horizon, self.action_dim = cfg.horizon, cfg.action_dim
        plan_dim = cfg.horizon * cfg.action_dim
        inputs = cfg.latent_dim + cfg.task_dim + plan_dim + TAU_EMBEDDING_DIM
        self.net = mlp(inputs, [cfg.mlp_dim, cfg.mlp_dim], plan_dim)
        init_weights(self)
        zero_output_layer(self.net)
        # Gradient steps taken; 0 means untrained (acting with it is refused).
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def forward(
        self,
        z: torch.Tensor,
        x_tau: torch.Tensor,
        tau: torch.Tensor,
        task_embedding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scaled score ``[B, H, A]`` from latents ``z [B, L]``, inputs ``x_tau [B, H, A]`` and steps ``tau [B]``."""
        parts = [z, x_tau.flatten(1), sinusoidal_embedding(tau, TAU_EMBEDDING_DIM)]
        if task_embedding is not None:
            parts.insert(1, task_embedding)
        return self.net(torch.cat(parts, dim=-1)).view(-1, self.horizon, self.action_dim)

    @property
    def trained(self) -> bool:
        return bool(self.updates > 0)

    def parameter_count(self) -> int:
        return count_parameters(self)
