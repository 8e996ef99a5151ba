"""Online learning benchmarks, grouped in suites:

- ``core``: MBDPO (planner=diffusion, Monte-Carlo acting, 5 steps x 256
  samples: the former cpu preset) vs TD-MPC2 (planner=mppi, energy_eta=0) on
  cartpole-swingup, reacher-easy, walker-walk; MBDPO with the cpu preset
  (20 x 64) on walker-walk, and the same without the energy term
  (``-eta0``: whether the trust region is what slows it there); MBDPO with
  the paper's settings on cartpole-swingup.
- ``score``: acting with the score network against Monte-Carlo acting (the
  core runs, same seed): on all three tasks act_mode=auto score_target=chain
  with 1,000 chains, refreshed after the switch (``-refresh``) or planned
  from states across the replay, 0.25 per step (``-replay``), the latter also with return
  guidance (``-replay-return``, score_return_coef=1), and acting on the best
  of the network's 64 plans (``-replay-ranked``, ``score_candidates=64``, which
  act_mode=auto now plays against the one plan at each evaluation), that with
  the prior's plan of each chain's time as the network's anchor
  (``-replay-ranked-anchored``, ``score_anchor=chain``), and acting on the
  network's one plan refined by Monte Carlo on the last quarter of its
  reverse steps (``-replay-refined``, ``score_mc_steps``); on walker-walk
  the refreshed chains also train a network that acts in one jump to its
  denoised mean at the chain's start, around the prior's plan
  (``-refresh-jump``, ``score_sampler=jump score_anchor=prior``); on
  cartpole-swingup also
  act_mode=auto / score with Monte-Carlo denoiser targets and auto-chain with
  10,000 chains; on walker-walk also act_mode=auto with denoiser targets
  (``diffusion-cpu-auto``: fresh targets at 32 replay states per update),
  that around the policy prior's plan (``-anchored``), and, forked from
  those two with ``benchmarks/fork_run.py``, with four score-matching steps
  per update (``-anchored-x4`` at 12.5k, ``-x4`` at 20k), and act_mode=score
  around the prior's plan, acting with the network from its first update
  (``diffusion-cpu-score-anchored``).
- ``ablation``: the paper's Fig. 9-10 on cartpole-swingup: 5, 10, 20
  diffusion steps (256 samples) and 64, 256, 512 samples (5 steps); 10k steps.
  Its 5 x 256 point is the core suite's MBDPO run (same settings and seed).
- ``domains``: MBDPO vs TD-MPC2 on mw-reach and myo-reach (success rate),
  and MBDPO on walker-walk from pixels (obs=rgb, batch 64); 10k steps.

    python benchmarks/online.py --suite core                 # round-robin until --steps
    python benchmarks/online.py --suite core --only diffusion-cpu,mppi
    python benchmarks/online.py --suite ablation --steps 10000
    python benchmarks/online.py --suite domains --steps 10000
    python benchmarks/online.py --report-only                # rebuild results/ from the run dirs

Runs are trained in chunks of ``--chunk`` steps, round-robin, so that all of
them advance together; each chunk resumes its run from the checkpoint in
``--runs-dir`` (kept outside the repository: checkpoints are too large to
commit). A run lives in ``<runs-dir>/<task>/<name>``, so suites that share a
run (the score suite's Monte-Carlo reference is the core run) share its
directory. After every chunk the results are collected into
``benchmarks/results/``: the eval curves (``online_eval.csv``), per-run cost
(``online_summary.csv``: steps/s, ms per action, ms per update, peak RSS),
one plot per suite (``online_<suite>.png``, the published MBDPO and TD-MPC2
returns at 100k steps drawn as level lines), and ``mbdpo compare``'s report of MBDPO against
TD-MPC2 mode on cartpole-swingup and walker-walk, with the search/value
diagnostics (``compare/report.md``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mbdpo.analysis.compare import CompareOptions, write_report
from mbdpo.analysis.plots import pyplot
from mbdpo.analysis.runs import read_csv, reference_curve, write_csv
from mbdpo.errors import ConfigError

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
COMMON = {"model_size": 1, "seed": 1, "eval_freq": 2500, "eval_episodes": 3, "progress": "false"}
# The runs started with the former cpu preset (5 diffusion steps x 256 samples): named, so that new runs of these
# keys run the same settings.
MC_CPU = {"planner": "diffusion", "planner_preset": "cpu", "diffusion_steps": 5, "num_samples": 256, "num_elites": 32}
MC_CPU_20X64 = {"planner": "diffusion", "planner_preset": "cpu"}
TDMPC2 = {"planner": "mppi", "planner_preset": "cpu", "energy_eta": 0, "energy_coef": 0}
AUTO_CHAIN = {"act_mode": "auto", "score_target": "chain", "score_states": 256}
REFRESH = {"score_refresh": 0.1, "score_chains": 1000}
# Chains planned from states across the replay instead of acting's: a quarter of a Monte-Carlo action per step.
REPLAY = {"score_replay_chains": 0.25, "score_chains": 1000}
# Return guidance of the score network (score_passengers.py compares weights on the same models).
RETURN = {"score_return_coef": 1.0}
# Acting on the best of the network's 64 plans by imagined return instead of its one plan.
RANKED = {"score_candidates": 64}
# The network learns Monte Carlo's departure from the prior's plan stored with each chain (score_passengers.py,
# set anchor-time), and acts around the current prior.
CHAIN_ANCHOR = {"score_anchor": "chain"}
# Acting with the network's plan refined by Monte Carlo on the last quarter of its reverse steps (score_mc_steps):
# 1 of the former cpu preset's 5, 5 of the cpu preset's 20.
REFINED_STEPS = {"cartpole-swingup": 1, "reacher-easy": 1, "walker-walk": 5}
CORE_TASKS = ("cartpole-swingup", "reacher-easy", "walker-walk")
# Each task's MBDPO run of the core suite: the planner settings its score-network runs share.
CORE_MBDPO = {"cartpole-swingup": ("diffusion-cpu", MC_CPU), "reacher-easy": ("diffusion-cpu", MC_CPU),
              "walker-walk": ("diffusion-cpu-20x64", MC_CPU_20X64)}
SUCCESS_TASKS = ("mw-reach", "myo-reach")
PIXELS = {**MC_CPU_20X64, "obs": "rgb", "batch_size": 64}


# Issue 6's planner comparison, built from the core runs: per task, the MBDPO run (side A) and the TD-MPC2 one (B).
COMPARED = {"cartpole-swingup": ("diffusion-cpu", "mppi-tdmpc2"),
            "walker-walk": ("diffusion-cpu-20x64", "mppi-tdmpc2")}
COMPARED_FROM = 10_000  # the step every compared run must reach before the report is rebuilt


def ablation(diffusion_steps: int, num_samples: int) -> dict:
    """Monte-Carlo acting with N steps and M samples; elites stay 1/8 of the samples."""
    return {**MC_CPU, "diffusion_steps": diffusion_steps, "num_samples": num_samples, "num_elites": num_samples // 8}


RUNS: dict[tuple[str, str], dict] = {
    **{(task, "diffusion-cpu"): MC_CPU for task in CORE_TASKS},
    ("walker-walk", "diffusion-cpu-20x64"): MC_CPU_20X64,
    ("walker-walk", "diffusion-cpu-20x64-eta0"): {**MC_CPU_20X64, "energy_eta": 0, "energy_coef": 0},
    **{(task, "mppi-tdmpc2"): TDMPC2 for task in CORE_TASKS},
    ("cartpole-swingup", "diffusion-paper"): {"planner": "diffusion", "planner_preset": "paper"},
    ("cartpole-swingup", "diffusion-cpu-auto"): {**MC_CPU, "act_mode": "auto"},
    ("walker-walk", "diffusion-cpu-auto"): {**MC_CPU_20X64, "act_mode": "auto"},
    ("walker-walk", "diffusion-cpu-auto-anchored"): {**MC_CPU_20X64, "act_mode": "auto", "score_anchor": "prior"},
    # forked from the run above at 12.5k (benchmarks/fork_run.py): four score-matching steps per update
    ("walker-walk", "diffusion-cpu-auto-anchored-x4"): {
        **MC_CPU_20X64, "act_mode": "auto", "score_anchor": "prior", "score_updates": 4,
    },
    # forked from diffusion-cpu-auto at 20k: four score-matching steps per update, without the anchor
    ("walker-walk", "diffusion-cpu-auto-x4"): {**MC_CPU_20X64, "act_mode": "auto", "score_updates": 4},
    ("cartpole-swingup", "diffusion-cpu-auto-chain"): {**MC_CPU, **AUTO_CHAIN, "score_chains": 10_000},
    **{(task, "diffusion-cpu-auto-chain-refresh"): {**CORE_MBDPO[task][1], **AUTO_CHAIN, **REFRESH}
       for task in CORE_TASKS},
    **{(task, "diffusion-cpu-auto-chain-replay"): {**CORE_MBDPO[task][1], **AUTO_CHAIN, **REPLAY}
       for task in CORE_TASKS},
    **{(task, "diffusion-cpu-auto-chain-replay-return"): {**CORE_MBDPO[task][1], **AUTO_CHAIN, **REPLAY, **RETURN}
       for task in CORE_TASKS},
    **{(task, "diffusion-cpu-auto-chain-replay-ranked"): {**CORE_MBDPO[task][1], **AUTO_CHAIN, **REPLAY, **RANKED}
       for task in CORE_TASKS},
    **{(task, "diffusion-cpu-auto-chain-replay-ranked-anchored"): {**CORE_MBDPO[task][1], **AUTO_CHAIN, **REPLAY,
                                                                   **RANKED, **CHAIN_ANCHOR}
       for task in CORE_TASKS},
    **{(task, "diffusion-cpu-auto-chain-replay-refined"): {**CORE_MBDPO[task][1], **AUTO_CHAIN, **REPLAY,
                                                           "score_mc_steps": REFINED_STEPS[task]}
       for task in CORE_TASKS},
    ("walker-walk", "diffusion-cpu-auto-chain-refresh-jump"): {
        **MC_CPU_20X64, **AUTO_CHAIN, **REFRESH, "score_sampler": "jump", "score_anchor": "prior",
    },
    ("cartpole-swingup", "diffusion-cpu-score"): {**MC_CPU, "act_mode": "score"},
    # acting with the network from the start, around the policy prior's plan (no Monte-Carlo action at all)
    ("walker-walk", "diffusion-cpu-score-anchored"): {**MC_CPU_20X64, "act_mode": "score", "score_anchor": "prior"},
    ("cartpole-swingup", "diffusion-paper-score"): {"planner": "diffusion", "planner_preset": "paper", "act_mode": "score"},
    **{("cartpole-swingup", f"ablation-{n}x{m}"): ablation(n, m) for n, m in [(10, 256), (20, 256), (5, 64), (5, 512)]},
    **{(task, "diffusion-cpu"): MC_CPU for task in SUCCESS_TASKS},
    **{(task, "mppi-tdmpc2"): TDMPC2 for task in SUCCESS_TASKS},
    ("walker-walk", "diffusion-cpu-rgb"): PIXELS,
}
SUITES: dict[str, list[tuple[str, str]]] = {
    "core": [key for key in RUNS if key[0] in CORE_TASKS
             and key[1] in ("diffusion-cpu", "diffusion-cpu-20x64", "diffusion-cpu-20x64-eta0", "mppi-tdmpc2",
                            "diffusion-paper")],
    "score": [*((task, name) for task, (name, _) in CORE_MBDPO.items()),
              *(key for key in RUNS if "-auto" in key[1] or "-score" in key[1])],
    "ablation": [("cartpole-swingup", "diffusion-cpu"), *(key for key in RUNS if key[1].startswith("ablation-"))],
    "domains": [key for key in RUNS if key[0] in SUCCESS_TASKS or key[1] == "diffusion-cpu-rgb"],
}


def matches(pattern: str, key: tuple[str, str]) -> bool:
    """Whether ``--only``'s ``pattern`` selects the run ``key``: its whole 'task/run' name (exactly,
    so that a run is not also a longer-named one), or else a substring of it."""
    name = "/".join(key)
    return pattern == name if pattern in {"/".join(k) for k in RUNS} else pattern in name


def run_chunk(runs_dir: Path, task: str, name: str, overrides: dict, steps: int) -> None:
    """Train (or resume) one run up to ``steps`` in a child process."""
    run_dir = runs_dir / task / name
    args = [f"{k}={v}" for k, v in {**COMMON, **overrides, "task": task, "steps": steps, "run_dir": run_dir}.items()]
    print(f"[{time.strftime('%H:%M:%S')}] {task} {name} -> {steps} steps", flush=True)
    subprocess.run([sys.executable, "-m", "mbdpo", "train", *args], check=True)


def collect(runs_dir: Path) -> None:
    """Write the eval curves, the per-run summary and the plot to ``results/``.

    A run with no directory in ``runs_dir`` (a new machine starts without the old run directories)
    keeps the rows ``results/`` already holds for it.
    """
    RESULTS.mkdir(exist_ok=True)
    kept_curves, kept_summary = read_csv(RESULTS / "online_eval.csv"), read_csv(RESULTS / "online_summary.csv")
    curves, summary = [], []
    for (task, name) in RUNS:
        run_dir = runs_dir / task / name
        evals, trains = read_csv(run_dir / "eval.csv"), read_csv(run_dir / "train.csv")
        if not evals:
            curves += [row for row in kept_curves if (row["task"], row["run"]) == (task, name)]
            summary += [row for row in kept_summary if (row["task"], row["run"]) == (task, name)]
            continue
        curves += [{"task": task, "run": name, "step": r["step"], "reward": r["episode_reward"],
                    "success": r["episode_success"]} for r in evals]
        summary.append(summarise_run(task, name, evals, trains))
    write_csv(RESULTS / "online_eval.csv", curves)
    write_csv(RESULTS / "online_summary.csv", summary)
    for suite in SUITES:
        plot(curves, suite)
    compare_planners(runs_dir)


def last_eval_step(run_dir: Path) -> int:
    """The step of a run's last evaluation (-1 before its first)."""
    evals = read_csv(run_dir / "eval.csv")
    return int(evals[-1]["step"]) if evals else -1


