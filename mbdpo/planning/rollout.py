"""Imagined world-model rollouts shared by every planner."""

from __future__ import annotations

import functools
import os
import shutil

import torch

from mbdpo.errors import ConfigError
from mbdpo.model.world_model import WorldModel


def imagined_return(
    model: WorldModel,
    z: torch.Tensor,
    actions: torch.Tensor,
    energy_eta: float,
    task: torch.Tensor | None = None,
) -> torch.Tensor:
    """J = sum_t gamma^t r~(z_t, a_t) + gamma^H Q_avg(z_H, pi(z_H))  (paper eq. 10).

    ``r~ = R + eta * E_hat`` is the energy-regularised reward (paper eq. 8);
    with ``energy_eta = 0`` this is TD-MPC2's value estimate. gamma is the
    model's discount (per task in a multi-task model). In episodic models a
    predicted termination stops the sum. Differentiable in ``actions``: the
    planners call it without gradients, return guidance
    (:func:`plan_returns`) with them.

    Args:
        z: start latents ``[M, L]`` (one per candidate).
        actions: candidate action sequences ``[H, M, A]``.
        task: task indices ``[M]`` (multi-task models).
    Returns:
        ``[M, 1]``.

    With ``compile_rollouts=true`` it runs compiled (:func:`compiled_rollout`).
    """
    if model.cfg.compile_rollouts and not torch.compiler.is_compiling():
        return compiled_rollout()(model, z, actions, energy_eta, task)
    discount = model.discount(task)
    total = torch.zeros(z.shape[0], 1, device=z.device)
    weight = torch.ones_like(total)
    for action in actions:
        reward = model.predicted_reward(z, action, task)
        if energy_eta:
            reward = reward + energy_eta * model.normalised_energy(z, action, task)
        z = model.next(z, action, task)
        total = total + weight * reward
        weight = weight * discount
        if model.cfg.episodic:
            weight = weight * (model.termination(z, task) < 0).float()
    final_action, _ = model.pi(z, task)
    return total + weight * model.q_value(z, final_action, task, reduce="avg")


@functools.cache
def compiled_rollout():
    """:func:`imagined_return` compiled by ``torch.compile``, made at first use; each new shape of the
    candidates compiles once more (a few seconds on a CPU, then reused).

    On a CPU, inductor fuses each layer's LayerNorm and Mish into one loop: 1.2-1.6x faster actions
    (``benchmarks/speed.py``). Random draws (the policy prior's, the pair of Q heads) use PyTorch's
    eager generator, so a seed gives the same returns compiled or not, up to float rounding. Its
    pattern matcher is off: in PyTorch 2.13 it fails on this graph ("Not all inputs to pattern found
    in match.kwargs").
    """
    return torch.compile(imagined_return, options={"fallback_random": True, "pattern_matcher": False})


@torch.no_grad()
def candidate_returns(
    model: WorldModel,
    z: torch.Tensor,
    candidates: torch.Tensor,
    energy_eta: float,
    task: torch.Tensor | None = None,
) -> torch.Tensor:
    """Imagined returns of ``candidates [B, M, H, A]``, M action sequences for each latent of ``z [B, L]``.

    Returns ``[B, M]``.
    """
    batch, num = candidates.shape[:2]
    actions = candidates.flatten(0, 1).transpose(0, 1)  # [H, B*M, A]
    task = None if task is None else task.repeat_interleave(num, 0)
    returns = imagined_return(model, z.repeat_interleave(num, 0), actions, energy_eta, task)
    return returns.view(batch, num)


def plan_returns(
    model: WorldModel, z: torch.Tensor, plans: torch.Tensor, energy_eta: float, task: torch.Tensor | None = None
) -> torch.Tensor:
    """J of one plan per latent: ``plans [B, H, A]`` from ``z [B, L]`` -> ``[B]``, with gradients
    (freeze the model to have them reach the plans only)."""
    return imagined_return(model, z, plans.transpose(0, 1), energy_eta, task).squeeze(-1)


@torch.no_grad()
def policy_trajectories(
    model: WorldModel, z: torch.Tensor, horizon: int, num: int, task: torch.Tensor | None = None
) -> torch.Tensor:
    """``num`` action sequences per latent of ``z [B, L]``, sampled from the policy prior along its own
    imagined rollout. Returns ``[B, num, H, A]``."""
    batch = z.shape[0]
    z = z.repeat_interleave(num, 0)
    task = None if task is None else task.repeat_interleave(num, 0)
    actions = []
    for _ in range(horizon):
        action, _ = model.pi(z, task)
        actions.append(action)
        z = model.next(z, action, task)
    return torch.stack(actions, dim=1).view(batch, num, horizon, -1)


@torch.no_grad()
def policy_mean_plan(
    model: WorldModel, z: torch.Tensor, horizon: int, task: torch.Tensor | None = None
) -> torch.Tensor:
    """The policy prior's mean plan from each latent of ``z [B, L]``, before its tanh: at each step the
    mean of its Gaussian, the rollout continuing with the squashed mean action (H - 1 dynamics calls).
    Returns ``[B, H, A]``."""
    means = []
    for step in range(horizon):
        mean, _ = model.policy_distribution(z, task)
        means.append(mean)
        if step < horizon - 1:
            z = model.next(z, model.mean_action(mean, task), task)
    return torch.stack(means, dim=1)


def require_compiler(device: torch.device) -> None:
    """``compile_rollouts=true`` on a CPU: raise a one-line :class:`ConfigError` unless inductor finds a C++
    compiler (``$CXX``, g++ or clang++) to build its kernels with."""
    if device.type == "cpu" and not (os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")):
        raise ConfigError("compile_rollouts=true on a CPU needs a C++ compiler (g++ or clang++ on PATH, or $CXX); "
                          "none found: install one, or set compile_rollouts=false")
