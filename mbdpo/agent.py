"""The MBDPO agent: a world model, its optimisers and a planner.

``Agent.update`` is one gradient step of ALGORITHM.md section 3 (model step,
policy step, Polyak update); ``Agent.act`` encodes an observation and asks the
planner for an action.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
import numpy as np
import torch

from mbdpo import energy as energy_objectives
from mbdpo.checkpoint import load_checkpoint
from mbdpo.config import Config, torch_device
from mbdpo.data.buffer import Batch
from mbdpo.losses import consistency_loss, policy_loss, reward_loss, td_target, termination_loss, value_loss
from mbdpo.model.running import RunningScale
from mbdpo.model.world_model import WorldModel
from mbdpo.planning import make_planner


@contextlib.contextmanager
def frozen(module: torch.nn.Module):
    """Temporarily stop gradients into ``module``'s parameters."""
    module.requires_grad_(False)
    try:
        yield
    finally:
        module.requires_grad_(True)


class Agent:
    def __init__(self, cfg: Config, device: torch.device):
        self.cfg = cfg
        self.device = device
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
        self.planner = make_planner(model, cfg)

    # --- acting ---------------------------------------------------------------
    def reset(self) -> None:
        """Call at the start of every episode (forgets the warm-start plan)."""
        self.planner.reset()

    @torch.no_grad()
    def act(self, obs: np.ndarray, explore: bool = False) -> np.ndarray:
        """Plan from one observation and return the action, a float32 array in [-1, 1]."""
        self.model.eval()
        obs_tensor = torch.as_tensor(obs, dtype=torch.float32, device=self.device).unsqueeze(0)
        z = self.model.encode(obs_tensor)
        return self.planner.act(z, explore=explore).cpu().numpy()

    # --- learning -------------------------------------------------------------
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One update of every component; returns detached loss values."""
        metrics, latents = self._update_model(batch)
        metrics.update(self._update_policy(latents))
        self.model.update_targets()
        return metrics

    def _update_model(self, batch: Batch) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Model step on every loss but the policy's; also returns the rolled-out latents, detached."""
        cfg, model = self.cfg, self.model
        with torch.no_grad():
            next_z = model.encode(batch.obs[1:], batch.task)
            next_action, _ = model.pi(next_z, batch.task)
            next_value = model.q_value(next_z, next_action, batch.task, reduce="min", target=True)
            target = td_target(batch.reward, next_value, batch.terminated, cfg.discount)

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
            losses["energy"] = self._energy_loss(torch.cat([zs[:1].detach(), next_z[:-1]]), batch.action)
            coefs["energy"] = cfg.energy_coef
        if cfg.episodic:
            losses["termination"] = termination_loss(model.termination(zs[1:], batch.task), batch.terminated)
            coefs["termination"] = cfg.termination_coef
        total = sum(coefs[name] * loss for name, loss in losses.items())

        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for group in self.optimizer.param_groups for p in group["params"]], cfg.grad_clip_norm
        )
        self.optimizer.step()
        metrics = {f"{name}_loss": loss.detach() for name, loss in losses.items()}
        metrics.update(total_loss=total.detach(), grad_norm=grad_norm.detach())
        return metrics, zs.detach()

    def _energy_loss(self, z: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
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
        if cfg.energy_loss == "infonce":
            loss = energy_objectives.infonce_energy_loss(model.energy, z, action, cfg.energy_negatives)
        else:
            with torch.no_grad():
                policy_action, _ = model.pi(z)
            loss = energy_objectives.binary_energy_loss(model.energy, z, action, policy_action)
        with torch.no_grad():
            model.energy_stats.update(model.energy(z, action))
        return loss

    def _update_policy(self, zs: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg, model = self.cfg, self.model
        action, info = model.pi(zs)
        with frozen(model.q_heads):
            q = model.q_value(zs, action, reduce="avg")
        self.q_scale.update(q[0])
        loss = policy_loss(self.q_scale(q), info["log_prob"], cfg.rho, cfg.entropy_coef)
        self.policy_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.policy_head.parameters(), cfg.grad_clip_norm)
        self.policy_optimizer.step()
        return {"policy_loss": loss.detach(), "q_scale": self.q_scale.value.clone()}

    # --- persistence ------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "q_scale": self.q_scale.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "policy_optimizer": self.policy_optimizer.state_dict(),
        }

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto") -> "Agent":
        """Load a trained agent from a checkpoint written by ``mbdpo train``."""
        torch_dev = torch_device(device)
        checkpoint = load_checkpoint(path, torch_dev)
        agent = cls(Config.from_dict(checkpoint["config"]), torch_dev)
        agent.load_state_dict(checkpoint["agent"])
        return agent

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.q_scale.load_state_dict(state["q_scale"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.policy_optimizer.load_state_dict(state["policy_optimizer"])