def compare_planners(runs_dir: Path) -> None:
    """``mbdpo compare``'s report (curves, diagnostics, table) of the core runs in COMPARED, in results/compare/.

    The runs are laid out as ``mbdpo compare`` keeps them; its report cuts both runs of a task at the
    step both have reached. Until every run has reached ``COMPARED_FROM`` steps, the report already in
    results/ is kept (it may come from longer runs, e.g. ones whose directories were lost).
    """
    with tempfile.TemporaryDirectory() as layout:
        for task, names in COMPARED.items():
            sources = [runs_dir / task / name for name in names]
            if min(last_eval_step(source) for source in sources) < COMPARED_FROM:
                return
            for side, source in zip("ab", sources):
                target = Path(layout) / task / side / str(COMMON["seed"])
                target.mkdir(parents=True)
                for file in ("config.json", "eval.csv", "train.csv"):
                    shutil.copy(source / file, target / file)
        options = CompareOptions(  # A's cpu preset: 5 x 256 (former) on cartpole-swingup, 20 x 64 on walker-walk
            a="planner=diffusion", b="planner=mppi energy_eta=0", common="model_size=1 planner_preset=cpu",
            tasks=",".join(COMPARED), seeds=str(COMMON["seed"]), out=layout, report_only=True)
        try:
            write_report(options)
        except ConfigError as error:  # runs cut before they logged the diagnostics
            print(f"planner comparison not written: {error}")
            return
        (RESULTS / "compare").mkdir(exist_ok=True)
        for file in Path(layout).glob("*.*"):
            shutil.copy(file, RESULTS / "compare" / file.name)


