"""The diffusion policy, sampled with a Monte-Carlo score (paper eqs. 2, 3, 10-12, 15).

The policy is a distribution over action sequences x = a_{t:t+H} (shape
``[H, A]``). Its target is the Gibbs policy pi*(x|z) proportional to
exp(J(x)/lambda) (paper Thm 3.2). The score of the forward-noised policy at
(x_tau, tau) is estimated by self-normalised importance sampling (Tweedie's
formula): draw candidates from the Gaussian posterior proposal
N(x_tau / sqrt(alpha_bar), (1 - alpha_bar) / alpha_bar I), weight them by
exp(J / lambda), and take

    score = (sqrt(alpha_bar) E_w[a0] - x_tau) / (1 - alpha_bar).

The functions below are pure and do not know about world models; the planner
at the bottom plugs in imagined returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mbdpo.config import Config
from mbdpo.model.world_model import WorldModel
from mbdpo.planning.base import Planner
from mbdpo.planning.rollout import imagined_return, policy_trajectories

ReturnFn = Callable[[torch.Tensor], torch.Tensor]  # candidates [M, H, A] -> returns [M]


@dataclass
class DiffusionSchedule:
    """Linear beta schedule; index tau = 0..N-1 (tau = N-1 is the noisiest)."""

    beta: torch.Tensor
    alpha: torch.Tensor
    alpha_bar: torch.Tensor

    @classmethod
    def linear(cls, steps: int, beta_start: float, beta_end: float, device=None) -> "DiffusionSchedule":
        beta = torch.linspace(beta_start, beta_end, steps, device=device)
        alpha = 1 - beta
        return cls(beta=beta, alpha=alpha, alpha_bar=torch.cumprod(alpha, dim=0))

    @property
    def steps(self) -> int:
        return len(self.beta)


def proposal_samples(x_tau: torch.Tensor, alpha_bar: torch.Tensor, num: int) -> torch.Tensor:
    """Candidates a0 ~ N(x_tau / sqrt(alpha_bar), (1 - alpha_bar) / alpha_bar I), clamped to [-1, 1].

    Step 1 of the score estimate (paper eq. 11). Returns ``[num, *x_tau.shape]``.
    """
    mean = x_tau / alpha_bar.sqrt()
    std = ((1 - alpha_bar) / alpha_bar).sqrt()
    return (mean + std * torch.randn(num, *x_tau.shape, device=x_tau.device)).clamp(-1, 1)


def return_weights(returns: torch.Tensor, temperature: float, num_elites: int, normalise: bool) -> torch.Tensor:
    """w_i = softmax(J_i / lambda) over candidates (paper eq. 11).

    ``normalise`` z-scores J first, making lambda independent of the reward
    scale; ``num_elites > 0`` keeps only the best candidates (weight 0 for the
    rest), as in the reference implementation. ``returns [M]`` -> ``[M]``.
    """
    if normalise:
        returns = (returns - returns.mean()) / (returns.std() + 1e-6)
    logits = returns / temperature
    if 0 < num_elites < len(returns):
        threshold = returns.topk(num_elites).values[-1]
        logits = logits.masked_fill(returns < threshold, float("-inf"))
    return torch.softmax(logits, dim=0)


def monte_carlo_score(x_tau: torch.Tensor, weighted_mean: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """s = (sqrt(alpha_bar) a_bar - x_tau) / (1 - alpha_bar)  (paper eq. 12)."""
    return (alpha_bar.sqrt() * weighted_mean - x_tau) / (1 - alpha_bar)


def reverse_step(
    x_tau: torch.Tensor, score: torch.Tensor, schedule: DiffusionSchedule, tau: int, stochastic: bool
) -> torch.Tensor:
    """x_{tau-1} = (x_tau + (1 - alpha_bar_tau) s) / sqrt(alpha_tau) [+ sqrt(beta_tau) eps]  (paper eq. 3).

    The DDPM kernel adds noise at every step but the last.
    """
    x = (x_tau + (1 - schedule.alpha_bar[tau]) * score) / schedule.alpha[tau].sqrt()
    if stochastic and tau > 0:
        x = x + schedule.beta[tau].sqrt() * torch.randn_like(x)
    return x


def sample_monte_carlo_diffusion(
    return_fn: ReturnFn,
    x_start: torch.Tensor,
    schedule: DiffusionSchedule,
    num_samples: int,
    temperature: float,
    num_elites: int = 0,
    normalise: bool = False,
    stochastic: bool = True,
    extra_candidates: torch.Tensor | None = None,
) -> torch.Tensor:
    """Run the reverse diffusion from ``x_start [H, A]`` with Monte-Carlo scores; return x_0.

    ``extra_candidates [P, H, A]`` (e.g. policy-prior trajectories) are scored
    alongside the ``num_samples - P`` proposals at every step.
    """
    x = x_start
    for tau in reversed(range(schedule.steps)):
        alpha_bar = schedule.alpha_bar[tau]
        num_extra = 0 if extra_candidates is None else len(extra_candidates)
        candidates = proposal_samples(x, alpha_bar, num_samples - num_extra)
        if num_extra:
            candidates = torch.cat([extra_candidates, candidates])
        weights = return_weights(return_fn(candidates), temperature, num_elites, normalise)
        weighted_mean = torch.einsum("m,m...->...", weights, candidates)
        x = reverse_step(x, monte_carlo_score(x, weighted_mean, alpha_bar), schedule, tau, stochastic)
    return x


class DiffusionPlanner(Planner):
    """MBDPO's planner: the Monte-Carlo diffusion sampler over imagined returns.

    ``diffusion_kernel=stochastic`` (the paper): start from N(0, I) and add
    DDPM noise. ``warm`` (the reference implementation): start from the
    previous plan shifted by one step, no noise, i.e. an annealed MPPI.
    """

    def __init__(self, model: WorldModel, cfg: Config):
        super().__init__(model, cfg)
        self.schedule = DiffusionSchedule.linear(cfg.diffusion_steps, cfg.beta_start, cfg.beta_end)

    def _to(self, device: torch.device) -> None:
        self.schedule = DiffusionSchedule(
            *(t.to(device) for t in (self.schedule.beta, self.schedule.alpha, self.schedule.alpha_bar))
        )

    @torch.no_grad()
    def plan(self, z: torch.Tensor, task: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.cfg
        if self.schedule.beta.device != z.device:
            self._to(z.device)
        stochastic = cfg.diffusion_kernel == "stochastic"
        if stochastic:
            x_start = torch.randn(cfg.horizon, cfg.action_dim, device=z.device)
        else:
            x_start = self.shifted_previous_plan(z.device)
        extra = None
        if cfg.num_pi_trajs:
            extra = policy_trajectories(self.model, z, cfg.horizon, cfg.num_pi_trajs, task).transpose(0, 1)
        z_candidates = z.expand(cfg.num_samples, -1)

        def return_fn(candidates: torch.Tensor) -> torch.Tensor:
            actions = candidates.transpose(0, 1)
            return imagined_return(self.model, z_candidates, actions, cfg.discount, cfg.energy_eta, task).squeeze(-1)

        plan = sample_monte_carlo_diffusion(
            return_fn, x_start, self.schedule, cfg.num_samples, cfg.diffusion_temperature,
            cfg.num_elites, cfg.normalize_returns, stochastic, extra,
        ).clamp(-1, 1)
        self.previous_plan = plan
        return plan
