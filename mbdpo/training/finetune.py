"""Offline-to-online fine-tuning of a multi-task checkpoint on one task (ALGORITHM.md section 7).

``mbdpo finetune checkpoint=PATH task=walker-run steps=40000`` loads a
checkpoint of ``mbdpo train task=mt30 ...`` and trains it online on one task
(see :class:`mbdpo.training.online.OnlineTrainer`): the planner acts from the
first step, one update per step, every module (world model, policy prior,
energy head, score network) keeps its optimiser state; ``score_sampler=policy`` on a checkpoint
trained without it (or the reverse) starts that kind of network untrained. ``steps`` defaults to
40,000 and ``eval_freq`` to a tenth of ``steps``, whatever the checkpoint's
offline run used.

The task's embedding:
- a task of the checkpoint's set that its data set contained keeps its trained embedding;
- a task of the set without data, or a task outside the set (appended as a
  new index; its observations and actions must fit the padded spaces), starts
  from the embedding of a related trained task: ``init_from=TASK``, or by
  default :func:`related_task` (same domain first, then same action size).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from mbdpo.agent import Agent, for_acting_network
from mbdpo.checkpoint import AGENT, load_checkpoint
from mbdpo.config import Config, discount_from_episode_length, parse_values, torch_device
from mbdpo.envs import make_env
from mbdpo.errors import ConfigError, closest

FINETUNE_STEPS = 40_000  # the paper's fine-tuning budget, unless steps= is given
EVALUATIONS = 10  # unless eval_freq= is given, a run evaluates every steps / 10 steps (and at step 0)
# Settings that shape the networks: a fine-tuning run keeps the checkpoint's.
ARCHITECTURE_KEYS = {
    "model_size", "enc_dim", "mlp_dim", "latent_dim", "num_enc_layers", "num_q", "simnorm_dim", "num_bins",
    "horizon", "episodic", "obs", "planner",
}


def related_task(task: str, candidates: list[str], action_dims: dict[str, int], action_dim: int) -> str:
    """The trained task a new task's embedding starts from: the first of ``candidates`` in the same
    domain (``walker-run`` -> ``walker-walk``), else the first with the same action size, else the first."""
    domain = task.split("-")[0]
    for rule in (lambda c: c.split("-")[0] == domain, lambda c: action_dims[c] == action_dim, lambda c: True):
        matches = [c for c in candidates if rule(c)]
        if matches:
            return matches[0]
    raise ConfigError("the checkpoint lists no trained tasks")


def finetune_config(saved: Config, trained: list[str], overrides: dict[str, Any], init_from: str) -> tuple[Config, str]:
    """The fine-tuning run's configuration, and the task whose embedding the new task starts from
    (``""`` when the task keeps its own trained embedding)."""
    changed = sorted(k for k in ARCHITECTURE_KEYS & set(overrides) if overrides[k] != getattr(saved, k))
    if changed:
        raise ConfigError(f"{changed[0]}= cannot change when fine-tuning (the checkpoint's networks are fixed)")
    task = overrides.get("task", "")
    if not task:
        raise ConfigError("mbdpo finetune needs task=TASK")
    steps = overrides.get("steps", FINETUNE_STEPS)
    defaults = {"run_dir": "", "data_dir": "", "steps": steps, "eval_freq": max(1, steps // EVALUATIONS)}
    cfg = dataclasses.replace(saved, **{**defaults, **overrides})
    env = make_env(task, cfg.seed)
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    if obs_dim > cfg.obs_dim or action_dim > cfg.action_dim:
        raise ConfigError(f"task={task} has {obs_dim} observations and {action_dim} actions; the checkpoint's "
                          f"padded spaces hold {cfg.obs_dim} and {cfg.action_dim}")
    if task not in cfg.tasks:
        cfg = dataclasses.replace(
            cfg, num_tasks=cfg.num_tasks + 1, tasks=[*cfg.tasks, task], action_dims=[*cfg.action_dims, action_dim],
            task_discounts=[*cfg.task_discounts, discount_from_episode_length(
                env.episode_length, cfg.discount_min, cfg.discount_max, cfg.discount_denom)],
        )
    cfg.validate()
    if task in trained and not init_from:
        return cfg, ""
    source = init_from or related_task(task, trained, dict(zip(cfg.tasks, cfg.action_dims)), action_dim)
    if source not in trained:
        raise ConfigError(f"init_from={source!r} is not a task the checkpoint was trained on; "
                          f"{closest(source, trained)}")
    return cfg, source


def embedding_parameter_index(agent: Agent) -> int:
    """Position of the task embedding among the world-model optimiser's parameters (its state's key)."""
    params = [p for group in agent.optimizer.param_groups for p in group["params"]]
    return next(i for i, p in enumerate(params) if p is agent.model.task_embedding.weight)


def adapt_state(state: dict, agent: Agent, task: int, source: int) -> dict:
    """The checkpoint's agent state for ``agent``: an appended task gets an embedding row (and zero Adam
    moments), the task's embedding is copied from ``source`` (if ``source >= 0``), and the action masks and
    discounts are the fine-tuning configuration's."""
    model = dict(state["model"])
    embedding = model["task_embedding.weight"]
    if len(embedding) < agent.cfg.num_tasks:
        model["task_embedding.weight"] = torch.cat([embedding, embedding[:1]])
        optimizer = {**state["optimizer"], "state": dict(state["optimizer"]["state"])}
        index = embedding_parameter_index(agent)
        if index in optimizer["state"]:  # absent if the embedding never had a gradient
            moments = dict(optimizer["state"][index])
            for key in ("exp_avg", "exp_avg_sq"):
                moments[key] = torch.cat([moments[key], torch.zeros_like(moments[key][:1])])
            optimizer["state"][index] = moments
        state = {**state, "optimizer": optimizer}
    if source >= 0:
        model["task_embedding.weight"] = model["task_embedding.weight"].clone()
        model["task_embedding.weight"][task] = model["task_embedding.weight"][source]
    model["action_masks"], model["discounts"] = agent.model.action_masks, agent.model.discounts
    return {**state, "model": model}


def finetune(checkpoint: str | Path, init_from: str = "", **overrides: Any) -> Path:
    """Fine-tune a multi-task checkpoint online; ``overrides`` are config settings (``task`` is required).
    Returns the run directory."""
    from mbdpo.training.online import OnlineTrainer

    parsed = parse_values(overrides, Config)
    payload = load_checkpoint(checkpoint, torch_device(parsed.get("device", "auto")), holds=AGENT)
    saved = Config.from_dict(payload["config"])
    if not saved.multitask:
        raise ConfigError(f"checkpoint {str(checkpoint)!r} is single-task ({saved.task}); fine-tuning starts "
                          f"from a multi-task checkpoint (mbdpo train task=mt30 ...)")
    trained = payload.get("trained_tasks", saved.tasks)
    cfg, source = finetune_config(saved, trained, parsed, init_from)
    task, source_index = cfg.tasks.index(cfg.task), cfg.tasks.index(source) if source else -1
    if source:
        print(f"mbdpo: {cfg.task} starts from the task embedding of {source}")

    def pretrained(agent: Agent) -> dict:
        return adapt_state(for_acting_network(payload["agent"], saved, cfg), agent, task, source_index)

    return OnlineTrainer(cfg, pretrained=pretrained).run()
