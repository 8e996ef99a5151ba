"""One typed configuration for every part of mbdpo.

Defaults follow ALGORITHM.md (the paper and TD-MPC2). A configuration is built
once at start-up from ``key=value`` overrides (``Config.from_overrides``),
resolved (model-size preset, planner preset, derived quantities) and validated;
afterwards every module reads plain typed attributes.

Precedence, lowest first: field defaults < model-size preset < planner preset
< explicit overrides. So ``model_size=5 mlp_dim=256`` gives a size-5 model with
a 256-wide MLP.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from mbdpo.envs.dmcontrol import DMCONTROL_TASKS
from mbdpo.envs.pixels import IMAGE_SIZE
from mbdpo.envs.task_sets import is_task_set, padded_dims, task_shape
from mbdpo.errors import ConfigError, closest

# Model-size presets (ALGORITHM.md section 1):
# enc_dim, mlp_dim, latent_dim, num_enc_layers, num_q.
MODEL_SIZES: dict[int, dict[str, int]] = {
    1: dict(enc_dim=256, mlp_dim=384, latent_dim=128, num_enc_layers=2, num_q=2),
    5: dict(enc_dim=256, mlp_dim=512, latent_dim=512, num_enc_layers=2, num_q=5),
    19: dict(enc_dim=1024, mlp_dim=1024, latent_dim=768, num_enc_layers=3, num_q=5),
    48: dict(enc_dim=1792, mlp_dim=1792, latent_dim=768, num_enc_layers=4, num_q=5),
    317: dict(enc_dim=4096, mlp_dim=4096, latent_dim=1376, num_enc_layers=5, num_q=8),
}

# Planner presets, per planner. "paper": the paper's settings (MBDPO: 20
# diffusion steps x 512 samples; TD-MPC2: 6 MPPI iterations x 512). "cpu":
# settings that keep a CPU-only online run practical, with about as many
# imagined rollouts per action for both planners (1,280 and 1,536): the
# diffusion keeps the paper's 20 steps (its noise schedule) with 64 samples,
# because on a 6-dimensional action the number of steps decides how good a
# plan it finds, not the samples (README, "Planner presets"); MPPI keeps its
# 6 iterations with 256 samples. "auto" picks "cpu" on a CPU and "paper" on
# a GPU.
PLANNER_PRESETS: dict[str, dict[str, dict[str, int]]] = {
    "paper": {
        "diffusion": dict(diffusion_steps=20, num_samples=512, num_elites=64, num_pi_trajs=24),
        "mppi": dict(num_samples=512, num_elites=64, num_pi_trajs=24),
    },
    "cpu": {
        "diffusion": dict(diffusion_steps=20, num_samples=64, num_elites=8, num_pi_trajs=24),
        "mppi": dict(num_samples=256, num_elites=32, num_pi_trajs=24),
    },
}


@dataclass
class Config:
    """Every setting of a run. Fields are grouped as in ALGORITHM.md."""

    # --- run -----------------------------------------------------------------
    task: str = "cartpole-swingup"  # a task, or a multi-task set (mt30, mt80) trained offline from data_dir
    data_dir: str = ""  # offline multi-task training: the folder of the data set's chunk_*.pt files
    obs: Literal["state", "rgb"] = "state"  # rgb: 3 stacked 64x64 frames of a DMControl task (section 1)
    seed: int = 1
    steps: int = 100_000
    device: str = "auto"
    compile_rollouts: bool = False  # torch.compile the planners' imagined rollouts (first action ~25 s slower)
    run_dir: str = ""
    resume: Literal["auto", "never"] = "auto"
    eval_freq: int = 10_000
    log_freq: int = 1_000  # offline training: updates between rows of train.csv
    eval_episodes: int = 10
    save_buffer: bool = True
    save_video: bool = False  # write the first evaluation episode of each evaluation to videos/<step>.mp4
    wandb: bool = False
    wandb_project: str = "mbdpo"
    progress: bool = True

    # --- world model (section 1) ----------------------------------------------
    model_size: Literal[1, 5, 19, 48, 317] = 5
    enc_dim: int = 256
    mlp_dim: int = 512
    latent_dim: int = 512
    num_enc_layers: int = 2
    num_q: int = 5
    simnorm_dim: int = 8
    num_bins: int = 101
    vmin: float = -10.0
    vmax: float = 10.0
    dropout: float = 0.01
    log_std_min: float = -10.0
    log_std_max: float = 2.0
    episodic: bool = False

    # --- implicit energy (section 2) ------------------------------------------
    energy_loss: Literal["infonce", "binary"] = "infonce"
    energy_eta: float = 0.1
    energy_negatives: int = 8
    energy_momentum: float = 0.99
    energy_clip: float = 5.0

    # --- losses and optimisation (section 3) ----------------------------------
    batch_size: int = 256
    horizon: int = 3
    rho: float = 0.5
    lr: float = 3e-4
    enc_lr_scale: float = 0.3
    grad_clip_norm: float = 20.0
    tau: float = 0.01
    consistency_coef: float = 20.0
    reward_coef: float = 0.1
    value_coef: float = 0.1
    termination_coef: float = 1.0
    energy_coef: float = 1.0
    entropy_coef: float = 1e-4
    scale_rate: float = 0.01
    discount_min: float = 0.95
    discount_max: float = 0.995
    discount_denom: float = 5.0

    # --- planning (sections 4 and 6) -------------------------------------------
    planner: Literal["diffusion", "mppi"] = "diffusion"
    planner_preset: Literal["auto", "paper", "cpu"] = "auto"
    num_samples: int = 512
    num_elites: int = 64
    num_pi_trajs: int = 24
    diffusion_steps: int = 20
    diffusion_kernel: Literal["stochastic", "warm"] = "stochastic"
    diffusion_temperature: float = 0.5
    normalize_returns: bool = True
    beta_start: float = 1e-4
    beta_end: float = 1e-2
    mppi_iterations: int = 6
    mppi_temperature: float = 0.5
    min_std: float = 0.05
    max_std: float = 2.0
    explore_std: float = 0.05

    # --- amortised score network (section 5) ------------------------------------
    act_mode: Literal["mc", "score", "auto"] = "mc"
    score_target: Literal["denoiser", "chain"] = "denoiser"
    score_inputs: Literal["mixed", "sampler", "forward"] = "mixed"
    # The network's term that does not follow x_tau: tanh(v) ("none"), or tanh(prior + v) around the policy
    # prior's mean plan, which tracks the model as the prior is trained. The network learns Monte Carlo's
    # departure from the prior: from the current prior's plan ("prior"), or, with score_target=chain, from
    # the plan the prior made when each chain was planned ("chain": stored with it, by the same model).
    # "input": the current prior's plan is one of the network's inputs instead, and the term stays tanh(v);
    # on walker-walk at 10k 69 % of Monte Carlo against 25 % for "none" and 108 % for "prior" (benchmarks/NOTES.md)
    score_anchor: Literal["none", "prior", "chain", "input"] = "none"
    # The network's state input: the encoder's latent z (the paper's s_theta(z, x_tau, tau)), or the state
    # observation itself (symlog), whose space does not move as the encoder trains
    score_state: Literal["latent", "observation"] = "latent"
    # How the network acts: "chain" runs the paper's reverse chain with it (diffusion_steps calls); "jump" (with
    # score_target=chain) takes its denoised mean at the chain's start, one call: trained only there, on each
    # stored chain's start and final plan, it regresses the plan Monte Carlo ends at, given where it starts;
    # "policy" (with score_target=chain) replaces the network by a distilled policy: the prior's shape, started
    # from its weights, regressing the first action of stored chains' plans on the state; one call
    # (mbdpo/planning/distilled_policy.py)
    score_sampler: Literal["chain", "jump", "policy"] = "chain"
    # score_target=chain: the most recent Monte-Carlo chains of acting kept. Few, so that they are fresh: older
    # chains hold what older models planned (benchmarks/NOTES.md, "Acting with the score network")
    score_chains: int = 1000
    # score_target=chain: the fraction of exploring actions planned by Monte Carlo (their chains stored)
    # while act_mode=auto acts with the network; 0: none, so the chains stop at the switch
    score_refresh: float = 0.0
    # score_target=chain: 0 stores the chains of Monte-Carlo acting; r > 0 instead plans r chains per update (on
    # average) from the batch's start states, which the replay draws across all its episodes, and stores only
    # those: acting's chains are the consecutive states of its last episodes. Each costs about one Monte-Carlo action
    score_replay_chains: float = 0.0
    score_states: int = 32
    # Score-matching steps per training update, each on the next score_states states of the batch, at
    # score_updates times the cost (2.5x per update at 4); on walker-walk 4 helped the unanchored network
    # (67 % of Monte Carlo against 42 % at 22.5k), not the anchored one (benchmarks/NOTES.md, "Four score updates")
    score_updates: int = 1
    # Acting (and the held-out check) uses an exponential moving average of the network's trained weights with
    # this decay, as diffusion models sample with; it starts as the plain mean of the weights so far. 0: the
    # trained weights themselves; on walker-walk the evidence is mixed (benchmarks/NOTES.md)
    score_ema: float = 0.0
    # The score network's Adam step size. 0: lr, the world model's. 1e-3 did not help on walker-walk, averaged or
    # not (benchmarks/NOTES.md, "A larger step size for the network")
    score_lr: float = 0.0
    score_samples: int = 32  # 0: num_samples
    # The score network's hidden layers: score_layers of width score_mlp_dim (0: mlp_dim). Ten times the
    # parameters (3 x 1024) fitted the walker-walk Monte-Carlo denoiser no better (benchmarks/NOTES.md)
    score_mlp_dim: int = 0
    score_layers: int = 2
    # Weight of return guidance: the score network's denoised plan also climbs the imagined return J of the current
    # model (paper eq. 10), scaled as the policy prior's Q. 0: regression onto Monte-Carlo targets alone (eq. 16)
    score_return_coef: float = 0.0
    # Plans drawn from the score network per action (one batched reverse chain); the one of highest imagined
    # return under the current model is acted on. 1: the network's one sample, no rollouts. Helps where the
    # model ranks plans well, hurts where it does not (README, "Acting with the score network")
    score_candidates: int = 1
    # Acting with the score network, the last (least noisy) k of the diffusion_steps reverse steps denoise by Monte
    # Carlo under the current model instead: the network proposes, the model refines, for k / diffusion_steps of a
    # Monte-Carlo action's rollouts. 0: the network alone, no rollouts
    score_mc_steps: int = 0
    score_check_freq: int = 2500
    score_check_states: int = 32
    # act_mode=auto acts with the network while its evaluation return loses at most this fraction of Monte Carlo's,
    # by the paired episodes' mean difference less score_switch_confidence standard errors (0: the mean alone)
    score_switch_gap: float = 0.05
    score_switch_confidence: float = 1.0

    # --- online training (section 7) -------------------------------------------
    seed_steps: int = 0  # 0: max(1000, 5 x episode length)
    buffer_size: int = 1_000_000

    # --- fields derived at resolution (not user-settable) ----------------------
    obs_dim: int = field(default=0, metadata={"derived": True})  # state features, or stacked colour channels
    action_dim: int = field(default=0, metadata={"derived": True})
    episode_length: int = field(default=0, metadata={"derived": True})
    discount: float = field(default=0.0, metadata={"derived": True})
    num_tasks: int = field(default=1, metadata={"derived": True})
    task_dim: int = field(default=0, metadata={"derived": True})
    # Multi-task models only (empty otherwise), one entry per task index:
    tasks: list[str] = field(default_factory=list, metadata={"derived": True})
    action_dims: list[int] = field(default_factory=list, metadata={"derived": True})
    task_discounts: list[float] = field(default_factory=list, metadata={"derived": True})

    # ------------------------------------------------------------------------
    @classmethod
    def from_overrides(cls, overrides: dict[str, Any]) -> "Config":
        """Build a configuration from ``{key: value}`` (values may be strings).

        Applies the model-size preset and the planner preset beneath the
        explicit overrides; ``planner_preset=auto`` becomes "paper" when the
        run's device is a GPU and "cpu" otherwise.
        """
        parsed = parse_values(overrides, cls)
        size = parsed.get("model_size", cls.model_size)
        preset = parsed.get("planner_preset", cls.planner_preset)
        if preset == "auto":
            device = torch_device(parsed.get("device", cls.device))
            preset = "paper" if device.type == "cuda" else "cpu"
        planner = parsed.get("planner", cls.planner)
        values = {**MODEL_SIZES[size], **PLANNER_PRESETS[preset][planner], **parsed, "planner_preset": preset}
        return cls(**values)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Config":
        """Rebuild a resolved configuration saved by :meth:`to_dict`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"saved config has unknown key {unknown[0]!r}; was it written by a newer mbdpo?")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    def resolve(self, obs_dim: int, action_dim: int, episode_length: int) -> "Config":
        """Fill in the environment-dependent fields of a single-task run and validate.

        Returns a new configuration; ``self`` is not changed.
        """
        cfg = self.with_environment(obs_dim, action_dim, episode_length)
        cfg.validate()
        return cfg

    def with_environment(self, obs_dim: int, action_dim: int, episode_length: int) -> "Config":
        """A copy with the environment-dependent fields filled in and the settings that follow from them
        (``discount``, and ``seed_steps`` when 0); not validated."""
        cfg = dataclasses.replace(self, obs_dim=obs_dim, action_dim=action_dim, episode_length=episode_length)
        cfg.discount = discount_from_episode_length(
            episode_length, cfg.discount_min, cfg.discount_max, cfg.discount_denom
        )
        if cfg.seed_steps == 0:
            cfg.seed_steps = max(1000, 5 * episode_length)
        return cfg

    def resolve_multitask(self, tasks: Sequence[str]) -> "Config":
        """Resolve a multi-task model of ``tasks`` (in data-set index order, e.g. mt30).

        Observations and actions are zero-padded to the largest task's; each
        task keeps its own action dimensions (the action mask) and its own
        discount from its episode length.
        """
        shapes = [task_shape(task) for task in tasks]
        if len(shapes) < 2:
            raise ConfigError(f"a multi-task model needs at least 2 tasks, got {list(tasks)}")
        cfg = dataclasses.replace(
            self, num_tasks=len(tasks), task_dim=64 if len(tasks) <= 30 else 96, tasks=list(tasks),
            action_dims=[s.action_dim for s in shapes],
            task_discounts=[
                discount_from_episode_length(s.episode_length, self.discount_min, self.discount_max, self.discount_denom)
                for s in shapes
            ],
        )
        return cfg.resolve(*padded_dims(tasks), max(s.episode_length for s in shapes))

    @property
    def multitask(self) -> bool:
        return self.num_tasks > 1

    @property
    def obs_shape(self) -> tuple[int, ...]:
        """One observation's shape: ``(obs_dim,)`` state features, or ``(channels, 64, 64)`` frames."""
        return (self.obs_dim, IMAGE_SIZE, IMAGE_SIZE) if self.obs == "rgb" else (self.obs_dim,)

    def validate(self) -> None:
        """Range checks that a type alone cannot express."""
        positive = [
            "steps", "eval_freq", "log_freq", "eval_episodes", "batch_size", "horizon", "num_samples",
            "diffusion_steps", "mppi_iterations", "buffer_size", "enc_dim", "mlp_dim",
            "latent_dim", "num_enc_layers", "num_bins", "diffusion_temperature", "score_check_freq",
            "score_check_states", "score_layers",
        ]
        for key in positive:
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key}={getattr(self, key)} must be positive")
        if self.num_q < 2:
            raise ConfigError(f"num_q={self.num_q} must be at least 2 (targets use the min of 2 heads)")
        if self.latent_dim % self.simnorm_dim:
            raise ConfigError(
                f"latent_dim={self.latent_dim} must be a multiple of simnorm_dim={self.simnorm_dim}"
            )
        if not 0 <= self.num_pi_trajs < self.num_samples:
            raise ConfigError(f"num_pi_trajs={self.num_pi_trajs} must be in [0, num_samples={self.num_samples})")
        if not 0 <= self.num_elites <= self.num_samples:
            raise ConfigError(f"num_elites={self.num_elites} must be in [0, num_samples={self.num_samples}]")
        if self.planner == "mppi" and self.num_elites < 1:
            raise ConfigError(f"num_elites={self.num_elites} must be at least 1 with planner=mppi")
        if self.energy_negatives < 1 or self.energy_negatives >= self.batch_size:
            raise ConfigError(
                f"energy_negatives={self.energy_negatives} must be in [1, batch_size={self.batch_size})"
            )
        if not 0 < self.beta_start <= self.beta_end < 1:
            raise ConfigError(f"need 0 < beta_start <= beta_end < 1, got {self.beta_start}, {self.beta_end}")
        if self.act_mode != "mc" and self.planner != "diffusion":
            raise ConfigError(f"act_mode={self.act_mode} needs planner=diffusion; planner={self.planner} acts by mc only")
        if self.act_mode != "mc" and not 0 < self.score_states <= self.batch_size:
            raise ConfigError(f"score_states={self.score_states} must be in [1, batch_size={self.batch_size}]")
        if self.act_mode != "mc" and not 0 < self.score_updates * self.score_states <= self.batch_size:
            raise ConfigError(f"score_updates={self.score_updates} must be in [1, batch_size // score_states="
                              f"{self.batch_size // self.score_states}] (each takes its own score_states of the batch)")
        if self.score_mlp_dim < 0:
            raise ConfigError(f"score_mlp_dim={self.score_mlp_dim} must be >= 0 (0: mlp_dim={self.mlp_dim})")
        if self.score_lr < 0:
            raise ConfigError(f"score_lr={self.score_lr} must be >= 0 (0: lr={self.lr})")
        if not 0 <= self.score_ema < 1:
            raise ConfigError(f"score_ema={self.score_ema} must be a decay in [0, 1) (0: act with the trained weights)")
        if self.score_target == "chain" and self.act_mode == "score" and not self.score_replay_chains:
            raise ConfigError("score_target=chain with act_mode=score needs chains planned from the replay, which "
                              "score_replay_chains=0 turns off; valid: score_replay_chains>0 (e.g. 0.25), "
                              "act_mode=auto or score_target=denoiser")
        if self.score_anchor == "chain" and (self.score_target != "chain" or self.act_mode == "mc"):
            raise ConfigError(f"score_anchor=chain stores the prior's plan with each chain of act_mode=auto|score "
                              f"score_target=chain, not act_mode={self.act_mode} score_target={self.score_target}; "
                              "valid otherwise: score_anchor=none|prior|input")
        if self.score_state == "observation" and self.obs != "state":
            raise ConfigError(f"score_state=observation takes state observations, not obs={self.obs}; "
                              "valid: score_state=latent, or obs=state")
        if self.score_sampler == "jump" and (self.score_target != "chain" or self.score_mc_steps):
            raise ConfigError(f"score_sampler=jump takes the network's denoised mean at the chain's start, trained on "
                              f"stored chains' final plans, so it needs score_target=chain and score_mc_steps=0, not "
                              f"score_target={self.score_target} score_mc_steps={self.score_mc_steps}; "
                              "valid otherwise: score_sampler=chain")
        if self.score_sampler == "policy" and self.score_target != "chain":
            raise ConfigError(f"score_sampler=policy regresses the first action of stored chains' plans, so it "
                              f"needs score_target=chain, not score_target={self.score_target}")
        policy_unused = {"score_anchor": (self.score_anchor, "none"), "score_state": (self.score_state, "latent"),
                         "score_candidates": (self.score_candidates, 1), "score_mc_steps": (self.score_mc_steps, 0),
                         "score_return_coef": (self.score_return_coef, 0), "score_mlp_dim": (self.score_mlp_dim, 0),
                         "score_layers": (self.score_layers, 2)}
        for key, (value, only) in policy_unused.items():
            if self.score_sampler == "policy" and value != only:
                raise ConfigError(f"{key}={value} is a setting of the score network, which score_sampler=policy "
                                  f"replaces by the distilled policy; valid with it: {key}={only}")
        if self.score_chains < self.score_states:
            raise ConfigError(f"score_chains={self.score_chains} must be at least score_states={self.score_states}")
        if not 0 <= self.score_replay_chains <= min(self.batch_size, self.score_chains):
            raise ConfigError(f"score_replay_chains={self.score_replay_chains} must be in [0, "
                              f"{min(self.batch_size, self.score_chains)}] (chains per update, at most batch_size "
                              "and score_chains)")
        if self.score_replay_chains and (self.score_target != "chain" or self.act_mode == "mc"):
            raise ConfigError(f"score_replay_chains={self.score_replay_chains} plans chains for act_mode=auto|score "
                              f"score_target=chain, not act_mode={self.act_mode} score_target={self.score_target}; "
                              "valid otherwise: score_replay_chains=0")
        if not 0 <= self.score_refresh <= 1:
            raise ConfigError(f"score_refresh={self.score_refresh} must be a fraction in [0, 1]")
        if self.score_refresh and (self.score_target != "chain" or self.act_mode != "auto"):
            raise ConfigError(f"score_refresh={self.score_refresh} refreshes the chains of act_mode=auto "
                              f"score_target=chain, not act_mode={self.act_mode} score_target={self.score_target}; "
                              "valid otherwise: score_refresh=0")
        if self.score_refresh and self.score_replay_chains:
            raise ConfigError(f"score_refresh={self.score_refresh} stores chains of acting, which "
                              f"score_replay_chains={self.score_replay_chains} replaces by chains from the replay; "
                              "valid: one of them 0")
        if self.score_candidates < 1:
            raise ConfigError(f"score_candidates={self.score_candidates} must be >= 1 (1: the network's one plan)")
        if self.score_candidates > 1 and self.diffusion_kernel == "warm" and self.act_mode != "mc":
            raise ConfigError(f"score_candidates={self.score_candidates} needs diffusion_kernel=stochastic: the warm "
                              "kernel's network chain has no noise, so every candidate would be the same plan; "
                              "valid with diffusion_kernel=warm: score_candidates=1")
        if not 0 <= self.score_mc_steps < self.diffusion_steps:
            raise ConfigError(f"score_mc_steps={self.score_mc_steps} must be in [0, diffusion_steps - 1 = "
                              f"{self.diffusion_steps - 1}] (0: the network alone)")
        if self.score_mc_steps and (self.act_mode == "mc" or self.score_candidates > 1):
            raise ConfigError(f"score_mc_steps={self.score_mc_steps} refines the score network's one plan, not "
                              f"act_mode={self.act_mode} with score_candidates={self.score_candidates}; valid: "
                              "act_mode=auto|score with score_candidates=1, or score_mc_steps=0")
        if self.score_switch_confidence < 0:
            raise ConfigError(f"score_switch_confidence={self.score_switch_confidence} must be >= 0 (standard "
                              "errors of the paired difference; 0: the mean alone)")
        if self.score_samples < 0:
            raise ConfigError(f"score_samples={self.score_samples} must be >= 0 (0: num_samples)")
        if self.score_return_coef < 0:
            raise ConfigError(f"score_return_coef={self.score_return_coef} must be >= 0 (0: no return guidance)")
        if self.score_return_coef and self.act_mode == "mc":
            raise ConfigError(f"score_return_coef={self.score_return_coef} guides the score network, which "
                              "act_mode=mc does not train; valid: act_mode=auto|score, or score_return_coef=0")
        if self.obs == "rgb" and self.task not in DMCONTROL_TASKS:
            raise ConfigError(f"obs=rgb is for single DMControl tasks (e.g. walker-walk), not task={self.task}")
        if self.data_dir and not is_task_set(self.task):
            raise ConfigError(f"data_dir= is for offline multi-task training (task=mt30 or mt80), not task={self.task}")
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device={self.device!r} is not valid; valid: auto, cpu, cuda, cuda:N")


