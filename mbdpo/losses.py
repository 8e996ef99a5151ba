"""World-model and policy losses as pure functions (ALGORITHM.md section 3).

Time-major shapes: H horizon, B batch. Every loss over the horizon is weighted
by rho^t and averaged over t (TD-MPC2 eq. 3; paper section 3).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mbdpo.model.functional import soft_cross_entropy


def horizon_weights(horizon: int, rho: float, device=None) -> torch.Tensor:
    """rho^t for t = 0..H-1, shaped ``[H]``."""
    return rho ** torch.arange(horizon, device=device, dtype=torch.float32)


def consistency_loss(predicted: torch.Tensor, target: torch.Tensor, rho: float) -> torch.Tensor:
    """(1/H) sum_t rho^t MSE(d-rolled z_{t+1}, h(o_{t+1})); inputs ``[H, B, L]``."""
    per_step = F.mse_loss(predicted, target, reduction="none").mean(dim=(1, 2))
    return (horizon_weights(len(per_step), rho, predicted.device) * per_step).mean()


def reward_loss(logits: torch.Tensor, reward: torch.Tensor, rho: float, vmin: float, vmax: float) -> torch.Tensor:
    """(1/H) sum_t rho^t CE(R(z_t, a_t), r_t); logits ``[H, B, bins]``, reward ``[H, B, 1]``."""
    per_step = soft_cross_entropy(logits, reward, vmin, vmax).mean(dim=(1, 2))
    return (horizon_weights(len(per_step), rho, logits.device) * per_step).mean()


def value_loss(logits: torch.Tensor, td_target: torch.Tensor, rho: float, vmin: float, vmax: float) -> torch.Tensor:
    """(1/(H K)) sum_{t,k} rho^t CE(Q_k(z_t, a_t), y_t); logits ``[K, H, B, bins]``."""
    per_step = soft_cross_entropy(logits, td_target.unsqueeze(0).expand(logits.shape[0], -1, -1, -1), vmin, vmax)
    per_step = per_step.mean(dim=(0, 2, 3))
    return (horizon_weights(len(per_step), rho, logits.device) * per_step).mean()


def termination_loss(logits: torch.Tensor, terminated: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of the termination head."""
    return F.binary_cross_entropy_with_logits(logits, terminated)


def td_target(reward: torch.Tensor, next_value: torch.Tensor, terminated: torch.Tensor, discount: float) -> torch.Tensor:
    """y_t = r_t + gamma (1 - term_t) Q_target(z'_t, pi(z'_t))."""
    return reward + discount * (1 - terminated) * next_value


def policy_loss(scaled_q: torch.Tensor, log_prob: torch.Tensor, rho: float, entropy_coef: float) -> torch.Tensor:
    """Maximise rho-weighted scaled Q + entropy_coef x entropy (TD-MPC2 eq. 4).

    ``scaled_q`` is Q_avg(z_t, pi(z_t)) divided by the running Q scale, with Q
    detached from the model; ``log_prob`` is the summed log-density of the
    sampled action, so its negation is the entropy scaled by action dims.
    Inputs ``[H+1, B, 1]``.
    """
    objective = (scaled_q - entropy_coef * log_prob).mean(dim=(1, 2))
    return -(horizon_weights(len(objective), rho, scaled_q.device) * objective).mean()
