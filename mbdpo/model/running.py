"""Running statistics kept as module buffers, so that checkpoints carry them."""

from __future__ import annotations

import torch
import torch.nn as nn


class RunningScale(nn.Module):
    """EMA of the 5-95 percentile range of a quantity (TD-MPC2's Q scale).

    Dividing by it makes the policy objective invariant to the reward scale.
    The scale is never below 1, so small values are not blown up.
    """

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate
        self.register_buffer("value", torch.ones(()))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        low, high = torch.quantile(x.detach().float().flatten(), torch.tensor([0.05, 0.95], device=x.device))
        spread = high - low
        if self.initialised:
            self.value.lerp_(spread, self.rate)
        else:
            self.value.copy_(spread)
            self.initialised.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / self.value.clamp(min=1.0)


class RunningMeanStd(nn.Module):
    """EMA mean and standard deviation, used to normalise energies for planning."""

    def __init__(self, momentum: float):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("var", torch.ones(()))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        batch_mean, batch_var = x.detach().float().mean(), x.detach().float().var(unbiased=False)
        if self.initialised:
            self.mean.lerp_(batch_mean, 1 - self.momentum)
            self.var.lerp_(batch_var, 1 - self.momentum)
        else:
            self.mean.copy_(batch_mean)
            self.var.copy_(batch_var)
            self.initialised.fill_(True)

    def normalise(self, x: torch.Tensor, clip: float) -> torch.Tensor:
        """(x - mean) / std, clipped to [-clip, clip]."""
        return ((x - self.mean) / (self.var.sqrt() + 1e-6)).clamp(-clip, clip)