def summarise_run(task: str, name: str, evals: list, trains: list) -> dict:
    """Cost of a run from its train.csv, over episodes with one update per step."""
    steady = [r for r in trains if r.get("updates") and int(r["updates"]) == int(r["episode_length"])]

    def mean(key: str) -> float | str:
        return round(sum(float(r[key]) for r in steady) / len(steady), 1) if steady else ""

    return {
        "task": task, "run": name, "steps": evals[-1]["step"],
        "final_eval_reward": evals[-1]["episode_reward"],
        "best_eval_reward": max(float(r["episode_reward"]) for r in evals),
        "steps_per_second": mean("steps_per_second"),
        "ms_per_action": mean("ms_per_action"),
        "ms_per_update": mean("ms_per_update"),
        "peak_rss_mib": round(max(float(r["peak_rss_mib"]) for r in trains)) if trains else "",
    }


def published_at_100k(algorithm: str, task: str) -> float | None:
    """Mean published return (success tasks: success in percent) at 100k steps, seeds averaged; None if not published.

    The published curves are sampled every 100k steps, so 100k is their first point after step 0."""
    curve = reference_curve(algorithm, task)
    if curve is None or 100_000 not in curve.steps:
        return None
    scale = 100 if task in SUCCESS_TASKS and not algorithm.startswith("mbdpo") else 1  # mbdpo files hold percent
    return float(scale * curve.mean[curve.steps == 100_000][0])


