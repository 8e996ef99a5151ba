"""The diffusion policy, sampled with a Monte-Carlo score (paper eqs. 2, 3, 10-12, 15).

The policy is a distribution over action sequences x = a_{t:t+H} (shape
``[H, A]``). Its target is the Gibbs policy pi*(x|z) proportional to
exp(J(x)/lambda) (paper Thm 3.2). The score of the forward-noised policy at
(x_tau, tau) is estimated by self-normalised importance sampling (Tweedie's
formula): draw candidates from the Gaussian posterior proposal
N(x_tau / sqrt(alpha_bar), (1 - alpha_bar) / alpha_bar I), weight them by
exp(J / lambda), and take

    score = (sqrt(alpha_bar) E_w[a0] - x_tau) / (1 - alpha_bar).

The functions at the top are pure and do not know about world models;
``monte_carlo_denoiser`` plugs in imagined returns, ``score_network_denoiser``
the amortised network of section 5, and the planner at the bottom acts with
either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from mbdpo.config import Config
from mbdpo.model.world_model import WorldModel
from mbdpo.planning.base import Planner, shifted
from mbdpo.planning.rollout import candidate_returns, policy_mean_plan, policy_trajectories
from mbdpo.planning.distilled_policy import DistilledPolicy
from mbdpo.planning.score_network import ScoreNetwork

ReturnFn = Callable[[torch.Tensor], torch.Tensor]  # candidates [B, M, H, A] -> returns [B, M]
# (x_tau [B, H, A], tau: one step, or [B] steps) -> estimate of E[x_0 | x_tau], [B, H, A]
DenoiseFn = Callable[[torch.Tensor, "int | torch.Tensor"], torch.Tensor]


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

    Step 1 of the score estimate (paper eq. 11). ``x_tau [B, H, A]`` and
    ``alpha_bar`` (a scalar, or ``[B]``: one step per row) -> ``[B, num, H, A]``.
    """
    alpha_bar = alpha_bar.view(-1, 1, 1, 1)
    mean = x_tau.unsqueeze(1) / alpha_bar.sqrt()
    std = ((1 - alpha_bar) / alpha_bar).sqrt()
    noise = torch.randn(x_tau.shape[0], num, *x_tau.shape[1:], device=x_tau.device)
    return (mean + std * noise).clamp(-1, 1)


def return_weights(returns: torch.Tensor, temperature: float, num_elites: int, normalise: bool) -> torch.Tensor:
    """w_i = softmax(J_i / lambda) over the candidates of the last dimension (paper eq. 11).

    ``normalise`` z-scores J first, making lambda independent of the reward
    scale; ``num_elites > 0`` keeps only the best candidates (weight 0 for the
    rest), as in the reference implementation. ``returns [..., M]`` -> ``[..., M]``.
    """
    if normalise:
        returns = (returns - returns.mean(-1, keepdim=True)) / (returns.std(-1, keepdim=True) + 1e-6)
    logits = returns / temperature
    if 0 < num_elites < returns.shape[-1]:
        threshold = returns.topk(num_elites, dim=-1).values[..., -1:]
        logits = logits.masked_fill(returns < threshold, float("-inf"))
    return torch.softmax(logits, dim=-1)


