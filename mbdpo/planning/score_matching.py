"""Training and checking the score network on Monte-Carlo targets (ALGORITHM.md section 5, paper eq. 16).

Targets (``score_target``):
- ``denoiser`` (default): at an input (z, x_tau, tau), the Monte-Carlo
  denoised mean a_bar of section 4 (equivalently, through eq. 12, the
  Monte-Carlo score), estimated afresh with ``score_samples`` rollouts.
- ``chain``: the final plan x_0 of a Monte-Carlo chain the agent ran while
  acting, at an input that same chain visited (:func:`chain_pairs`). The
  regression's minimiser is E[x_0 | x_tau] over the sampler's own chains, the
  denoiser that reproduces what the Monte-Carlo sampler draws; each pair is a
  one-sample estimate of it, as in denoising score matching. It costs no
  rollouts, but only ``act_mode=auto`` produces chains.
  With ``score_sampler=jump`` only the chain's start is an input: the
  network then regresses Monte Carlo's final plan on where its chain started,
  and acts with that one denoised mean.

Inputs x_tau for ``denoiser`` (``score_inputs``):
- ``mixed`` (default): half of the rows ``forward``, half ``sampler``.
- ``sampler``: the inputs the score-network sampler itself visits, found by
  running its reverse chain from the kernel's start (N(0, I) for the paper's
  stochastic kernel). Training where the sampler goes corrects the network's
  own drift (as in DAgger), but alone the visited region shrinks with the
  network and the sampled spread collapses.
- ``forward``: replay action windows, forward-noised,
  x_tau = sqrt(alpha_bar) a + sqrt(1 - alpha_bar) eps, as in DDPM training.
  With the paper's schedule alpha_bar_N is ~0.9, so this never shows the
  network the N(0, I) starts of the stochastic kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mbdpo.planning.diffusion import DenoiseFn, DiffusionSchedule, reverse_diffusion, score_from_denoised_mean


def forward_noised(actions: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """x_tau = sqrt(alpha_bar) a + sqrt(1 - alpha_bar) eps, for ``actions [B, H, A]`` and ``alpha_bar [B]``."""
    alpha_bar = alpha_bar.view(-1, 1, 1)
    return alpha_bar.sqrt() * actions + (1 - alpha_bar).sqrt() * torch.randn_like(actions)


def sampler_inputs(
    denoise: DenoiseFn, x_start: torch.Tensor, schedule: DiffusionSchedule, stochastic: bool, tau: torch.Tensor
) -> torch.Tensor:
    """The input at step ``tau[b]`` of a reverse chain run from ``x_start[b]``. Returns ``[B, H, A]``."""
    _, visited = reverse_diffusion(denoise, x_start, schedule, stochastic)
    return visited[tau, torch.arange(len(tau), device=tau.device)]


def training_inputs(
    kind: str,
    actions: torch.Tensor,
    tau: torch.Tensor,
    schedule: DiffusionSchedule,
    network: DenoiseFn,
    x_start: torch.Tensor,
    stochastic: bool,
) -> torch.Tensor:
    """Inputs x_tau ``[B, H, A]`` for ``score_inputs=kind``: ``forward``, ``sampler``, or ``mixed``
    (the first half of the rows forward-noised, the rest sampler-visited)."""
    forward = forward_noised(actions, schedule.alpha_bar[tau])
    if kind == "forward":
        return forward
    sampled = sampler_inputs(network, x_start, schedule, stochastic, tau)
    if kind == "sampler":
        return sampled
    first_half = (torch.arange(len(actions), device=actions.device) < len(actions) // 2).view(-1, 1, 1)
    return torch.where(first_half, forward, sampled)


def chain_pairs(visited: torch.Tensor, start_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One training input per stored chain: a random step tau (with ``start_only``, the start, tau = N-1) and
    what the chain visited there.

    ``visited [B, N, H, A]`` (per chain, inputs at tau = 0..N-1) -> ``x_tau [B, H, A]``, ``tau [B]``.
    Paired with the chain's final plan as the target, (x_tau, x_0) is a draw from the sampler's joint; at the
    start its regression's minimiser E[x_0 | x_{N-1}] is the plan ``score_sampler=jump`` acts with.
    """
    steps = visited.shape[1]
    tau = (torch.full((len(visited),), steps - 1, device=visited.device) if start_only
           else torch.randint(steps, (len(visited),), device=visited.device))
    return visited[torch.arange(len(visited), device=visited.device), tau], tau