def plot(curves: list[dict], suite: str) -> None:
    """One panel per task of ``suite``: its runs, with the published returns at 100k steps as level lines."""
    plt = pyplot()
    runs = SUITES[suite]
    tasks = sorted({task for task, _ in runs})
    fig, axes = plt.subplots(1, len(tasks), figsize=(5 * len(tasks), 4), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        success = task in SUCCESS_TASKS
        pixels = any(n.endswith("-rgb") for t, n in runs if t == task)
        last_step = 0
        for name in sorted({n for t, n in runs if t == task}):
            points = [(int(c["step"]), 100 * float(c["success"]) if success else float(c["reward"]))
                      for c in curves if c["task"] == task and c["run"] == name]
            if points:
                ax.plot(*zip(*points), marker="o", label=f"ours: {name}")
                last_step = max(last_step, points[-1][0])
        for algorithm, style in (("mbdpo", "--"), ("tdmpc2", ":")):
            algorithm += "-pixels" if pixels else ""
            value = published_at_100k(algorithm, task)
            if value is not None:
                ax.axhline(value, color="grey", linestyle=style, label=f"published {algorithm} at 100k")
        ax.set(title=task + (" (pixels)" if pixels else ""), xlabel="environment steps",
               ylabel="eval success (%)" if success else "eval return", xlim=(0, 1.05 * max(last_step, 2500)),
               ylim=(0, 100 if success else 1000))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / f"online_{suite}.png", dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs-dir", default=str(HERE.parent.parent / "bench-runs"))
    parser.add_argument("--steps", type=int, default=20_000, help="final steps per run")
    parser.add_argument("--chunk", type=int, default=5000, help="steps per run per round")
    parser.add_argument("--rounds", type=int, default=0, help="stop after this many rounds (0: until --steps)")
    parser.add_argument("--suite", choices=sorted(SUITES), default="core")
    parser.add_argument("--only", default="", help="comma-separated runs to select: a whole 'task/run' selects "
                        "that run only, anything else every run whose 'task/run' contains it")
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    runs_dir = Path(args.runs_dir)
    if not args.report_only:
        patterns = args.only.split(",")
        selected = [key for key in SUITES[args.suite] if any(matches(p, key) for p in patterns)]
        target, rounds = args.chunk, 0
        while target <= args.steps and (not args.rounds or rounds < args.rounds):
            for task, name in selected:
                run_chunk(runs_dir, task, name, RUNS[task, name], target)
                collect(runs_dir)
            target, rounds = target + args.chunk, rounds + 1
    collect(runs_dir)


if __name__ == "__main__":
    main()
