"""Objectives of the implicit energy function E(z, a) (paper eq. 9, ALGORITHM.md section 2).

E is trained contrastively on replay data so that it tracks log mu(a|z), the
log-density of the behaviour policy, up to a per-state constant. Added to the
imagined reward with weight eta, it keeps planning close to the data (a KL
trust region). Both objectives take latents ``z [N, L]`` that are already
detached from the encoder, and aligned actions ``a [N, A]`` (``a[i]`` was
taken in the state ``z[i]``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

EnergyFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def in_batch_negative_indices(n: int, k: int, device=None) -> torch.Tensor:
    """For each of ``n`` rows, ``k`` distinct indices of *other* rows ``[n, k]``.

    Row i gets (i + offset) mod n for k distinct offsets in [1, n), so a
    positive is never used as its own negative.
    """
    offsets = torch.randperm(n - 1, device=device)[:k] + 1
    return (torch.arange(n, device=device).unsqueeze(1) + offsets) % n


def infonce_energy_loss(energy: EnergyFn, z: torch.Tensor, action: torch.Tensor, num_negatives: int) -> torch.Tensor:
    """InfoNCE with in-batch negatives (paper eq. 9).

    For each pair (z_i, a_i) the candidates are a_i and the actions of
    ``num_negatives`` other states of the batch; the loss is
    -log softmax_j E(z_i, a_j) at the positive j = i.
    """
    n = z.shape[0]
    negatives = action[in_batch_negative_indices(n, num_negatives, z.device)]  # [n, k, A]
    candidates = torch.cat([action.unsqueeze(1), negatives], dim=1)  # [n, k+1, A]
    logits = energy(z.unsqueeze(1).expand(-1, num_negatives + 1, -1), candidates).squeeze(-1)
    return F.cross_entropy(logits, torch.zeros(n, dtype=torch.long, device=z.device))


def binary_energy_loss(
    energy: EnergyFn, z: torch.Tensor, action: torch.Tensor, policy_action: torch.Tensor, noise_std: float = 0.5
) -> torch.Tensor:
    """The reference implementation's objective: binary cross-entropy.

    The replay action is the positive (label 1). The negative (label 0) is the
    hardest of three proposals, the one the current head scores highest:
    a policy-prior sample, that sample plus N(0, noise_std^2), or a uniform
    action.
    """
    proposals = torch.stack(
        [
            policy_action,
            (policy_action + noise_std * torch.randn_like(policy_action)).clamp(-1, 1),
            torch.rand_like(policy_action) * 2 - 1,
        ],
        dim=1,
    )  # [n, 3, A]
    with torch.no_grad():
        scores = energy(z.unsqueeze(1).expand(-1, 3, -1), proposals).squeeze(-1)
    hardest = proposals[torch.arange(z.shape[0], device=z.device), scores.argmax(1)]
    positive, negative = energy(z, action), energy(z, hardest)
    return 0.5 * (
        F.binary_cross_entropy_with_logits(positive, torch.ones_like(positive))
        + F.binary_cross_entropy_with_logits(negative, torch.zeros_like(negative))
    )
