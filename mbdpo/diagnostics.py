"""The paper's diagnostics of search/value alignment (ALGORITHM.md section 9, Fig. 3, 21, 22).

Measured on the actions the acting policy (the planner) actually chose, so
that MBDPO and TD-MPC2 (``planner=mppi``) can be compared on the same terms:

- **cross-TD error**: |Q(z_t, a_t) - (r_t + gamma (1 - d_t) Qbar(z_{t+1}, pi(z_{t+1})))|,
  the TD error of the learned Q on the acting policy's pairs, against the TD
  target built with the policy prior. Q and the target Qbar average all
  ensemble heads, and pi(z') is the prior's mean action, so the value is
  deterministic for a given episode.
- **policy drift**: ||a_t - mean pi(z_t)||, the distance between the acting
  action and the policy prior's mean.
- **prior log-density** log pi(a_t | z_t) of the acting action. A log-ratio
  log pi_act / pi would need the acting policy's density, which neither
  planner has in closed form (the diffusion planner's last step is
  deterministic, MPPI acts with one elite), so this is its prior half.

Each is a mean over one episode; :class:`ExponentialAverage` smooths them
over episodes for the logs.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mbdpo.model.functional import two_hot_decode
from mbdpo.model.world_model import WorldModel

# Actions at the bounds (clamped) have no finite pre-tanh value; they are read at this distance inside.
ACTION_BOUND_MARGIN = 1e-3
EMA_MOMENTUM = 0.9  # per episode


def mean_q(
    model: WorldModel, z: torch.Tensor, action: torch.Tensor, task: torch.Tensor | None = None, target: bool = False
) -> torch.Tensor:
    """Q averaged over all ensemble heads (online or target), ``[T]``."""
    logits = model.q_logits(z, action, task, target=target)
    return two_hot_decode(logits, model.cfg.vmin, model.cfg.vmax).mean(0).squeeze(-1)


def cross_td_errors(
    model: WorldModel,
    z: torch.Tensor,
    action: torch.Tensor,
    reward: torch.Tensor,
    next_z: torch.Tensor,
    terminated: torch.Tensor,
    discount: float | torch.Tensor,
    task: torch.Tensor | None = None,
) -> torch.Tensor:
    """|Q(z, a) - (r + gamma (1 - d) Qbar(z', mean pi(z')))| per step, ``[T]`` (inputs ``[T, ...]``)."""
    _, next_policy = model.pi(next_z, task)
    next_value = mean_q(model, next_z, next_policy["mean"], task, target=True)
    target = reward + discount * (1 - terminated) * next_value
    return (mean_q(model, z, action, task) - target).abs()


def policy_drift(model: WorldModel, z: torch.Tensor, action: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
    """||a - mean pi(z)||_2 per step, ``[T]``."""
    _, policy = model.pi(z, task)
    return (action - policy["mean"]).norm(dim=-1)


def prior_log_prob(model: WorldModel, z: torch.Tensor, action: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
    """log pi(a | z) of the tanh-squashed Gaussian prior per step, ``[T]`` (over the task's action dimensions)."""
    mean, log_std = model.policy_distribution(z, task)
    action = action.clamp(-1 + ACTION_BOUND_MARGIN, 1 - ACTION_BOUND_MARGIN)
    pre_tanh = torch.atanh(action)
    gaussian = -0.5 * ((pre_tanh - mean) / log_std.exp()).pow(2) - log_std - 0.5 * math.log(2 * math.pi)
    per_dimension = gaussian - torch.log(1 - action.pow(2))
    mask = model.action_mask(task)
    return (per_dimension if mask is None else per_dimension * mask).sum(-1)


@torch.no_grad()
def episode_diagnostics(
    model: WorldModel,
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    terminals: np.ndarray,
    task: int | None = None,
) -> dict[str, float]:
    """Episode means of the three diagnostics, from ``observations [T+1, D]`` and ``actions [T, A]``,
    ``rewards [T]``, ``terminals [T]`` as the environment returned them (padded for a multi-task model,
    whose ``task`` index is then given). The discount is the model's (the task's)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device

    def tensor(array: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(array), dtype=torch.float32, device=device)

    steps = len(actions)
    every = None if task is None else torch.full((steps + 1,), task, dtype=torch.long, device=device)
    step_task = None if every is None else every[:-1]
    latents = model.encode(tensor(observations), every)
    z, next_z, action = latents[:-1], latents[1:], tensor(actions)
    discount = model.discount(step_task)
    discount = discount if step_task is None else discount.squeeze(-1)
    values = {
        "cross_td_error": cross_td_errors(model, z, action, tensor(rewards), next_z, tensor(terminals), discount,
                                          step_task),
        "policy_drift": policy_drift(model, z, action, step_task),
        "prior_log_prob": prior_log_prob(model, z, action, step_task),
    }
    model.train(was_training)
    return {name: float(value.mean()) for name, value in values.items()}


class ExponentialAverage:
    """EMA of named values over episodes: ``ema <- m ema + (1 - m) value``, started at the first value."""

    def __init__(self, momentum: float = EMA_MOMENTUM):
        self.momentum = momentum
        self.values: dict[str, float] = {}

    def update(self, values: dict[str, float]) -> dict[str, float]:
        """Fold in one episode's values; returns the smoothed values, keys suffixed ``_ema``."""
        for name, value in values.items():
            previous = self.values.get(name, value)
            self.values[name] = self.momentum * previous + (1 - self.momentum) * value
        return {f"{name}_ema": value for name, value in self.values.items()}
