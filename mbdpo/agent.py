"""The MBDPO agent: a world model, its optimisers and a planner.

``Agent.update`` is one gradient step of ALGORITHM.md section 3 (model step,
policy step, Polyak update) and, unless ``act_mode=mc``, one score-matching
step of the score network (section 5); ``Agent.act`` encodes an observation
and asks the planner for an action, by Monte Carlo or with the score network.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from pathlib import Path
import numpy as np
import torch

from mbdpo import energy as energy_objectives
from mbdpo.checkpoint import AGENT, load_checkpoint
from mbdpo.config import Config, torch_device
from mbdpo.errors import ConfigError
from mbdpo.data.buffer import Batch
from mbdpo.data.chains import ChainMemory
from mbdpo.losses import consistency_loss, policy_loss, reward_loss, td_target, termination_loss, value_loss
from mbdpo.model.functional import random_shift
from mbdpo.model.running import RunningScale
from mbdpo.model.world_model import WorldModel
from mbdpo.planning import DiffusionPlanner, make_planner
from mbdpo.planning.diffusion import monte_carlo_denoiser, network_anchor, score_network_denoiser
from mbdpo.planning.distilled_policy import DistilledPolicy, distillation_loss
from mbdpo.planning.score_matching import (
    ScoreCheck, chain_pairs, check_score_network, return_guidance_loss, score_matching_loss, training_inputs,
)
from mbdpo.planning.rollout import plan_returns, policy_mean_plan, require_compiler
from mbdpo.planning.score_network import ScoreNetwork, average_weights
from mbdpo.training.distributed import DataParallel, SingleProcess


@contextlib.contextmanager
def frozen(module: torch.nn.Module):
    """Temporarily stop gradients into ``module``'s parameters (those that never take any, e.g. target
    Q heads, stay so)."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in zip(module.parameters(), flags):
            parameter.requires_grad_(flag)


