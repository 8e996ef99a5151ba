"""Command line: ``mbdpo train key=value ...`` and ``mbdpo eval checkpoint=PATH ...``.

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

from mbdpo.config import Config, parse_overrides, parse_values, user_keys
from mbdpo.errors import ConfigError, MBDPOError


@dataclass
class EvalOptions:
    """Settings of ``mbdpo eval``."""

    checkpoint: str = ""
    episodes: int = 10
    seed: int = 0  # 0: the seed of the run that wrote the checkpoint
    device: str = "auto"
    out: str = ""  # CSV to append to; default: eval_checkpoint.csv next to the checkpoint
    act_mode: Literal["run", "mc", "score"] = "run"  # run: as the run was acting when it saved


def train_command(tokens: list[str]) -> None:
    from mbdpo.training.online import train

    run_dir = train(Config.from_overrides(parse_overrides(tokens)))
    print(f"done: {run_dir}")


def eval_command(tokens: list[str]) -> None:
    from mbdpo.agent import Agent
    from mbdpo.envs import make_env
    from mbdpo.training.evaluate import evaluate, summarise
    from mbdpo.training.logger import CSVLog

    options = EvalOptions(**parse_values(parse_overrides(tokens, EvalOptions), EvalOptions))
    if not options.checkpoint:
        raise ConfigError("mbdpo eval needs checkpoint=PATH")
    agent = Agent.from_checkpoint(options.checkpoint, options.device)
    if options.act_mode != "run":
        agent.set_acting_mode(options.act_mode)
    cfg = agent.cfg
    seed = options.seed or cfg.seed
    results = evaluate(agent, make_env(cfg.task, seed), options.episodes, seed)
    summary = summarise(results)
    print(f"{cfg.task}: return {summary['episode_reward']:.1f} +- {summary['episode_reward_std']:.1f} "
          f"over {options.episodes} episodes (success {summary['episode_success']:.2f}), "
          f"acting with {agent.acting_mode}")
    out = Path(options.out) if options.out else Path(options.checkpoint).with_name("eval_checkpoint.csv")
    row = {"checkpoint": options.checkpoint, "task": cfg.task, "act_mode": agent.acting_mode,
           "episodes": options.episodes, "seed": seed,
           "mean_reward": summary["episode_reward"], "std_reward": summary["episode_reward_std"],
           "mean_success": summary["episode_success"], "mean_length": summary["episode_length"]}
    CSVLog(out, resume_step=None).write(row)
    print(f"written: {out}")


def _keys_help(schema: type) -> str:
    defaults = {f.name: f.default for f in dataclasses.fields(schema)}
    return "\n".join(f"  {key}={defaults[key]}" for key in user_keys(schema))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mbdpo", description="Model-Based Diffusion Policy Optimization")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, schema, text in [
        ("train", Config, "train online on one task"),
        ("eval", EvalOptions, "evaluate a checkpoint"),
    ]:
        sub = commands.add_parser(
            name, help=text, description=f"{text}; settings as key=value (defaults shown):\n" + _keys_help(schema),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("overrides", nargs="*", metavar="key=value")
    return parser


COMMANDS = {"train": train_command, "eval": eval_command}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args.overrides)
    except MBDPOError as error:
        print(f"mbdpo: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mbdpo: interrupted; the last checkpoint is kept", file=sys.stderr)
        return 130
    return 0