def score_matching_loss(predicted_mean: torch.Tensor, target_mean: torch.Tensor) -> torch.Tensor:
    """Regression of the denoised mean onto its Monte-Carlo target (paper eq. 16).

    By eq. 12 the score error is sqrt(alpha_bar) / (1 - alpha_bar) times the
    denoised-mean error, so this is the score-matching MSE weighted by
    (1 - alpha_bar)^2 / alpha_bar: the weight under which each step's error
    is the error of the paper's reverse step, x_{tau-1} = sqrt(alpha_bar_{tau-1}) a_bar + noise.
    Unweighted, the last steps would dominate by a factor ~1e8. ``[B, H, A]``
    each; summed over the plan, averaged over B.
    """
    return (predicted_mean - target_mean).pow(2).sum((-2, -1)).mean()


def return_guidance_loss(scaled_return: torch.Tensor) -> torch.Tensor:
    """-J / scale averaged over the batch: the denoised plans climb their imagined return.

    The target of the sampler is the Gibbs policy pi*(x|z) ~ exp(J(x)/lambda)
    (paper Thm 3.2), whose score at the data end of the diffusion is
    grad J / lambda: ascending J moves the denoised mean along it, with the
    current model's J. Regression onto Monte-Carlo targets (eq. 16) learns
    what the planner did when those targets were made; this term follows the
    model as it is now, as the policy prior's Q objective does (section 3,
    same running 5-95 % Q scale, so that one weight suits every task). J
    includes eta * E_hat (eq. 8): the energy's trust region holds the climb
    near the replay's actions. ``scaled_return [B]``: J of each plan divided by the Q scale.
    """
    return -scaled_return.mean()


@dataclass
class ScoreCheck:
    """How the score network compares with the Monte-Carlo sampler on held-out states.

    Per diffusion step: ``network_error[tau]`` = E||s_theta - s_MC||^2 /
    E||s_MC||^2 against a fresh Monte-Carlo estimate, and
    ``monte_carlo_error[tau]``, the same between two independent Monte-Carlo
    estimates (its noise floor; a network that predicted the Monte-Carlo mean
    exactly would score half of it). Averaged over states: the imagined
    return J of the final plan of each sampler, run from the same starts, and
    of uniformly random plans.
    """

    network_error: torch.Tensor  # [N]
    monte_carlo_error: torch.Tensor  # [N]
    network_return: float
    monte_carlo_return: float
    random_return: float

    @property
    def ratio(self) -> float:
        """Mean over steps of network error / Monte-Carlo error; <= 1: as good as a fresh estimate."""
        return float((self.network_error / self.monte_carlo_error.clamp_min(1e-12)).mean())

    @property
    def return_gap(self) -> float:
        """The fraction of the Monte-Carlo plans' gain over random plans that the network's plans lose.

        0: as good as Monte Carlo; 1: no better than random actions.
        """
        gain = max(self.monte_carlo_return - self.random_return, 1e-6)
        return (self.monte_carlo_return - self.network_return) / gain


def relative_error(score: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """E||score - reference||^2 / E||reference||^2 over a batch ``[B, H, A]``."""
    return (score - reference).pow(2).sum() / reference.pow(2).sum().clamp_min(1e-12)


@torch.no_grad()
def check_score_network(
    network: DenoiseFn,
    monte_carlo: DenoiseFn,
    other_monte_carlo: DenoiseFn,
    plan_return: Callable[[torch.Tensor], torch.Tensor],
    x_start: torch.Tensor,
    schedule: DiffusionSchedule,
    stochastic: bool,
    jump: bool = False,
) -> ScoreCheck:
    """Compare the network with the Monte-Carlo sampler from the same starts ``x_start [B, H, A]``.

    Scores are compared at the inputs the network's own reverse chain visits
    (where acting with it would go); ``plan_return`` maps plans ``[B, H, A]`` to
    their imagined returns ``[B]``. With ``jump`` (``score_sampler=jump``) the
    network's plan is its denoised mean at the start, as it acts; of its
    errors only the start's (tau = N-1) is then the one it is trained at.
    """
    network_plan, visited = reverse_diffusion(network, x_start, schedule, stochastic)
    if jump:
        network_plan = network(x_start, schedule.steps - 1)
    monte_carlo_plan, _ = reverse_diffusion(monte_carlo, x_start, schedule, stochastic)
    network_error, monte_carlo_error = torch.zeros(schedule.steps), torch.zeros(schedule.steps)
    for tau in range(schedule.steps):
        x_tau, alpha_bar = visited[tau], schedule.alpha_bar[tau]
        first, second, predicted = (
            score_from_denoised_mean(x_tau, denoise(x_tau, tau), alpha_bar)
            for denoise in (monte_carlo, other_monte_carlo, network)
        )
        network_error[tau] = relative_error(predicted, first)
        monte_carlo_error[tau] = relative_error(second, first)
    return ScoreCheck(
        network_error, monte_carlo_error,
        network_return=float(plan_return(network_plan.clamp(-1, 1)).mean()),
        monte_carlo_return=float(plan_return(monte_carlo_plan.clamp(-1, 1)).mean()),
        random_return=float(plan_return(torch.rand_like(x_start) * 2 - 1).mean()),
    )