def load_optimizer_moments(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a saved optimiser state (Adam's moments and step counts) but keep ``optimizer``'s own step sizes: a
    fine-tuned run steps at the ``lr`` (and ``score_lr``) it was given, not the pre-trained checkpoint's."""
    step_sizes = [group["lr"] for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, step_size in zip(optimizer.param_groups, step_sizes, strict=True):
        group["lr"] = step_size


def for_acting_network(state: dict, saved: Config, cfg: Config) -> dict:
    """An agent's ``state`` (:meth:`Agent.state_dict`) saved under ``saved``, to load into an agent of ``cfg``:
    where one learns with the distilled policy (``score_sampler=policy``) and the other with the score network,
    the saved network is left out and the agent acts by Monte Carlo, so that the new kind starts untrained."""
    if (saved.score_sampler == "policy") == (cfg.score_sampler == "policy"):
        return state
    dropped = ("score_network", "score_optimizer", "score_network_average")
    return {**{key: value for key, value in state.items() if key not in dropped}, "acting_mode": "mc"}


class Agent:
    """``sync`` (data-parallel training, :mod:`mbdpo.training.distributed`) averages gradients and gathers
    batch statistics over processes; by default there is one process and it does nothing."""

    def __init__(self, cfg: Config, device: torch.device, sync: SingleProcess | DataParallel | None = None):
        self.cfg = cfg
        self.device = device
        if cfg.compile_rollouts:
            require_compiler(device)
        self.sync = sync or SingleProcess()
        self.model = WorldModel(cfg).to(device)
        self.q_scale = RunningScale(cfg.scale_rate).to(device)
        model = self.model
        others = [
            p for name, p in model.named_parameters()
            if not name.startswith(("encoder.", "policy_head.", "target_q_heads."))
        ]
        self.optimizer = torch.optim.Adam(
            [{"params": model.encoder.parameters(), "lr": cfg.lr * cfg.enc_lr_scale}, {"params": others}],
            lr=cfg.lr, eps=1e-8,
        )
        self.policy_optimizer = torch.optim.Adam(model.policy_head.parameters(), lr=cfg.lr, eps=1e-5)
        # The network that learns to act as Monte Carlo does: the score network, or with score_sampler=policy
        # the distilled policy.
        self.score_network = (DistilledPolicy(cfg) if cfg.score_sampler == "policy" else ScoreNetwork(cfg)).to(device)
        self.score_optimizer = torch.optim.Adam(self.score_network.parameters(), lr=cfg.score_lr or cfg.lr)
        # The network that acts: the trained one, or with score_ema a copy holding the average of its weights.
        self.acting_score_network = (
            copy.deepcopy(self.score_network).requires_grad_(False) if cfg.score_ema else self.score_network
        )
        self.planner = make_planner(model, cfg, self.acting_score_network)
        self.act_with_prior = False  # act_mode=prior (mbdpo eval): the policy prior alone, no planning
        self.chains = (
            ChainMemory(cfg.score_chains, cfg.obs_shape, cfg.diffusion_steps, cfg.horizon, cfg.action_dim,
                        torch.uint8 if cfg.obs == "rgb" else torch.float32, anchored=cfg.score_anchor == "chain")
            if cfg.act_mode != "mc" and cfg.score_target == "chain" else None
        )
        # The chains of Monte-Carlo acting are stored unless the chains come from the replay (score_replay_chains).
        self.store_acting_chains = self.chains is not None and not cfg.score_replay_chains

    # --- acting ---------------------------------------------------------------
    def reset(self) -> None:
        """Call at the start of every episode (forgets the warm-start plan)."""
        self.planner.reset()

    @property
    def acting_mode(self) -> str:
        """``prior`` when acting with the policy prior alone, ``score`` when the planner acts with the
        score network, else ``mc`` (the planner's own way: Monte Carlo, or MPPI)."""
        if self.act_with_prior:
            return "prior"
        planner = self.planner
        return "score" if isinstance(planner, DiffusionPlanner) and planner.use_score_network else "mc"

    def set_acting_mode(self, mode: str) -> None:
        """Act by Monte Carlo (``mc``), with the score network (``score``, diffusion planner only), or with
        the policy prior alone (``prior``: its mean action, a sample when exploring; as TD-MPC2 without MPC)."""
        if mode == "score" and self.cfg.planner != "diffusion":
            raise ConfigError(f"act_mode=score needs planner=diffusion, not planner={self.cfg.planner}")
        if mode == "score" and not self.score_network.trained:
            raise ConfigError("act_mode=score refused: this agent's score network was never trained "
                              "(train with act_mode=score or auto); valid here: act_mode=mc or prior")
        self.act_with_prior = mode == "prior"
        if isinstance(self.planner, DiffusionPlanner):
            self.planner.use_score_network = mode == "score"

    def task_tensor(self, task: int | None, count: int = 1) -> torch.Tensor | None:
        """Task index ``task`` repeated ``count`` times, as the model takes it (``None`` single-task)."""
        if not self.cfg.multitask:
            return None
        if task is None:
            raise ConfigError(f"this agent is multi-task ({self.cfg.num_tasks} tasks): pass task=<index>")
        return torch.full((count,), task, dtype=torch.long, device=self.device)

    @torch.no_grad()
    def act(self, obs: np.ndarray, explore: bool = False, task: int | None = None) -> np.ndarray:
        """Plan from one observation and return the action, a float32 array in [-1, 1].

        A multi-task agent takes the observation zero-padded to ``cfg.obs_dim``, the task's index, and
        returns ``cfg.action_dim`` actions of which the task uses the first ``cfg.action_dims[task]``.
        """
        self.model.eval()
        obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=self.device).unsqueeze(0)
        task_tensor = self.task_tensor(task)
        z = self.model.encode(obs_tensor, task_tensor)
        if self.act_with_prior:
            sample, info = self.model.pi(z, task_tensor)
            action = (sample if explore else info["mean"])[0]
        else:
            with self._refreshing_chains(explore):
                action = self.planner.act(z, task_tensor, explore=explore, obs=obs_tensor)
            if explore and self.store_acting_chains and self.planner.last_chain is not None:
                self._store_chains(obs_tensor, z, task_tensor, *self.planner.last_chain)
        mask = self.model.action_mask(task_tensor)
        return (action if mask is None else action * mask[0]).cpu().numpy()

    @contextlib.contextmanager
    def _refreshing_chains(self, explore: bool):
        """Plan by Monte Carlo instead of with the network, with probability ``score_refresh``, while
        ``act_mode=auto score_target=chain`` explores with the network.

        Without this, the stored chains stop at the switch and age while the
        model learns; with it, they keep coming, from the current model and
        the states the network's own acting visits (as in DAgger).
        """
        refresh = (explore and self.cfg.score_refresh > 0 and self.acting_mode == "score"
                   and float(torch.rand(())) < self.cfg.score_refresh)
        if refresh:
            self.set_acting_mode("mc")
        try:
            yield
        finally:
            if refresh:
                self.set_acting_mode("score")

    # --- learning -------------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One update of every component; returns detached loss values.

        Image observations are randomly shifted first (ALGORITHM.md section 1), each frame stack on its own.
        """
        if self.cfg.obs == "rgb":
            batch = dataclasses.replace(batch, obs=random_shift(batch.obs))
        metrics, latents = self._update_model(batch)
        metrics.update(self._update_policy(latents, batch.task))
        self.model.update_targets()
        if self.cfg.act_mode != "mc":
            metrics.update(self.train_score_network(batch, latents[0]))
        return metrics

    def _update_model(self, batch: Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Model step on every loss but the policy's; also returns the rolled-out latents, detached."""
        cfg, model = self.cfg, self.model
        with torch.no_grad():
            next_z = model.encode(batch.obs[1:], batch.task)
            next_action, _ = model.pi(next_z, batch.task)
            next_value = model.q_value(next_z, next_action, batch.task, reduce="min", target=True)
            target = td_target(batch.reward, next_value, batch.terminated, model.discount(batch.task))

        model.train()
        z = model.encode(batch.obs[0], batch.task)
        latents = [z]
        for action in batch.action:
            z = model.next(z, action, batch.task)
            latents.append(z)
        zs = torch.stack(latents)  # [H+1, B, L]

        losses = {
            "consistency": consistency_loss(zs[1:], next_z, cfg.rho),
            "reward": reward_loss(model.reward(zs[:-1], batch.action, batch.task), batch.reward, cfg.rho, cfg.vmin, cfg.vmax),
            "value": value_loss(model.q_logits(zs[:-1], batch.action, batch.task), target, cfg.rho, cfg.vmin, cfg.vmax),
        }
        coefs = {"consistency": cfg.consistency_coef, "reward": cfg.reward_coef, "value": cfg.value_coef}
        if cfg.energy_coef:
            losses["energy"] = self._energy_loss(torch.cat([zs[:1].detach(), next_z[:-1]]), batch.action, batch.task)
            coefs["energy"] = cfg.energy_coef
        if cfg.episodic:
            losses["termination"] = termination_loss(model.termination(zs[1:], batch.task), batch.terminated)
            coefs["termination"] = cfg.termination_coef
        total = sum(coefs[name] * loss for name, loss in losses.items())

        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        self.sync.average_gradients(parameters)
        grad_norm = torch.nn.utils.clip_grad_norm_(parameters, cfg.grad_clip_norm)
        self.optimizer.step()
        metrics = {f"{name}_loss": loss.detach() for name, loss in losses.items()}
        metrics.update(total_loss=total.detach(), grad_norm=grad_norm.detach())
        return metrics, zs.detach()

    def _energy_loss(self, z: torch.Tensor, action: torch.Tensor, task: torch.Tensor | None) -> torch.Tensor:
        """Energy objective on aligned pairs (h(o_t), a_t) of the batch; also updates its running stats.

        ``z [H, B, L]`` is detached, so the energy loss does not shape the
        encoder. One random step t of each window gives B pairs: contrasting
        all H x B pairs with K negatives each costs more than the rest of the
        update on a CPU, for little gain.
        """
        cfg, model = self.cfg, self.model
        step = torch.randint(z.shape[0], (z.shape[1],), device=z.device)
        batch_index = torch.arange(z.shape[1], device=z.device)
        z, action = z[step, batch_index], action[step, batch_index]

        def energy(z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
            # z [N, L] or [N, K, L]: each row keeps its own task.
            row_task = None if task is None else task.view(-1, *[1] * (z.dim() - 2)).expand(z.shape[:-1])
            return model.energy(z, action, row_task)

        if cfg.energy_loss == "infonce":
            loss = energy_objectives.infonce_energy_loss(energy, z, action, cfg.energy_negatives)
        else:
            with torch.no_grad():
                policy_action, _ = model.pi(z, task)
            loss = energy_objectives.binary_energy_loss(energy, z, action, policy_action)
        with torch.no_grad():
            model.energy_stats.update(self.sync.gather(energy(z, action)))
        return loss

    def _update_policy(self, zs: torch.Tensor, task: torch.Tensor | None) -> dict[str, torch.Tensor]:
        cfg, model = self.cfg, self.model
        action, info = model.pi(zs, task)
        with frozen(model.q_heads):
            q = model.q_value(zs, action, task, reduce="avg")
        self.q_scale.update(self.sync.gather(q[0]))
        loss = policy_loss(self.q_scale(q), info["log_prob"], cfg.rho, cfg.entropy_coef)
        self.policy_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.sync.average_gradients(model.policy_head.parameters())
        torch.nn.utils.clip_grad_norm_(model.policy_head.parameters(), cfg.grad_clip_norm)
        self.policy_optimizer.step()
        return {"policy_loss": loss.detach(), "q_scale": self.q_scale.value.clone()}

    # --- the score network (section 5) -----------------------------------------
    def train_score_network(self, batch: Batch, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """``score_updates`` regression steps of the score network, each on the next ``score_states`` of the
        batch's windows (latents ``z [B, L]``, detached); returns the last step's losses."""
        metrics, states = {}, self.cfg.score_states
        for first in range(0, self.cfg.score_updates * states, states):
            part = slice(first, first + states)
            metrics = self.update_score_network(batch.states(part), z[part])
        return metrics

    def update_score_network(self, batch: Batch, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """One regression step of the score network (paper eq. 16), on targets per ``score_target``.

        ``z [B, L]`` are the batch's encoded start states (detached).
        ``score_target=denoiser`` regresses at the batch's first
        ``score_states`` states; ``chain`` on stored chains: it first plans
        ``score_replay_chains`` new ones from the batch's start states, and
        waits until ``score_states`` chains are stored. With
        ``score_return_coef`` the same denoised plans also climb their imagined
        return under the current model (the model frozen: only the network learns).
        With ``score_sampler=policy`` the step is the distilled policy's instead (:meth:`_distillation_loss`).
        """
        self.model.eval()  # targets as the planner computes them when acting (no Q dropout)
        if self.cfg.score_replay_chains:
            with torch.no_grad():
                self._plan_replay_chains(batch, z)
        if self.chains is not None and len(self.chains) < self.cfg.score_states:
            return {}
        if self.cfg.score_sampler == "policy":
            loss, metrics = self._distillation_loss()
        else:
            loss, metrics = self._score_matching_loss(batch, z)
        self.step_score_network(loss)
        self.score_network.updates += 1
        if self.cfg.score_ema:
            average_weights(self.acting_score_network, self.score_network, self.cfg.score_ema)
        if self.cfg.act_mode == "score":  # from its first trained step on: never act with an untrained network
            self.set_acting_mode("score")
        return {name: value.detach() for name, value in metrics.items()}

    def _score_matching_loss(self, batch: Batch, z: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The score network's loss and its parts: the regression (eq. 16) on targets per ``score_target``,
        plus with ``score_return_coef`` that weight of the return guidance (eq. 10)."""
        with torch.no_grad():
            if self.chains is None:
                z, obs, x_tau, tau, target, task, anchor = self._denoiser_targets(z, batch)
            else:
                z, obs, x_tau, tau, target, task, anchor = self._chain_targets()
        schedule = self.planner.schedule_on(z.device)
        network = score_network_denoiser(self.score_network, self.model, schedule, z, task, anchor=anchor, obs=obs)
        denoised = network(x_tau, tau)
        parts = {"score_loss": score_matching_loss(denoised, target)}
        loss = parts["score_loss"]
        if self.cfg.score_return_coef:
            with frozen(self.model):
                scaled_return = self.q_scale(plan_returns(self.model, z, denoised, self.cfg.energy_eta, task))
            parts["score_return_loss"] = return_guidance_loss(scaled_return)
            loss = loss + self.cfg.score_return_coef * parts["score_return_loss"]
        return loss, parts

    def _distillation_loss(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``score_sampler=policy``: the distilled policy's regression onto the first action of the plans of
        ``score_states`` stored chains, at their states encoded by the current model. Its first step starts
        it from the policy prior's weights."""
        if not self.score_network.trained:
            self.score_network.start_from_prior(self.model)
        obs, task, _, plans, _ = self.chains.sample(self.cfg.score_states, self.device)
        task = task if self.cfg.multitask else None
        with torch.no_grad():
            z = self.model.encode(obs.float(), task)
        loss = distillation_loss(self.score_network.actions(self.model, z, task), plans[:, 0])
        return loss, {"score_loss": loss}

    def step_score_network(self, loss: torch.Tensor) -> None:
        """One optimiser step of the score network on ``loss`` (gradients averaged across processes, clipped)."""
        self.score_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.sync.average_gradients(self.score_network.parameters())
        torch.nn.utils.clip_grad_norm_(self.score_network.parameters(), self.cfg.grad_clip_norm)
        self.score_optimizer.step()

    def _denoiser_targets(self, z: torch.Tensor, batch: Batch) -> tuple:
        """``score_target=denoiser``: the Monte-Carlo a_bar at inputs per ``score_inputs``, for the
        batch's first ``score_states`` start states (latents ``z``), each at a random diffusion step.
        Returns (z, the observations, x_tau, tau, target a_bar, task, the network's anchor): the anchor is built
        once per score step, shared by the network that makes the inputs x_tau and by the loss."""
        cfg, schedule = self.cfg, self.planner.schedule_on(z.device)
        z, actions = z[: cfg.score_states], batch.action[:, : cfg.score_states].transpose(0, 1)
        obs = batch.obs[0][: cfg.score_states]
        task = None if batch.task is None else batch.task[: cfg.score_states]
        tau = torch.randint(schedule.steps, (len(z),), device=z.device)
        anchor = network_anchor(self.score_network, self.model, z, task)
        sampler = score_network_denoiser(self.acting_score_network, self.model, schedule, z, task, anchor=anchor,
                                         obs=obs)
        # The replay window stands in for the previous plan of the warm kernel.
        x_tau = training_inputs(
            cfg.score_inputs, actions, tau, schedule, sampler, self.planner.chain_starts(actions),
            self.planner.stochastic,
        )
        target = monte_carlo_denoiser(self.model, cfg, schedule, z, task, cfg.score_samples)(x_tau, tau)
        return z, obs, x_tau, tau, target, task, anchor

    def _plan_replay_chains(self, batch: Batch, z: torch.Tensor) -> None:
        """Plan and store Monte-Carlo chains from the first of the batch's start states (latents ``z [B, L]``):
        ``score_replay_chains`` per update on average, the fraction drawn at random.

        The replay samples its windows across all its episodes, so these chains
        spread over the states past acting visited, where acting's own are the
        consecutive states of its last episodes. The window's actions stand in
        for the previous plan of the warm kernel, as in :meth:`_denoiser_targets`.
        """
        rate = self.cfg.score_replay_chains
        count = int(rate) + int(float(torch.rand(())) < rate % 1)
        if count == 0:
            return
        task = None if batch.task is None else batch.task[:count]
        previous_plans = batch.action[:, :count].transpose(0, 1)
        visited, plans = self.planner.monte_carlo_chains(z[:count], previous_plans, task)
        self._store_chains(batch.obs[0][:count], z[:count], task, visited, plans)

    def _store_chains(self, obs: torch.Tensor, z: torch.Tensor, task: torch.Tensor | None,
                      visited: torch.Tensor, plans: torch.Tensor) -> None:
        """Add chains planned from ``obs`` (latents ``z``, tasks ``task``, None single-task: stored as task 0)
        to the memory; with ``score_anchor=chain``, with the policy prior's mean plan from the same states by
        the same model."""
        anchor = policy_mean_plan(self.model, z, self.cfg.horizon, task) if self.chains.anchored else None
        stored_task = torch.zeros(len(plans), dtype=torch.long) if task is None else task
        self.chains.add(obs, stored_task, visited, plans, anchor)

    def _chain_targets(self) -> tuple:
        """``score_target=chain``: ``score_states`` stored chains of acting, each at a random step tau (with
        ``score_sampler=jump``, at the start);
        the input is what the chain visited there, the target its final plan (see
        :func:`~mbdpo.planning.score_matching.chain_pairs`). No Monte-Carlo rollouts.
        Returns (z, the observations, x_tau, tau, target plan, task, anchor): the anchor each chain was planned with
        (``score_anchor=chain``), else the current prior's (:func:`~mbdpo.planning.diffusion.network_anchor`;
        a memory shared with a ``chain`` network may hold stored anchors that this network does not use)."""
        obs, task, visited, plans, anchor = self.chains.sample(self.cfg.score_states, self.device)
        task = task if self.cfg.multitask else None
        z = self.model.encode(obs.float(), task)
        x_tau, tau = chain_pairs(visited, start_only=self.cfg.score_sampler == "jump")
        if self.cfg.score_anchor != "chain":
            anchor = network_anchor(self.score_network, self.model, z, task)
        return z, obs, x_tau, tau, plans, task, anchor

    @torch.no_grad()
    def check_score_network(self, obs: np.ndarray, task: int | None = None, other: Config | None = None) -> ScoreCheck:
        """Score errors per diffusion step on the states of ``obs [V, obs_dim]`` (ideally held out).

        The network is compared with two independent Monte-Carlo estimates at
        full planner settings, on the inputs its own sampler visits, and the
        imagined returns of both samplers' plans are compared. ``other`` gives
        the second estimate other planner settings (its ``monte_carlo_error``
        then measures how far those settings move Monte Carlo's estimate).
        """
        if self.cfg.score_sampler == "policy":
            raise ConfigError("the score check measures a denoiser, and score_sampler=policy's distilled policy "
                              "has none; valid: an agent with score_sampler=chain|jump")
        self.model.eval()
        task_tensor = self.task_tensor(task, len(obs))
        obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=self.device)
        z = self.model.encode(obs_tensor, task_tensor)
        schedule = self.planner.schedule_on(z.device)
        no_previous_plans = torch.zeros(len(z), self.cfg.horizon, self.cfg.action_dim, device=z.device)

        def plan_return(plans: torch.Tensor) -> torch.Tensor:
            return plan_returns(self.model, z, plans, self.cfg.energy_eta, task_tensor)

        return check_score_network(
            score_network_denoiser(self.acting_score_network, self.model, schedule, z, task_tensor, obs=obs_tensor),
            monte_carlo_denoiser(self.model, self.cfg, schedule, z, task_tensor),
            monte_carlo_denoiser(self.model, other or self.cfg, schedule, z, task_tensor),
            plan_return, self.planner.chain_starts(no_previous_plans), schedule, self.planner.stochastic,
            jump=self.cfg.score_sampler == "jump",
        )

    # --- persistence ------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "q_scale": self.q_scale.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "policy_optimizer": self.policy_optimizer.state_dict(),
            **self.score_state_dict(),
            "acting_mode": self.acting_mode,
            **({"score_candidates": self.planner.score_candidates} if isinstance(self.planner, DiffusionPlanner)
               else {}),
            **({} if self.chains is None else {"score_chains": self.chains.state_dict()}),
        }

    def score_state_dict(self) -> dict:
        """The score network's weights and optimiser, and with ``score_ema`` the average that acts."""
        return {
            "score_network": self.score_network.state_dict(),
            "score_optimizer": self.score_optimizer.state_dict(),
            **({"score_network_average": self.acting_score_network.state_dict()} if self.cfg.score_ema else {}),
        }

    def load_score_state_dict(self, state: dict) -> None:
        """Load :meth:`score_state_dict`. A state saved without ``score_ema`` starts the average at the trained
        weights."""
        self.score_network.load_state_dict(state["score_network"])
        load_optimizer_moments(self.score_optimizer, state["score_optimizer"])
        if self.cfg.score_ema:
            self.acting_score_network.load_state_dict(state.get("score_network_average", state["score_network"]))

    @classmethod
    def from_checkpoint(
        cls, path: str | Path, device: str = "auto", compile_rollouts: bool = False, score_candidates: int = 0,
        score_mc_steps: int = -1,
    ) -> "Agent":
        """Load a trained agent from a checkpoint written by ``mbdpo train``. ``device`` and
        ``compile_rollouts`` are the caller's, whatever the run used (as when a run resumes); so are
        ``score_candidates`` unless 0 (then the run's: with act_mode=auto, what its evaluations chose) and
        ``score_mc_steps`` unless -1 (then the run's)."""
        torch_dev = torch_device(device)
        checkpoint = load_checkpoint(path, torch_dev, holds=AGENT)
        cfg = dataclasses.replace(Config.from_dict(checkpoint["config"]), compile_rollouts=compile_rollouts)
        acting = {**({"score_candidates": score_candidates} if score_candidates else {}),
                  **({"score_mc_steps": score_mc_steps} if score_mc_steps >= 0 else {})}
        if acting:
            cfg = dataclasses.replace(cfg, **acting)
            cfg.validate()
        agent = cls(cfg, torch_dev)
        agent.load_state_dict(checkpoint["agent"])
        if score_candidates:
            agent.planner.score_candidates = score_candidates
        return agent

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.q_scale.load_state_dict(state["q_scale"])
        load_optimizer_moments(self.optimizer, state["optimizer"])
        load_optimizer_moments(self.policy_optimizer, state["policy_optimizer"])
        if "score_network" in state:  # checkpoints of mbdpo 0.1 have none: the network stays untrained
            self.load_score_state_dict(state)
            self.set_acting_mode(state["acting_mode"])
        if "score_candidates" in state:  # absent before act_mode=auto chose it
            self.planner.score_candidates = state["score_candidates"]
        if self.chains is not None and "score_chains" in state:
            self.chains.load_state_dict(state["score_chains"])