def torch_device(name: str) -> torch.device:
    """The device a run uses: ``auto`` is the first GPU when there is one."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} asked for, but no CUDA device is available; valid here: auto, cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device={name!r} is not valid; valid: auto, cpu, cuda, cuda:N") from None


def discount_from_episode_length(length: int, low: float, high: float, denom: float) -> float:
    """TD-MPC2's discount heuristic: clip((L/denom - 1) / (L/denom), low, high).

    Gives 0.99 for 500-step DMControl episodes and 0.95 for 100-step tasks.
    """
    frac = length / denom
    return float(min(max((frac - 1) / frac, low), high))


def user_keys(schema: type) -> list[str]:
    """Fields of a dataclass ``schema`` that a user may set on the command line."""
    return [f.name for f in dataclasses.fields(schema) if not f.metadata.get("derived")]


def parse_overrides(tokens: list[str], schema: type | None = None) -> dict[str, str]:
    """Split ``key=value`` command-line tokens into a dict, checking each key against ``schema``."""
    schema = schema or Config
    overrides: dict[str, str] = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise ConfigError(f"argument {token!r} is not of the form key=value")
        _check_key(key, schema)
        overrides[key] = value
    return overrides


def parse_values(overrides: dict[str, Any], schema: type) -> dict[str, Any]:
    """Convert each value to the type that ``schema`` declares for its key."""
    return {key: _parse_value(key, value, schema) for key, value in overrides.items()}


def _check_key(key: str, schema: type) -> None:
    valid = user_keys(schema)
    if key not in valid:
        raise ConfigError(f"unknown config key {key!r}; {closest(key, valid)}")


def _parse_value(key: str, value: Any, schema: type) -> Any:
    """Convert ``value`` (often a string) to the declared type of ``key``."""
    _check_key(key, schema)
    hint = typing.get_type_hints(schema)[key]
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        converted = _convert(key, value, type(choices[0]))
        if converted not in choices:
            valid = ", ".join(str(c) for c in choices)
            raise ConfigError(f"{key}={value!r} is not valid; valid: {valid}")
        return converted
    return _convert(key, value, hint)


def _convert(key: str, value: Any, kind: type) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("true", "1", "yes"):
            return True
        if text in ("false", "0", "no"):
            return False
        raise ConfigError(f"{key}={value!r} is not a boolean; use true or false")
    try:
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}={value!r} is not a valid {kind.__name__}") from None
