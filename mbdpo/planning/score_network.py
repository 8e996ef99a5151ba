"""The amortised score network s_theta(z, x_tau, tau) (ALGORITHM.md section 5, paper eq. 16).

An MLP on ``[state, task embedding, flattened x_tau, sinusoidal embedding of tau]``
(``score_layers`` hidden layers of ``score_mlp_dim``, by default ``mlp_dim``) that
predicts the denoised mean a_bar = E[x_0 | x_tau, z]; the score follows
exactly from Tweedie's formula (eq. 12). The paper's reverse step (eq. 3) is
x_{tau-1} = sqrt(alpha_bar_{tau-1}) a_bar + noise, so an error in a_bar is
exactly the sampler's error at that step.

The Monte-Carlo a_bar lives between two regimes, and the output is a gated
mix of both:

    a_bar = g * clamp(x_tau / sqrt(alpha_bar), -1, 1) + (1 - g) * tanh(anchor + v)

- near identity (g -> 1): with little noise the proposals sit at
  x_tau / sqrt(alpha_bar) and a_bar barely moves them; an MLP cannot output
  the identity to the precision the sampler needs, the skip term can;
- teleport (g -> 0): when the policy-prior trajectories among the candidates
  dominate the elites, a_bar hardly depends on x_tau at all (on a trained
  cartpole model its correlation with x_tau is ~0.2); tanh(anchor + v) learns it.

The anchor is 0 (``score_anchor=none``) or, with ``score_anchor=prior|chain``,
the policy prior's mean plan before its tanh: the network then learns how
Monte Carlo departs from the prior, and inherits the prior's training on the
current model. Online the Monte-Carlo plans move away from what older chains
hold within ~1,000 steps (benchmarks/NOTES.md), and the prior follows them.
``prior`` trains with the current prior's plan from a stored chain's state,
so an old chain's target minus a newer prior is learned as the departure;
``chain`` trains with the prior's plan stored with the chain, made by the
same model as the chain, so the departure is measured within one model. Both
act around the current prior. That is also their limit: on two walker-walk
models where Monte Carlo's plans lie far from the prior's, new anchored
networks returned what the prior alone does, unanchored ones 70 % and 91 %
of Monte Carlo (benchmarks/NOTES.md, "Where the two chains part").

``score_anchor=input`` gives the network the current prior's plan (after its
tanh) as one more input instead, and leaves the output free: tanh(v). The
network sees what the current model prefers, which follows the model as it
trains, without being pulled back to it.

Both terms lie in [-1, 1], as the Monte-Carlo a_bar (a convex combination of
clamped actions) does.

With ``score_sampler=jump`` the network acts with one call, its a_bar at the
chain's start (tau = N-1), trained there alone on stored chains' final plans.
From the stochastic kernel's N(0, I) start that input says nothing of the
plan, so the gate learns to close and tanh(anchor + v) becomes a regression of
Monte Carlo's plan on the state: with ``score_anchor=prior``, the policy
prior's mean plan plus the learned departure.

The state is the encoder's latent z (``score_state=latent``, the paper's
s_theta(z, ...)) or the observation itself, symlog-squashed
(``score_state=observation``, state observations only). The latent moves
with the encoder at every update, so a network on z must follow its input
space as well as its targets; the observation's space stays put.

With ``score_ema`` the agent acts with an average of the trained weights
(:func:`average_weights`), which wander at a constant step size on noisy targets.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from mbdpo.config import Config
from mbdpo.model.functional import symlog
from mbdpo.model.layers import count_parameters, init_weights, mlp, move_parameters_towards, zero_output_layer

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
        self.horizon, self.action_dim, self.anchor = cfg.horizon, cfg.action_dim, cfg.score_anchor
        self.state_kind = cfg.score_state
        plan_dim = cfg.horizon * cfg.action_dim
        prior_plan_dim = plan_dim if self.anchor == "input" else 0
        state_dim = cfg.latent_dim if self.state_kind == "latent" else cfg.obs_dim
        inputs = state_dim + cfg.task_dim + plan_dim + prior_plan_dim + TAU_EMBEDDING_DIM
        width = cfg.score_mlp_dim or cfg.mlp_dim
        self.net = mlp(inputs, [width] * cfg.score_layers, 2 * plan_dim)  # gate logits and values
        init_weights(self)
        zero_output_layer(self.net)
        # Gradient steps taken; 0 means untrained (acting with it is refused).
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def state_input(self, z: torch.Tensor, obs: torch.Tensor | None) -> torch.Tensor:
        """The network's state input for latents ``z [B, L]`` encoded from observations ``obs [B, obs_dim]``
        (needed only with ``score_state=observation``)."""
        if self.state_kind == "latent":
            return z
        if obs is None:
            raise ValueError("a score network with score_state=observation needs the observations")
        return symlog(obs.float())

    def forward(
        self,
        state: torch.Tensor,
        x_tau: torch.Tensor,
        tau: torch.Tensor,
        alpha_bar: torch.Tensor,
        task_embedding: torch.Tensor | None = None,
        anchor: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Denoised mean ``[B, H, A]`` from states ``state [B, ·]`` (:meth:`state_input`), inputs
        ``x_tau [B, H, A]``, steps ``tau [B]`` and their ``alpha_bar [B]``; ``anchor [B, H, A]``, the prior's
        plan before its tanh (required unless ``score_anchor=none``): see the module's doc."""
        parts = [state, x_tau.flatten(1), sinusoidal_embedding(tau, TAU_EMBEDDING_DIM)]
        if task_embedding is not None:
            parts.insert(1, task_embedding)
        if self.anchor == "input":
            parts.append(torch.tanh(anchor).flatten(1))
        gate_logit, value = self.net(torch.cat(parts, dim=-1)).view(-1, 2, self.horizon, self.action_dim).unbind(1)
        gate = torch.sigmoid(gate_logit)
        identity = (x_tau / alpha_bar.view(-1, 1, 1).sqrt()).clamp(-1, 1)
        teleport = torch.tanh(value if self.anchor in ("none", "input") else anchor + value)
        return gate * identity + (1 - gate) * teleport

    @property
    def trained(self) -> bool:
        return bool(self.updates > 0)

    def parameter_count(self) -> int:
        return count_parameters(self)


@torch.no_grad()
def average_weights(average: ScoreNetwork, network: ScoreNetwork, decay: float) -> None:
    """Move ``average``'s weights towards ``network``'s after the network's n-th update (``score_ema``):
    w_avg <- w_avg + max(1 - decay, 1 / n) (w - w_avg). Until 1 / n falls below 1 - decay this is the plain
    mean of the n weights so far (the first update copies them), so the average never leans on the
    untrained initial weights; then an exponential moving average over ~1 / (1 - decay) updates."""
    move_parameters_towards(average, network, max(1 - decay, 1 / int(network.updates)))
    average.updates.copy_(network.updates)