def monte_carlo_denoised_mean(
    return_fn: ReturnFn,
    x_tau: torch.Tensor,
    alpha_bar: torch.Tensor,
    num_samples: int,
    temperature: float,
    num_elites: int = 0,
    normalise: bool = False,
    extra_candidates: torch.Tensor | None = None,
    action_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """a_bar = sum_i w_i a0_i, the self-normalised estimate of E[x_0 | x_tau] (paper eqs. 11-12).

    ``x_tau [B, H, A]`` (one row per state). ``extra_candidates [B, P, H, A]``
    (e.g. policy-prior trajectories) are weighed alongside the
    ``num_samples - P`` proposals. ``action_mask [B, A]`` (multi-task) zeroes
    the proposals' unused action dimensions. Returns ``[B, H, A]``; being a
    convex combination of clamped actions, it lies in [-1, 1].
    """
    num_extra = 0 if extra_candidates is None else extra_candidates.shape[1]
    candidates = proposal_samples(x_tau, alpha_bar, num_samples - num_extra)
    if action_mask is not None:
        candidates = candidates * action_mask.view(-1, 1, 1, action_mask.shape[-1])
    if num_extra:
        candidates = torch.cat([extra_candidates, candidates], dim=1)
    weights = return_weights(return_fn(candidates), temperature, num_elites, normalise)
    return torch.einsum("bm,bm...->b...", weights, candidates)


def score_from_denoised_mean(x_tau: torch.Tensor, denoised_mean: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """s = (sqrt(alpha_bar) a_bar - x_tau) / (1 - alpha_bar)  (Tweedie's formula, paper eq. 12)."""
    return (alpha_bar.sqrt() * denoised_mean - x_tau) / (1 - alpha_bar)


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


def reverse_diffusion(
    denoise_fn: DenoiseFn, x_start: torch.Tensor, schedule: DiffusionSchedule, stochastic: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the reverse diffusion from ``x_start [B, H, A]`` (the input at tau = N-1).

    ``denoise_fn`` estimates E[x_0 | x_tau]: by Monte Carlo (section 4) or
    with the score network (section 5). Returns the sample x_0 and the inputs
    the chain visited, ``[N, B, H, A]`` indexed by tau.
    """
    x, visited = x_start, [None] * schedule.steps
    for tau in reversed(range(schedule.steps)):
        visited[tau] = x
        alpha_bar = schedule.alpha_bar[tau]
        x = reverse_step(x, score_from_denoised_mean(x, denoise_fn(x, tau), alpha_bar), schedule, tau, stochastic)
    return x, torch.stack(visited)


def handed_over(noisier: DenoiseFn, last: DenoiseFn, last_steps: int) -> DenoiseFn:
    """A denoiser that is ``noisier`` down to tau = ``last_steps`` and ``last`` at the ``last_steps`` least
    noisy steps (tau < ``last_steps``): e.g. the score network's proposal refined by Monte Carlo under the
    current model (``score_mc_steps``). For chains whose rows share one tau (acting)."""

    def denoise(x_tau: torch.Tensor, tau: int) -> torch.Tensor:
        return last(x_tau, tau) if tau < last_steps else noisier(x_tau, tau)

    return denoise


def best_of_candidates(returns: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """The candidate of highest imagined return J (eq. 10) for each state: ``returns [B, M]``,
    ``candidates [B, M, H, A]`` -> ``[B, H, A]``.

    Acting with the score network draws M plans from it and keeps the best under the current model. The
    network proposes what the Monte-Carlo sampler planned when its targets were made; the ranking uses the
    model as it is now, for 1 / (diffusion_steps x num_samples / M) of the Monte-Carlo planner's rollouts.
    """
    best = returns.argmax(dim=1)
    return candidates[torch.arange(len(candidates), device=candidates.device), best]


def monte_carlo_denoiser(
    model: WorldModel,
    cfg: Config,
    schedule: DiffusionSchedule,
    z: torch.Tensor,
    task: torch.Tensor | None = None,
    num_samples: int = 0,
) -> DenoiseFn:
    """E[x_0 | x_tau] by Monte Carlo over imagined rollouts from each latent of ``z [B, L]`` (section 4).

    Uses the planner settings of ``cfg``. ``num_samples`` (default
    ``cfg.num_samples``) scales the elites and the policy-prior trajectories
    in proportion, so that a smaller estimate keeps the same weighting rule.
    Policy-prior trajectories are drawn once and shared by every tau.
    """
    num_samples = num_samples or cfg.num_samples
    fraction = num_samples / cfg.num_samples
    num_pi = round(cfg.num_pi_trajs * fraction)
    num_elites = max(1, round(cfg.num_elites * fraction)) if cfg.num_elites else 0
    extra = policy_trajectories(model, z, cfg.horizon, num_pi, task) if num_pi else None

    mask = model.action_mask(task)

    def return_fn(candidates: torch.Tensor) -> torch.Tensor:
        return candidate_returns(model, z, candidates, cfg.energy_eta, task)

    def denoise(x_tau: torch.Tensor, tau: int | torch.Tensor) -> torch.Tensor:
        return monte_carlo_denoised_mean(
            return_fn, x_tau, schedule.alpha_bar[tau], num_samples, cfg.diffusion_temperature,
            num_elites, cfg.normalize_returns, extra, mask,
        )

    return denoise


def network_anchor(
    network: ScoreNetwork, model: WorldModel, z: torch.Tensor, task: torch.Tensor | None = None
) -> torch.Tensor | None:
    """The anchor ``[B, H, A]`` of ``network`` from latents ``z`` when none is stored with a chain: with
    ``score_anchor`` other than ``none``, the policy prior's mean plan by the current model (H - 1 dynamics
    calls); None without an anchor."""
    return None if network.anchor == "none" else policy_mean_plan(model, z, network.horizon, task)


def score_network_denoiser(
    network: ScoreNetwork,
    model: WorldModel,
    schedule: DiffusionSchedule,
    z: torch.Tensor,
    task: torch.Tensor | None = None,
    copies: int = 1,
    anchor: torch.Tensor | None = None,
    obs: torch.Tensor | None = None,
) -> DenoiseFn:
    """E[x_0 | x_tau] from the score network (section 5): one network call, no rollouts.

    In a multi-task model the unused action dimensions of each task are zeroed, as Monte Carlo does.
    With ``score_anchor=prior|chain|input`` the network's anchor ``[B, H, A]`` is ``anchor`` if given (the
    anchors stored with the chains, when ``score_anchor=chain`` trains), else the policy prior's mean plan
    from ``z``, computed once, for every tau.
    ``copies`` > 1 denoises that many chains per latent of ``z [B, L]``: inputs ``[B * copies, H, A]``,
    each latent's chains consecutive; what depends only on the latent is still computed once per latent.
    ``obs`` are the observations ``z`` was encoded from, required with ``score_state=observation``
    (:meth:`ScoreNetwork.state_input`).
    """
    state = network.state_input(z, obs)
    task_embedding = None if model.task_embedding is None else model.task_embedding(task)
    mask = model.action_mask(task)
    if anchor is None:
        anchor = network_anchor(network, model, z, task)
    if copies > 1:
        state, task_embedding, mask, anchor = (
            None if t is None else t.repeat_interleave(copies, 0) for t in (state, task_embedding, mask, anchor))

    def denoise(x_tau: torch.Tensor, tau: int | torch.Tensor) -> torch.Tensor:
        steps = torch.as_tensor(tau, device=x_tau.device).expand(x_tau.shape[0])
        denoised = network(state, x_tau, steps, schedule.alpha_bar[steps], task_embedding, anchor)
        return denoised if mask is None else denoised * mask.unsqueeze(1)

    return denoise


class DiffusionPlanner(Planner):
    """MBDPO's planner: the reverse diffusion over action sequences.

    ``diffusion_kernel=stochastic`` (the paper): start from N(0, I) and add
    DDPM noise. ``warm`` (the reference implementation): start from the
    previous plan shifted by one step, no noise, i.e. an annealed MPPI.
    The denoiser is the Monte-Carlo estimate, or the score network once
    :attr:`use_score_network` is set (see ``act_mode``).
    """

    def __init__(self, model: WorldModel, cfg: Config, score_network: ScoreNetwork | DistilledPolicy | None = None):
        super().__init__(model, cfg)
        self.schedule = DiffusionSchedule.linear(cfg.diffusion_steps, cfg.beta_start, cfg.beta_end)
        self.score_network = score_network
        self.use_score_network = False
        # How many of the network's plans are ranked per action: cfg.score_candidates, or 1 where act_mode=auto
        # found the network's one plan better in the environment (OnlineTrainer._evaluate_network)
        self.score_candidates = cfg.score_candidates
        # The last Monte-Carlo chain, (inputs visited [1, N, H, A], final plan [1, H, A]); None after network acting.
        self.last_chain: tuple[torch.Tensor, torch.Tensor] | None = None

    def schedule_on(self, device: torch.device) -> DiffusionSchedule:
        """The schedule, moved to ``device`` on first use there."""
        if self.schedule.beta.device != device:
            self.schedule = DiffusionSchedule(
                *(t.to(device) for t in (self.schedule.beta, self.schedule.alpha, self.schedule.alpha_bar))
            )
        return self.schedule

    @property
    def stochastic(self) -> bool:
        """The paper's DDPM kernel (``diffusion_kernel=stochastic``) rather than the warm one."""
        return self.cfg.diffusion_kernel == "stochastic"

    def chain_starts(self, previous_plans: torch.Tensor) -> torch.Tensor:
        """x at tau = N-1 for states whose previous plans are ``previous_plans [B, H, A]``:
        N(0, I), or for the warm kernel those plans shifted by one step."""
        return torch.randn_like(previous_plans) if self.stochastic else shifted(previous_plans)

    def previous_plans(self, device: torch.device) -> torch.Tensor:
        """The previous plan as a batch of one, ``[1, H, A]``, for :meth:`chain_starts`; zeros at an episode
        start."""
        if self.previous_plan is None:
            return torch.zeros(1, self.cfg.horizon, self.cfg.action_dim, device=device)
        return self.previous_plan.unsqueeze(0)

    @torch.no_grad()
    def plan(self, z: torch.Tensor, task: torch.Tensor | None = None, obs: torch.Tensor | None = None) -> torch.Tensor:
        previous = self.previous_plans(z.device)
        if self.use_score_network:
            plans = self.score_network_plans(z, previous, task, obs)
            self.last_chain = None
        else:
            self.last_chain = self.monte_carlo_chains(z, previous, task)
            plans = self.last_chain[1]
        self.previous_plan = plans[0].clamp(-1, 1)
        return self.previous_plan

    @torch.no_grad()
    def score_network_plans(
        self, z: torch.Tensor, previous_plans: torch.Tensor, task: torch.Tensor | None = None,
        obs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Plan with the score network from each latent of ``z [B, L]`` (section 5): draw
        :attr:`score_candidates` plans from it (:meth:`score_network_candidates`), and keep the best by the
        current model's imagined return (:func:`best_of_candidates`); ``obs`` are the observations ``z`` was
        encoded from (needed with ``score_state=observation``). With one candidate, no rollouts, unless
        ``score_mc_steps`` hands the last steps of the chain to Monte Carlo (:func:`handed_over`). Returns
        ``[B, H, A]``, clamped to the action range. With ``score_sampler=policy`` the distilled policy's plans
        instead (:class:`~mbdpo.planning.distilled_policy.DistilledPolicy`)."""
        if self.cfg.score_sampler == "policy":
            return self.score_network.plans(self.model, z, task)
        count = self.score_candidates
        plans = self.score_network_candidates(z, previous_plans, count, task, obs)
        if count == 1:
            return plans[:, 0]
        return best_of_candidates(candidate_returns(self.model, z, plans, self.cfg.energy_eta, task), plans)

    @torch.no_grad()
    def score_network_candidates(
        self, z: torch.Tensor, previous_plans: torch.Tensor, count: int, task: torch.Tensor | None = None,
        obs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``count`` plans from the score network for each latent of ``z [B, L]``, in one batched reverse
        chain started by :meth:`chain_starts` from ``previous_plans [B, H, A]`` (its last ``score_mc_steps``
        steps by Monte Carlo), or with ``score_sampler=jump`` the network's denoised mean at those starts, one
        call. Returns ``[B, count, H, A]``, clamped to the action range."""
        schedule = self.schedule_on(z.device)
        denoise = score_network_denoiser(self.score_network, self.model, schedule, z, task, copies=count, obs=obs)
        if self.cfg.score_mc_steps:
            refine = monte_carlo_denoiser(self.model, self.cfg, schedule, z, task)
            denoise = handed_over(denoise, refine, self.cfg.score_mc_steps)
        starts = self.chain_starts(previous_plans.repeat_interleave(count, 0))
        if self.cfg.score_sampler == "jump":
            plans = denoise(starts, schedule.steps - 1)
        else:
            plans, _ = reverse_diffusion(denoise, starts, schedule, self.stochastic)
        return plans.clamp(-1, 1).view(len(z), count, *plans.shape[1:])

    @torch.no_grad()
    def monte_carlo_chains(
        self, z: torch.Tensor, previous_plans: torch.Tensor, task: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        """Plan by Monte Carlo from each latent of ``z [B, L]`` at once, the warm kernel starting from
        ``previous_plans [B, H, A]`` (see :meth:`chain_starts`). Returns the inputs each chain visited
        ``[B, N, H, A]`` and its plan ``[B, H, A]``, clamped to the action range as acting keeps it: the
        rows :class:`~mbdpo.data.chains.ChainMemory` stores. Acting by Monte Carlo is this with B = 1."""
        schedule = self.schedule_on(z.device)
        denoise = monte_carlo_denoiser(self.model, self.cfg, schedule, z, task)
        plans, visited = reverse_diffusion(denoise, self.chain_starts(previous_plans), schedule, self.stochastic)
        return visited.transpose(0, 1), plans.clamp(-1, 1)
