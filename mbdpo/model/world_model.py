"""The TD-MPC2-style latent world model with MBDPO's energy head (ALGORITHM.md sections 1-2).

Components, all acting on SimNorm latent states z:
    encoder      h(o) -> z (an MLP of state observations, or convolutions of stacked frames with obs=rgb)
    dynamics     d(z, a) -> z'
    reward       R(z, a) -> two-hot logits
    Q ensemble   Q_k(z, a) -> two-hot logits, with Polyak-averaged targets
    policy prior pi(z) -> tanh-Gaussian action
    termination  T(z) -> logit (episodic tasks only)
    energy       E(z, a) -> scalar, approximates log mu(a|z) of the behaviour policy

In multi-task models (``cfg.num_tasks > 1``) a learned task embedding
(max-norm 1) is appended to the input of every component; every method then
takes ``task``, a tensor of task indices shaped like the batch dimensions.
Observations and actions are zero-padded to the largest task's; each task's
action mask keeps the policy (and every planner) to its first A_i action
dimensions, and each task has its own discount.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from mbdpo.config import Config
from mbdpo.model.functional import squash_log_std, squashed_gaussian_sample, two_hot_decode
from mbdpo.model.layers import (EnsembleMLP, SimNorm, conv_encoder, count_parameters, init_weights, mlp,
                                move_parameters_towards, zero_output_layer)
from mbdpo.model.running import RunningMeanStd


class WorldModel(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        hidden, simnorm = [cfg.mlp_dim, cfg.mlp_dim], SimNorm(cfg.simnorm_dim)
        obs, latent = cfg.obs_dim + cfg.task_dim, cfg.latent_dim + cfg.task_dim
        latent_action = latent + cfg.action_dim
        self.task_embedding = nn.Embedding(cfg.num_tasks, cfg.task_dim, max_norm=1) if cfg.task_dim else None
        if cfg.obs == "rgb":
            self.encoder = conv_encoder(cfg.obs_dim, cfg.latent_dim, output_activation=simnorm)
        else:
            self.encoder = mlp(obs, [cfg.enc_dim] * (cfg.num_enc_layers - 1), cfg.latent_dim,
                               output_activation=simnorm)
        self.dynamics = mlp(latent_action, hidden, cfg.latent_dim, output_activation=simnorm)
        self.reward_head = mlp(latent_action, hidden, cfg.num_bins)
        self.policy_head = mlp(latent, hidden, 2 * cfg.action_dim)
        self.q_heads = EnsembleMLP(cfg.num_q, latent_action, hidden, cfg.num_bins, dropout=cfg.dropout)
        self.energy_head = mlp(latent_action, hidden, 1)
        self.termination_head = mlp(latent, hidden, 1) if cfg.episodic else None
        self.energy_stats = RunningMeanStd(cfg.energy_momentum)
        init_weights(self)
        for head in (self.reward_head, self.q_heads, self.energy_head):
            zero_output_layer(head)
        self.target_q_heads = copy.deepcopy(self.q_heads).requires_grad_(False)
        if cfg.multitask:
            masks = torch.arange(cfg.action_dim) < torch.tensor(cfg.action_dims).unsqueeze(1)
            self.register_buffer("action_masks", masks.float())  # [num_tasks, A]
            self.register_buffer("discounts", torch.tensor(cfg.task_discounts))  # [num_tasks]

    # --- components -----------------------------------------------------------
    def inputs(self, *parts: torch.Tensor, task: torch.Tensor | None) -> torch.Tensor:
        """Concatenate ``parts`` and, in a multi-task model, the task embedding: the input of every head (and
        of the distilled policy, shaped as the prior's)."""
        if self.task_embedding is not None:
            embedding = self.task_embedding(task)
            parts = (*parts, embedding.expand(*parts[0].shape[:-1], -1))
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]

    def action_mask(self, task: torch.Tensor | None) -> torch.Tensor | None:
        """1 for the action dimensions of each ``task`` ``[..., A]``; ``None`` in a single-task model."""
        return self.action_masks[task] if self.cfg.multitask else None

    def discount(self, task: torch.Tensor | None) -> float | torch.Tensor:
        """The discount of each ``task`` ``[..., 1]``, or the run's discount in a single-task model."""
        return self.discounts[task].unsqueeze(-1) if self.cfg.multitask else self.cfg.discount

    def encode(self, obs: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """Latent states of observations ``[..., obs_dim]``, or of stacked frames ``[..., C, 64, 64]``."""
        if self.cfg.obs == "rgb":
            images = obs.reshape(-1, *obs.shape[-3:])
            return self.encoder(images).reshape(*obs.shape[:-3], self.cfg.latent_dim)
        return self.encoder(self.inputs(obs, task=task))

    def next(self, z: torch.Tensor, action: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        return self.dynamics(self.inputs(z, action, task=task))

    def reward(self, z: torch.Tensor, action: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """Reward logits ``[..., num_bins]``."""
        return self.reward_head(self.inputs(z, action, task=task))

    def predicted_reward(
        self, z: torch.Tensor, action: torch.Tensor, task: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Decoded reward prediction ``[..., 1]``."""
        return two_hot_decode(self.reward(z, action, task), self.cfg.vmin, self.cfg.vmax)

    def termination(self, z: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """Termination logit ``[..., 1]`` (episodic tasks only)."""
        return self.termination_head(self.inputs(z, task=task))

    def energy(self, z: torch.Tensor, action: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """Raw energy E(z, a) ``[..., 1]`` (paper eq. 9)."""
        return self.energy_head(self.inputs(z, action, task=task))

    def normalised_energy(
        self, z: torch.Tensor, action: torch.Tensor, task: torch.Tensor | None = None
    ) -> torch.Tensor:
        """E_hat = clip((E - mean) / std, -c, c) with running statistics, for planning."""
        return self.energy_stats.normalise(self.energy(z, action, task), self.cfg.energy_clip)

    def policy_distribution(
        self, z: torch.Tensor, task: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The policy prior's Gaussian before the tanh: ``mean`` and ``log_std``."""
        mean, raw_log_std = self.policy_head(self.inputs(z, task=task)).chunk(2, dim=-1)
        return mean, squash_log_std(raw_log_std, self.cfg.log_std_min, self.cfg.log_std_max)

    def mean_action(self, mean: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        """The action of the policy prior's pre-tanh ``mean`` ``[..., A]``: its tanh, with the dimensions
        each ``task`` does not use zeroed."""
        mask = self.action_mask(task)
        return torch.tanh(mean) if mask is None else torch.tanh(mean) * mask

    def pi(self, z: torch.Tensor, task: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Sample from the policy prior. Returns the action and ``mean``, ``log_prob``."""
        mean, log_std = self.policy_distribution(z, task)
        action, log_prob = squashed_gaussian_sample(mean, log_std, self.action_mask(task))
        return action, {"mean": self.mean_action(mean, task), "log_prob": log_prob}

    def q_logits(
        self,
        z: torch.Tensor,
        action: torch.Tensor,
        task: torch.Tensor | None = None,
        target: bool = False,
        members: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits of every Q head ``[num_q, ..., num_bins]``, or of the heads in ``members``."""
        heads = self.target_q_heads if target else self.q_heads
        return heads(self.inputs(z, action, task=task), members)

    def q_value(
        self,
        z: torch.Tensor,
        action: torch.Tensor,
        task: torch.Tensor | None = None,
        reduce: str = "avg",
        target: bool = False,
    ) -> torch.Tensor:
        """Min or mean of two randomly chosen Q heads, as scalars ``[..., 1]``."""
        pair = torch.randperm(self.cfg.num_q, device=z.device)[:2]
        values = two_hot_decode(self.q_logits(z, action, task, target, members=pair), self.cfg.vmin, self.cfg.vmax)
        return values.min(0).values if reduce == "min" else values.mean(0)

    def update_targets(self) -> None:
        """Polyak-average the Q heads into their targets (rate ``tau``)."""
        move_parameters_towards(self.target_q_heads, self.q_heads, self.cfg.tau)

    # --- reporting --------------------------------------------------------------
    def parameter_counts(self) -> dict[str, int]:
        """Trainable parameters per component (targets excluded)."""
        parts = {
            "task_embedding": self.task_embedding or nn.Identity(),
            "encoder": self.encoder,
            "dynamics": self.dynamics,
            "reward": self.reward_head,
            "policy": self.policy_head,
            "q_ensemble": self.q_heads,
            "energy": self.energy_head,
        }
        if self.termination_head is not None:
            parts["termination"] = self.termination_head
        counts = {name: count_parameters(module) for name, module in parts.items()}
        counts["total"] = sum(counts.values())
        return counts
