"""Command line: ``mbdpo train|eval|finetune|collect|plot|compare key=value ...``.

``mbdpo plot curves|diagnostics RUN_DIR... key=value`` takes run directories
(or folders holding runs) as plain arguments; ``--key value`` is read as
``key=value`` there too.

Errors caused by the input (unknown key, bad value, unknown task, bad
checkpoint) are printed on one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mbdpo.analysis.compare import CompareOptions
from mbdpo.data.collect import CollectOptions
from mbdpo.config import Config, parse_overrides, parse_values, user_keys
from mbdpo.errors import ConfigError, MBDPOError, closest
from mbdpo.training.stop import RunStopped


@dataclass
class EvalOptions:
    """Settings of ``mbdpo eval``."""

    checkpoint: str = ""
    episodes: int = 10
    seed: int = 0  # 0: the seed of the run that wrote the checkpoint
    device: str = "auto"
    out: str = ""  # CSV to append to; default: eval_checkpoint.csv next to the checkpoint
    # run: as the run was acting when it saved; prior: the policy prior's mean action, no planning
    act_mode: Literal["run", "mc", "score", "prior"] = "run"
    # Acting with the score network: rank this many of its plans by imagined return (score_candidates); 0: the run's
    score_candidates: int = 0
    # Acting with the score network: its last k reverse steps by Monte Carlo (score_mc_steps); -1: the run's
    score_mc_steps: int = -1
    task: str = ""  # multi-task checkpoints: one of its tasks, or its set (default: every task with an environment)
    save_video: bool = False  # single-task checkpoints: the first episode as an MP4 next to the CSV


@dataclass
class FinetuneOptions:
    """Settings of ``mbdpo finetune`` besides the train settings (task=, steps=, seed=, ... as for train)."""

    checkpoint: str = ""  # a multi-task checkpoint (mbdpo train task=mt30 ...)
    init_from: str = ""  # trained task whose embedding a new task starts from; default: a related task


@dataclass
class CurvesOptions:
    """Settings of ``mbdpo plot curves RUN_DIR...``."""

    reference: str = ""  # published curves to add, comma-separated: mbdpo, tdmpc2, tdmpc, dreamerv3, sac, ...
    metric: str = "episode_reward"  # an eval.csv column
    out: str = "curves"  # written as out.png and out.svg


@dataclass
class DiagnosticsOptions:
    """Settings of ``mbdpo plot diagnostics RUN_DIR...``."""

    out: str = "diagnostics"


@dataclass
class LatentsOptions:
    """Settings of ``mbdpo plot latents`` and ``mbdpo plot tasks``."""

    checkpoint: str = ""
    episodes: int = 3  # evaluation episodes whose latent states are embedded (latents only)
    points: int = 1500  # at most this many states are embedded (evenly subsampled; latents only)
    overlay: bool = False  # all episodes in one panel (latents only)
    seed: int = 0  # 0: the seed of the run that wrote the checkpoint
    device: str = "auto"
    out: str = ""  # default: latents / task_embeddings next to the checkpoint


PLOT_KINDS = {"curves": CurvesOptions, "diagnostics": DiagnosticsOptions, "latents": LatentsOptions,
              "tasks": LatentsOptions}


def train_command(tokens: list[str]) -> None:
    from mbdpo.training.launch import train

    run_dir = train(parse_overrides(tokens))
    print(f"done: {run_dir}")


def acting_seed(requested: int, run_seed: int) -> int:
    """The seed a command acts with from a checkpoint (``seed=``, else the run's), after seeding every
    random stream with it: the episodes' initial states and the planner's samples, so that the same
    command gives the same numbers."""
    from mbdpo.training.run_dir import seed_everything

    seed = requested or run_seed
    seed_everything(seed)
    return seed


def acting_description(agent) -> str:
    """How ``agent`` acts, for ``mbdpo eval``'s summary: its mode and, with the score network, how many of
    its plans it ranks and how many of its last reverse steps Monte Carlo denoises."""
    text = f"acting with {agent.acting_mode}"
    if agent.acting_mode == "score" and agent.planner.score_candidates > 1:
        text += f", the best of {agent.planner.score_candidates} plans"
    if agent.acting_mode == "score" and agent.cfg.score_mc_steps:
        text += f", Monte Carlo on its last {agent.cfg.score_mc_steps} of {agent.cfg.diffusion_steps} reverse steps"
    return text


def eval_command(tokens: list[str]) -> None:
    from mbdpo.agent import Agent
    from mbdpo.envs import make_env
    from mbdpo.training.evaluate import episode_rewards_text, evaluate, summarise
    from mbdpo.training.logger import CSVLog
    from mbdpo.training.video import require_video_writer

    options = EvalOptions(**parse_values(parse_overrides(tokens, EvalOptions), EvalOptions))
    if not options.checkpoint:
        raise ConfigError("mbdpo eval needs checkpoint=PATH")
    if options.score_candidates < 0:
        raise ConfigError(f"score_candidates={options.score_candidates} must be >= 0 (0: the run's)")
    if options.score_mc_steps < -1:
        raise ConfigError(f"score_mc_steps={options.score_mc_steps} must be >= -1 (-1: the run's)")
    agent = Agent.from_checkpoint(options.checkpoint, options.device, score_candidates=options.score_candidates,
                                  score_mc_steps=options.score_mc_steps)
    if options.act_mode != "run":
        agent.set_acting_mode(options.act_mode)
    cfg = agent.cfg
    seed = acting_seed(options.seed, cfg.seed)
    if cfg.multitask:
        eval_tasks_command(agent, options, seed)
        return
    if options.task not in ("", cfg.task):
        raise ConfigError(f"task={options.task!r}: this checkpoint is single-task ({cfg.task})")
    out = Path(options.out) if options.out else Path(options.checkpoint).with_name("eval_checkpoint.csv")
    if options.save_video:
        require_video_writer()
    video = out.with_suffix(".mp4") if options.save_video else None
    results = evaluate(agent, make_env(cfg.task, seed, cfg.obs), options.episodes, seed, video=video)
    summary = summarise(results)
    print(f"{cfg.task}: return {summary['episode_reward']:.1f} +- {summary['episode_reward_std']:.1f} "
          f"over {options.episodes} episodes (success {summary['episode_success']:.2f}), "
          f"{acting_description(agent)}")
    row = {"checkpoint": options.checkpoint, "task": cfg.task, "act_mode": agent.acting_mode,
           "episodes": options.episodes, "seed": seed,
           "mean_reward": summary["episode_reward"], "std_reward": summary["episode_reward_std"],
           "mean_success": summary["episode_success"], "mean_length": summary["episode_length"],
           "acting": acting_description(agent), "episode_rewards": episode_rewards_text(results)}
    CSVLog(out, resume_step=None).write(row)
    print(f"written: {out}" + (f" and {video}" if video else ""))


def eval_tasks_command(agent, options: EvalOptions, seed: int) -> None:
    """``mbdpo eval`` of a multi-task checkpoint: a per-task table and the normalised score."""
    from mbdpo.envs import available
    from mbdpo.training.evaluate import evaluate_tasks, normalised_score
    from mbdpo.training.logger import CSVLog

    cfg = agent.cfg
    if options.task in ("", cfg.task):
        names = [task for task in cfg.tasks if available(task)]
        skipped = [task for task in cfg.tasks if not available(task)]
        if skipped:
            print(f"not evaluated (no environment installed): {', '.join(skipped)}")
    elif options.task in cfg.tasks:
        names = [options.task]
    else:
        raise ConfigError(f"task={options.task!r} is not a task of this checkpoint; "
                          f"{closest(options.task, [cfg.task, *cfg.tasks])}")
    rows = evaluate_tasks(agent, [cfg.tasks.index(name) for name in names], options.episodes, seed)
    score = normalised_score(rows)
    width = max(len(name) for name in names)
    print(f"{'task':<{width}}  {'return':>8}  {'std':>6}  {'success':>7}")
    for row in rows:
        print(f"{row['task']:<{width}}  {row['episode_reward']:8.1f}  {row['episode_reward_std']:6.1f}  "
              f"{row['episode_success']:7.2f}")
    print(f"normalised score over {len(rows)} tasks: {score:.1f} (DMControl return / 10, MetaWorld success x 100)")
    out = Path(options.out) if options.out else Path(options.checkpoint).with_name("eval_tasks.csv")
    log = CSVLog(out, resume_step=None)
    for row in rows:
        log.write({"checkpoint": options.checkpoint, "task": row["task"], "act_mode": agent.acting_mode,
                   "episodes": options.episodes, "seed": seed, "mean_reward": row["episode_reward"],
                   "std_reward": row["episode_reward_std"], "mean_success": row["episode_success"], "score": ""})
    log.write({"checkpoint": options.checkpoint, "task": cfg.task, "act_mode": agent.acting_mode,
               "episodes": options.episodes, "seed": seed, "score": score})
    print(f"written: {out}")


def finetune_command(tokens: list[str]) -> None:
    from mbdpo.training.finetune import finetune

    options_tokens = [t for t in tokens if t.partition("=")[0] in ("checkpoint", "init_from")]
    options = FinetuneOptions(**parse_values(parse_overrides(options_tokens, FinetuneOptions), FinetuneOptions))
    if not options.checkpoint:
        raise ConfigError("mbdpo finetune needs checkpoint=PATH")
    overrides = parse_overrides([t for t in tokens if t not in options_tokens])
    print(f"done: {finetune(options.checkpoint, options.init_from, **overrides)}")


def collect_command(tokens: list[str]) -> None:
    from mbdpo.data.collect import collect

    options = CollectOptions(**parse_values(parse_overrides(tokens, CollectOptions), CollectOptions))
    written = collect(options)
    print(f"written: {len(written)} chunk(s) in {options.out}: " + ", ".join(p.name for p in written))


def flags_as_overrides(tokens: list[str]) -> list[str]:
    """``--key value`` and ``--key=value`` as ``key=value``; other tokens unchanged."""
    result, index = [], 0
    while index < len(tokens):
        token = tokens[index]
        if token.startswith("--") and "=" not in token and index + 1 < len(tokens):
            result.append(f"{token[2:]}={tokens[index + 1]}")
            index += 2
            continue
        result.append(token.removeprefix("--"))
        index += 1
    return result


def plot_command(tokens: list[str]) -> None:
    if not tokens or tokens[0] not in PLOT_KINDS:
        given = repr(tokens[0]) if tokens else "nothing"
        raise ConfigError(f"mbdpo plot needs a kind first, got {given}; valid: {', '.join(PLOT_KINDS)}")
    kind, tokens = tokens[0], flags_as_overrides(tokens[1:])
    schema = PLOT_KINDS[kind]
    paths = [token for token in tokens if "=" not in token]
    options = schema(**parse_values(parse_overrides([t for t in tokens if "=" in t], schema), schema))
    if kind in ("curves", "diagnostics"):
        written = plot_runs(kind, paths, options)
    else:
        if paths:
            raise ConfigError(f"mbdpo plot {kind} takes checkpoint=PATH, not {paths[0]!r}")
        written = plot_checkpoint(kind, options)
    print("written: " + ", ".join(str(path) for path in written))


def plot_runs(kind: str, paths: list[str], options: CurvesOptions | DiagnosticsOptions) -> list[Path]:
    from mbdpo.analysis.plots import plot_curves, plot_diagnostics
    from mbdpo.analysis.runs import check_reference, find_runs, group_runs

    groups = group_runs(find_runs(paths))
    if kind == "diagnostics":
        return plot_diagnostics(groups, Path(options.out))
    references = [check_reference(name) for name in options.reference.split(",") if name]
    return plot_curves(groups, Path(options.out), options.metric, references)


def plot_checkpoint(kind: str, options: LatentsOptions) -> list[Path]:
    from mbdpo.agent import Agent
    from mbdpo.analysis import latents

    if not options.checkpoint:
        raise ConfigError(f"mbdpo plot {kind} needs checkpoint=PATH")
    agent = Agent.from_checkpoint(options.checkpoint, options.device)
    seed = acting_seed(options.seed, agent.cfg.seed)
    default_name = "latents" if kind == "latents" else "task_embeddings"
    out = Path(options.out) if options.out else Path(options.checkpoint).with_name(default_name)
    if kind == "tasks":
        embedded = latents.embed_tasks(agent, seed)
        return latents.plot_tasks(embedded, agent.cfg.tasks, out)
    states, times = latents.subsample(latents.episode_latents(agent, options.episodes, seed), options.points)
    return latents.plot_trajectories(latents.embed_trajectories(states, seed), times, agent.cfg.task, out,
                                     options.overlay)


def compare_command(tokens: list[str]) -> None:
    from mbdpo.analysis.compare import compare

    options = CompareOptions(**parse_values(parse_overrides(tokens, CompareOptions), CompareOptions))
    print(f"written: {compare(options)}")


def _keys_help(schema: type) -> str:
    defaults = {f.name: f.default for f in dataclasses.fields(schema)}
    return "\n".join(f"  {key}={defaults[key]}" for key in user_keys(schema))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mbdpo", description="Model-Based Diffusion Policy Optimization")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, schema, text in [
        ("train", Config, "train online on one task, or offline on a task set (task=mt30 data_dir=PATH)"),
        ("eval", EvalOptions, "evaluate a checkpoint"),
        ("finetune", FinetuneOptions, "fine-tune a multi-task checkpoint online on one task (plus train settings)"),
        ("collect", CollectOptions, "play episodes and write them as a data set in the public mt30/mt80 format"),
        ("compare", CompareOptions, "train two configurations on the same tasks and seeds; write a report"),
    ]:
        sub = commands.add_parser(
            name, help=text, description=f"{text}; settings as key=value (defaults shown):\n" + _keys_help(schema),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("overrides", nargs="*", metavar="key=value")
    kinds = "\n".join(f"mbdpo plot {kind}:\n{_keys_help(schema)}" for kind, schema in PLOT_KINDS.items())
    plot = commands.add_parser(
        "plot", help="learning curves, diagnostics, latent trajectories or task embeddings",
        description="mbdpo plot curves|diagnostics RUN_DIR... key=value; mbdpo plot latents|tasks checkpoint=PATH "
                    "(needs the plot extra: pip install 'mbdpo[plot]'); settings (defaults shown):\n" + kinds,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plot.add_argument("overrides", nargs=argparse.REMAINDER, metavar="kind [RUN_DIR | key=value] ...")
    return parser


COMMANDS = {"train": train_command, "eval": eval_command, "finetune": finetune_command, "collect": collect_command,
            "plot": plot_command, "compare": compare_command}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args.overrides)
    except MBDPOError as error:
        print(f"mbdpo: error: {error}", file=sys.stderr)
        return 2
    except RunStopped as stopped:
        print(f"mbdpo: {stopped}", file=sys.stderr)
        return 128 + stopped.signal
    except KeyboardInterrupt:
        print("mbdpo: interrupted; the last checkpoint is kept", file=sys.stderr)
        return 130
    return 0
