"""The command line end to end: a short run, resuming, evaluation, and bad input."""

import argparse
import contextlib
import csv
import dataclasses
import io
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from mbdpo.checkpoint import load_checkpoint, save_checkpoint
from mbdpo.cli import main
from mbdpo.config import Config
from mbdpo.errors import ConfigError, exit_on_user_error

# One worker runs this module, so that its shared run (short_run, a module fixture) is made once.
pytestmark = pytest.mark.xdist_group("short_run")


# A tiny agent so that a 1,000-step run takes seconds.
TINY = [
    "task=cartpole-swingup", "model_size=1", "enc_dim=32", "mlp_dim=32", "latent_dim=16", "batch_size=16",
    "num_samples=16", "num_elites=4", "num_pi_trajs=2", "diffusion_steps=2", "seed_steps=500",
    "eval_freq=500", "eval_episodes=1", "energy_negatives=4", "progress=false", "device=cpu",
]


def mbdpo(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m mbdpo`` in a child process, as a user runs it: for the shared run ``short_run``, and for
    commands that render (a GL context made in a test worker breaks the worker's later renderers)."""
    return subprocess.run([sys.executable, "-m", "mbdpo", *args], capture_output=True, text=True, cwd=cwd)


def mbdpo_in_process(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``mbdpo`` run in this process, through the same ``main`` as the console script: no interpreter
    start-up (importing torch costs about 4 s of CPU per child process)."""
    stdout, stderr, before = io.StringIO(), io.StringIO(), Path.cwd()
    try:
        os.chdir(cwd or before)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = main(list(args))
            except SystemExit as stop:  # argparse's own errors
                code = stop.code
    finally:
        os.chdir(before)
    return subprocess.CompletedProcess(args, code, stdout.getvalue(), stderr.getvalue())


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def short_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    result = mbdpo("train", *TINY, "steps=1000", f"run_dir={run_dir}")
    assert result.returncode == 0, result.stderr
    return run_dir


def test_short_run_writes_logs_events_and_checkpoint(short_run):
    evals = rows(short_run / "eval.csv")
    assert [int(r["step"]) for r in evals] == [0, 500, 1000]
    assert set(evals[0]) >= {"step", "episode_reward", "episode_success", "episode_length", "elapsed"}
    trains = rows(short_run / "train.csv")
    assert [int(r["step"]) for r in trains] == [500, 1000]
    # a burst of seed_steps updates when the seed phase ends, then one per step
    assert [int(r["updates"]) for r in trains] == [500, 500]
    assert float(trains[-1]["consistency_loss"]) > 0
    # alignment diagnostics for the episodes the planner acted in (not the random seed phase)
    assert trains[0]["cross_td_error"] == "" and float(trains[-1]["cross_td_error"]) > 0
    assert float(trains[-1]["policy_drift_ema"]) > 0
    assert all(float(r["policy_drift"]) >= 0 and r["cross_td_error"] for r in evals)
    assert list((short_run / "tb").glob("events.out.tfevents.*"))
    assert (short_run / "config.json").exists() and (short_run / "buffer.npz").exists()
    checkpoint = torch.load(short_run / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 1000 and checkpoint["config"]["task"] == "cartpole-swingup"


def test_rerunning_resumes_from_the_saved_step(short_run, tmp_path):
    run_dir = tmp_path / "resumed"
    subprocess.run(["cp", "-r", str(short_run), str(run_dir)], check=True)
    result = mbdpo_in_process("train", *TINY, "steps=1500", f"run_dir={run_dir}")
    assert result.returncode == 0, result.stderr
    assert "resuming at step 1,000" in result.stdout
    assert [int(r["step"]) for r in rows(run_dir / "train.csv")] == [500, 1000, 1500]
    assert [int(r["step"]) for r in rows(run_dir / "eval.csv")] == [0, 500, 1000, 1500]
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"] == 1500
    again = mbdpo_in_process("train", *TINY, "steps=1500", f"run_dir={run_dir}")
    assert again.returncode == 0 and "already complete" in again.stdout
    # fewer steps than the run has: its replay (1,503 rows) would not fit the 1,001-row buffer of steps=500
    fewer = mbdpo_in_process("train", *TINY, "steps=500", f"run_dir={run_dir}")
    assert fewer.returncode == 0 and "already complete at step 1,500 (steps=500)" in fewer.stdout, fewer.stderr


def signal_once_logged(command: list[str], log: Path, signum: int, launcher: tuple[str, ...] = ("-m", "mbdpo"),
                       env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Start ``python *launcher *command`` (by default ``mbdpo *command``) in a child process, send it ``signum``
    once ``log`` (a CSV) has a row, and wait for it to exit."""
    child = subprocess.Popen([sys.executable, *launcher, *command], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300
    while not (log.exists() and rows(log)) and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signum)
    stdout, stderr = child.communicate(timeout=300)
    return subprocess.CompletedProcess(command, child.returncode, stdout, stderr)


def test_sigterm_checkpoints_the_step_reached_and_rerunning_continues_from_it(tmp_path):
    run_dir = tmp_path / "stopped"
    command = ["train", *TINY, "eval_freq=1000", "steps=1500", f"run_dir={run_dir}"]
    # The signal comes once the seed episode's train.csv row is written: as that episode ends, or in the next one.
    stopped = signal_once_logged(command, run_dir / "train.csv", signal.SIGTERM)
    assert stopped.returncode == 128 + signal.SIGTERM, stopped.stderr
    step = torch.load(run_dir / "checkpoint.pt", weights_only=True)["step"]
    assert 500 <= step < 1500 and step % 500 == 0  # the episode in progress was finished, not the run
    assert f"stopped on SIGTERM at step {step:,}" in stopped.stderr.splitlines()[-1]
    assert [int(r["step"]) for r in rows(run_dir / "train.csv")] == list(range(500, step + 1, 500))
    resumed = mbdpo_in_process(*command)
    assert resumed.returncode == 0 and f"resuming at step {step:,}" in resumed.stdout, resumed.stderr
    # as if never stopped: each episode logged once, evaluations at 0, eval_freq and the end
    assert [int(r["step"]) for r in rows(run_dir / "train.csv")] == [500, 1000, 1500]
    assert [int(r["step"]) for r in rows(run_dir / "eval.csv")] == [0, 1000, 1500]


def test_a_stop_during_the_update_burst_ends_it_and_the_resumed_run_does_the_updates_left(tmp_path, monkeypatch):
    from mbdpo.agent import Agent

    update, calls = Agent.update, []

    def counted(agent, batch):  # the 100th update of the burst gets a SIGTERM
        calls.append(1)
        if len(calls) == 100:
            os.kill(os.getpid(), signal.SIGTERM)
        return update(agent, batch)

    monkeypatch.setattr(Agent, "update", counted)
    run_dir = tmp_path / "stopped"
    command = ["train", *TINY, "eval_freq=1000", "steps=1000", f"run_dir={run_dir}"]
    stopped = mbdpo_in_process(*command)
    assert stopped.returncode == 128 + signal.SIGTERM and "stopped on SIGTERM at step 500" in stopped.stderr
    assert len(calls) == 100 and [int(r["updates"]) for r in rows(run_dir / "train.csv")] == [100]
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["burst_left"] == 400
    resumed = mbdpo_in_process(*command)
    assert resumed.returncode == 0, resumed.stderr
    # the 400 updates left, then one per step: 1,000 in all, as without the stop
    assert len(calls) == 1000 and [int(r["updates"]) for r in rows(run_dir / "train.csv")] == [100, 900]
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["burst_left"] == 0


def test_a_stop_during_an_evaluation_leaves_it_due_and_the_resumed_run_plays_it(tmp_path, monkeypatch):
    import mbdpo.training.evaluate as evaluation

    play = evaluation.run_episode

    def signalled(*args, **kwargs):  # the first evaluation episode gets a SIGTERM
        monkeypatch.setattr(evaluation, "run_episode", play)
        os.kill(os.getpid(), signal.SIGTERM)
        return play(*args, **kwargs)

    monkeypatch.setattr(evaluation, "run_episode", signalled)
    run_dir = tmp_path / "stopped"
    command = ["train", *TINY, "eval_episodes=2", "steps=500", f"run_dir={run_dir}"]
    stopped = mbdpo_in_process(*command)
    assert stopped.returncode == 128 + signal.SIGTERM and "stopped on SIGTERM at step 0" in stopped.stderr
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 0 and checkpoint["eval_due"]
    assert not (run_dir / "eval.csv").exists() or not rows(run_dir / "eval.csv")  # one of 2 episodes: not logged
    resumed = mbdpo_in_process(*command)
    assert resumed.returncode == 0, resumed.stderr
    assert [int(r["step"]) for r in rows(run_dir / "eval.csv")] == [0, 500]


def test_a_final_evaluation_left_due_is_played_on_resume_and_the_replay_kept(short_run, tmp_path):
    """A run stopped during its last evaluation (step == steps) plays it on resume without training, so
    it does not load its replay: the saved buffer must stay as it was, not be overwritten by an empty one."""
    from mbdpo.checkpoint import save_checkpoint

    run_dir = tmp_path / "due"
    subprocess.run(["cp", "-r", str(short_run), str(run_dir)], check=True)
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    checkpoint["eval_due"] = True
    save_checkpoint(run_dir / "checkpoint.pt", {k: v for k, v in checkpoint.items() if k not in ("format", "version")})
    (run_dir / "eval.csv").write_text("".join((run_dir / "eval.csv").read_text().splitlines(keepends=True)[:-1]))
    replay = (run_dir / "buffer.npz").read_bytes()
    result = mbdpo_in_process("train", *TINY, "steps=1000", f"run_dir={run_dir}")
    assert result.returncode == 0, result.stderr
    assert [int(r["step"]) for r in rows(run_dir / "eval.csv")] == [0, 500, 1000]
    assert not torch.load(run_dir / "checkpoint.pt", weights_only=True)["eval_due"]
    assert (run_dir / "buffer.npz").read_bytes() == replay


def test_eval_prints_mean_and_std_and_writes_csv(short_run, tmp_path):
    out = tmp_path / "eval.csv"
    result = mbdpo("eval", f"checkpoint={short_run / 'checkpoint.pt'}", "episodes=2", f"out={out}", "device=cpu",
                   "save_video=true")
    assert result.returncode == 0, result.stderr
    assert "cartpole-swingup: return" in result.stdout and "+-" in result.stdout
    (row,) = rows(out)
    assert row["episodes"] == "2" and float(row["std_reward"]) >= 0 and row["acting"] == "acting with mc"
    episode_rewards = [float(r) for r in row["episode_rewards"].split()]
    assert len(episode_rewards) == 2 and np.mean(episode_rewards) == pytest.approx(float(row["mean_reward"]), abs=1e-3)
    assert len(imageio.mimread(out.with_suffix(".mp4"), memtest=False)) == 501
    again = mbdpo_in_process("eval", f"checkpoint={short_run / 'checkpoint.pt'}", "episodes=2",
                             f"out={tmp_path / 'again.csv'}", "device=cpu")
    assert again.returncode == 0, again.stderr
    (same,) = rows(tmp_path / "again.csv")  # the seed fixes the episodes and the planner's samples
    assert (same["mean_reward"], same["std_reward"]) == (row["mean_reward"], row["std_reward"])


def test_python_api_agent_acts(short_run):
    from mbdpo import Agent

    agent = Agent.from_checkpoint(short_run / "checkpoint.pt", device="cpu")
    action = agent.act(np.zeros(5, dtype=np.float32))
    assert action.shape == (1,) and -1 <= action[0] <= 1


def test_a_checkpoint_trained_with_compiled_rollouts_loads_uncompiled_unless_asked(short_run, tmp_path, monkeypatch):
    """compile_rollouts is the caller's, like device: a checkpoint of a compiled run loads on a machine
    without a C++ compiler."""
    from mbdpo import Agent
    from mbdpo.checkpoint import save_checkpoint
    from mbdpo.errors import ConfigError

    checkpoint = torch.load(short_run / "checkpoint.pt", weights_only=True)
    checkpoint["config"]["compile_rollouts"] = True
    path = tmp_path / "compiled.pt"
    save_checkpoint(path, {k: v for k, v in checkpoint.items() if k not in ("format", "version")})
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert not Agent.from_checkpoint(path, device="cpu").cfg.compile_rollouts
    with pytest.raises(ConfigError, match="compile_rollouts=true on a CPU needs"):
        Agent.from_checkpoint(path, device="cpu", compile_rollouts=True)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("args, fragments", [
    (["train", "stpes=10"], ["'stpes'", "'steps'"]),
    (["train", "steps=many"], ["steps='many'", "int"]),
    (["train", "planner=cem"], ["planner='cem'", "diffusion, mppi"]),
    (["train", "task=walker-wlk", "device=cpu"], ["'walker-wlk'", "'walker-walk'"]),
    (["train", "act_mode=score", "score_target=chain"], ["score_target=chain", "act_mode=auto", "score_target=denoiser", "score_replay_chains>0"]),
    (["train", "act_mode=auto", "score_refresh=0.1"], ["score_refresh=0.1", "score_target=denoiser", "score_refresh=0"]),
    (["train", "act_mode=auto", "score_target=chain", "score_refresh=2"], ["score_refresh=2", "[0, 1]"]),
    (["train", "act_mode=auto", "score_replay_chains=0.5"], ["score_replay_chains=0.5", "score_target=denoiser"]),
    (["train", "act_mode=auto", "score_target=chain", "score_replay_chains=-1"], ["score_replay_chains=-1", "[0, "]),
    (["train", "act_mode=auto", "score_target=chain", "score_replay_chains=1", "score_refresh=0.1"],
     ["score_refresh=0.1", "score_replay_chains=1", "one of them 0"]),
    (["train", "act_mode=score", "score_candidates=0"], ["score_candidates=0", ">= 1"]),
    (["train", "act_mode=auto", "score_anchor=chain"],
     ["score_anchor=chain", "score_target=denoiser", "none|prior|input"]),
    (["train", "act_mode=auto", "diffusion_kernel=warm", "score_candidates=64"],
     ["score_candidates=64", "diffusion_kernel=stochastic", "score_candidates=1"]),
    (["eval", "checkpoint=/nonexistent/checkpoint.pt"], ["'/nonexistent/checkpoint.pt'", "does not exist"]),
    (["eval", "checkpoint=x.pt", "epsiodes=3"], ["'epsiodes'", "'episodes'"]),
])
def test_bad_input_is_a_one_line_error_with_exit_code_2(args, fragments, tmp_path):
    assert_one_line_error(mbdpo_in_process(*args, cwd=tmp_path), *fragments)


def test_truncated_checkpoint_is_a_clear_error(short_run, tmp_path):
    data = (short_run / "checkpoint.pt").read_bytes()
    truncated = tmp_path / "checkpoint.pt"
    truncated.write_bytes(data[: len(data) // 2])
    assert_one_line_error(mbdpo_in_process("eval", f"checkpoint={truncated}"), "truncated or corrupt")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    assert_one_line_error(mbdpo_in_process("eval", f"checkpoint={foreign}"), "not an mbdpo checkpoint")
    code = tmp_path / "code.pt"
    torch.save({"step": print}, code)  # a pickle that names a function
    assert_one_line_error(mbdpo_in_process("eval", f"checkpoint={code}"), "not an mbdpo checkpoint (it names print,")
    other_file = tmp_path / "chains.pt"  # an mbdpo file, but not a trained agent's (a chain cache)
    save_checkpoint(other_file, {"score_chains": {}})
    assert_one_line_error(mbdpo_in_process("eval", f"checkpoint={other_file}"),
                          "holds ['score_chains'], not ['config', 'agent']")


def test_a_failed_resume_loses_nothing(short_run, tmp_path):
    run_dir = tmp_path / "kept"
    subprocess.run(["cp", "-r", str(short_run), str(run_dir)], check=True)
    before = {name: (run_dir / name).read_bytes() for name in ("checkpoint.pt", "eval.csv", "train.csv")}
    result = mbdpo_in_process("train", *TINY, "mlp_dim=64", "steps=1500", f"run_dir={run_dir}")
    assert_one_line_error(result, "mlp_dim=64", "differs")
    assert before == {name: (run_dir / name).read_bytes() for name in before}


def test_a_run_resumes_with_its_saved_values_where_the_defaults_have_changed(short_run, tmp_path):
    """A run saved with energy_eta=0.05 (as if that had been an older default) is found and resumed by the
    same command, without energy_eta, and keeps 0.05; a command that gives energy_eta must match it."""
    import json

    from mbdpo.checkpoint import save_checkpoint

    run_dir = tmp_path / "runs" / "cartpole-swingup" / "diffusion" / "1" / "20260101-000000"
    run_dir.parent.mkdir(parents=True)
    subprocess.run(["cp", "-r", str(short_run), str(run_dir)], check=True)
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    checkpoint["config"]["energy_eta"] = 0.05
    save_checkpoint(run_dir / "checkpoint.pt", {k: v for k, v in checkpoint.items() if k not in ("format", "version")})
    (run_dir / "config.json").write_text(json.dumps(checkpoint["config"]))

    given = mbdpo_in_process("train", *TINY, "energy_eta=0.1", "steps=1500", f"run_dir={run_dir}")
    assert_one_line_error(given, "energy_eta=0.1 differs from the checkpoint's energy_eta=0.05")
    result = mbdpo_in_process("train", *TINY, "steps=1500", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"resuming at step 1,000 cartpole-swingup with planner=diffusion (preset cpu) on cpu, run dir runs/" \
           f"cartpole-swingup/diffusion/1/{run_dir.name}" in result.stdout
    assert "kept from the checkpoint (not given; the command's defaults differ): energy_eta=0.05" in result.stdout
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["config"]["energy_eta"] == 0.05
    assert json.loads((run_dir / "config.json").read_text())["energy_eta"] == 0.05
    assert [int(r["step"]) for r in rows(run_dir / "eval.csv")] == [0, 500, 1000, 1500]


def test_a_corrupt_replay_buffer_is_a_clear_error(short_run, tmp_path):
    run_dir = tmp_path / "corrupt"
    subprocess.run(["cp", "-r", str(short_run), str(run_dir)], check=True)
    (run_dir / "buffer.npz").write_bytes(b"not a buffer")
    before = {name: (run_dir / name).read_bytes() for name in ("checkpoint.pt", "eval.csv", "train.csv")}
    result = mbdpo_in_process("train", *TINY, "steps=1500", f"run_dir={run_dir}")
    assert_one_line_error(result, "buffer.npz", "truncated or corrupt")
    assert before == {name: (run_dir / name).read_bytes() for name in before}


def test_a_checkpoint_from_before_the_score_network_loads_and_resumes(short_run, tmp_path):
    """Checkpoints of mbdpo 0.1 have no score network and no score_* config keys.

    Resuming checks the saved configuration against the command's and restores the agent before it
    trains; ``steps=1000`` stops right there (training on is test_rerunning_resumes_from_the_saved_step's).
    """
    from mbdpo import Agent
    from mbdpo.checkpoint import save_checkpoint

    run_dir = tmp_path / "old"
    subprocess.run(["cp", "-r", str(short_run), str(run_dir)], check=True)
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    for key in ("score_network", "score_optimizer", "acting_mode"):
        del checkpoint["agent"][key]
    for key in [k for k in checkpoint["config"] if k.startswith("score_") or k == "act_mode"]:
        del checkpoint["config"][key]
    save_checkpoint(run_dir / "checkpoint.pt", {k: v for k, v in checkpoint.items() if k not in ("format", "version")})
    agent = Agent.from_checkpoint(run_dir / "checkpoint.pt", device="cpu")
    assert agent.acting_mode == "mc" and not agent.score_network.trained
    result = mbdpo_in_process("train", *TINY, "steps=1000", f"run_dir={run_dir}")
    assert result.returncode == 0, result.stderr
    assert "resuming at step 1,000" in result.stdout and "already complete at step 1,000" in result.stdout


def test_latent_plot_of_a_checkpoint_and_refusal_of_task_embeddings_for_one_task(short_run, tmp_path):
    checkpoint = short_run / "checkpoint.pt"
    result = mbdpo_in_process("plot", "latents", f"checkpoint={checkpoint}", "episodes=1", "points=200",
                              f"out={tmp_path / 'latents'}", "device=cpu")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "latents.png").stat().st_size > 5000 and (tmp_path / "latents.svg").exists()
    refused = mbdpo_in_process("plot", "tasks", f"checkpoint={checkpoint}", "device=cpu")
    assert refused.returncode == 2 and "single-task: it has no task embeddings" in refused.stderr


def test_benchmark_scripts_end_a_user_error_with_one_line_and_status_2(short_run, tmp_path):
    benchmarks = Path(__file__).resolve().parent.parent / "benchmarks"

    def benchmark(name: str, checkpoint: Path, *options: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(benchmarks / name), "--checkpoint", str(checkpoint), *options,
                               "--out", str(tmp_path / "out.csv")], capture_output=True, text=True)

    missing = tmp_path / "missing.pt"
    result = benchmark("chain_age.py", missing)
    assert result.returncode == 2
    assert result.stderr.strip() == f"chain_age: error: checkpoint {str(missing)!r} does not exist"
    # the script's own check of its input (a Monte-Carlo run's checkpoint has no chain memory) ends the same way
    result = benchmark("chain_age.py", short_run / "checkpoint.pt")
    assert result.returncode == 2
    assert result.stderr.strip() == (f"chain_age: error: {short_run / 'checkpoint.pt'} holds no chain memory "
                                     "(a run with act_mode=auto|score score_target=chain has one)")
    result = benchmark("plan_departure.py", short_run / "checkpoint.pt", "--buffer", str(short_run / "buffer.npz"))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"plan_departure: error: {short_run / 'checkpoint.pt'} holds an untrained "
                                     "score network (a run with act_mode=auto|score trains one)")
    result = benchmark("chain_steps.py", short_run / "checkpoint.pt", "--buffer", str(short_run / "buffer.npz"),
                       "--ways", "mc:2x4", "mc:0x1")
    assert result.returncode == 2
    assert result.stderr.strip() == ("chain_steps: error: --ways 'mc:0x1': valid are mc:<k>x<K>, local:<k>x<K> and "
                                     "network:<k>, k in 1..2 or all, K >= 1")
    assert not (tmp_path / "out.csv").exists()
    with pytest.raises(ValueError):  # any other exception is a bug: it keeps its traceback
        exit_on_user_error(lambda: int("x"), "script")


def test_a_forked_run_continues_from_the_same_step_under_its_changed_setting(short_run, tmp_path):
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "fork_run.py"

    def fork_run(*changes: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), str(short_run), str(tmp_path / "fork"), *changes],
                              capture_output=True, text=True)

    refused = fork_run("lr=0.001", "batch_sise=8")
    assert refused.returncode == 2 and "unknown config key 'batch_sise'" in refused.stderr
    assert not (tmp_path / "fork").exists()
    assert fork_run("lr=0.001").returncode == 0
    original = load_checkpoint(short_run / "checkpoint.pt")
    assert original["config"]["lr"] == Config().lr
    result = mbdpo_in_process("train", f"run_dir={tmp_path / 'fork'}", "steps=1500", "progress=false")
    assert result.returncode == 0, result.stderr
    assert "resuming at step 1,000" in result.stdout
    resumed = load_checkpoint(tmp_path / "fork" / "checkpoint.pt")
    assert resumed["step"] == 1500 and resumed["config"]["lr"] == 0.001
    assert [int(r["step"]) for r in rows(tmp_path / "fork" / "eval.csv")] == [0, 500, 1000, 1500]
    assert fork_run("lr=0.001").returncode == 2  # never over an existing directory


def test_passenger_summary_pairs_each_way_with_monte_carlo_by_episode(monkeypatch):
    benchmarks = Path(__file__).resolve().parent.parent / "benchmarks"
    monkeypatch.syspath_prepend(str(benchmarks))  # score_passengers.py imports its sibling online.py
    from score_passengers import paired_summary

    rows = [{"monte_carlo": "10", "network": "12"}, {"monte_carlo": "20", "network": "18"},
            {"monte_carlo": "30", "network": "36"}]
    monte_carlo, network = paired_summary(rows, ["monte_carlo", "network"])
    assert monte_carlo["percent_of_mc"] == 100 and monte_carlo["paired_difference"] == 0
    # differences 2, -2, 6: mean 2, std 4, standard error 4 / sqrt(3); two of three episodes won
    assert network == {"way": "network", "mean": 22.0, "std": 12.5, "percent_of_mc": 110.0,
                       "paired_difference": 2.0, "standard_error": 2.3, "better_than_mc": 2}


def test_score_fit_settings_fix_what_they_compare_whatever_the_checkpoint_chose(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from score_fit import SETTINGS, selected

    # a run trained with the prior anchor, return guidance and a wide network: only the settings named so keep them
    checkpoint_config = Config(score_anchor="prior", score_return_coef=1.0, score_mlp_dim=64, score_layers=4)
    for name, overrides in SETTINGS.items():
        cfg = Config.from_dict({**checkpoint_config.to_dict(), **overrides})
        assert cfg.score_anchor == ("prior" if "prior anchor" in name else "none"), name
        assert cfg.score_return_coef == (1.0 if "return 1" in name and "replay" not in name else 0.0), name
        assert (cfg.score_mlp_dim, cfg.score_layers) == ((1024, 3) if "3x1024" in name else (0, 2)), name
    # --only names one setting exactly, or a part of several names
    assert [name for name in SETTINGS if selected(name, "mixed 32x32", SETTINGS)] == ["mixed 32x32"]
    assert [name for name in SETTINGS if selected(name, "mixed", SETTINGS)] == [
        "mixed 32x32", "mixed 32x32, prior anchor", "mixed 32x32, 3x1024"]


def test_a_truncated_chain_of_all_steps_plans_as_monte_carlo_acting_does(short_run, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from chain_steps import TruncatedChainPlanner, averaged_denoiser, parse_way

    from mbdpo.agent import Agent

    agent = Agent.from_checkpoint(short_run / "checkpoint.pt", device="cpu")
    steps = agent.cfg.diffusion_steps
    with torch.no_grad():
        z = agent.model.encode(torch.randn(1, agent.cfg.obs_dim, generator=torch.Generator().manual_seed(0)))
    plans = {}
    for name, planner in {"monte carlo": agent.planner,
                          "all steps": TruncatedChainPlanner(agent, steps, estimates=1, network=False),
                          "first step": TruncatedChainPlanner(agent, 1, estimates=1, network=False)}.items():
        torch.manual_seed(3)
        plans[name] = planner.plan(z)
    # the same random draws in the same order: the whole truncated chain is Monte-Carlo acting (its plan is the
    # last denoised mean, which the last reverse step of eq. 3 returns up to rounding)
    assert torch.allclose(plans["all steps"], plans["monte carlo"], rtol=0, atol=1e-6)
    assert not torch.allclose(plans["first step"], plans["monte carlo"], rtol=0, atol=1e-2)
    assert plans["first step"].shape == (agent.cfg.horizon, agent.cfg.action_dim)

    # local: Monte Carlo without the policy prior's trajectories among the candidates (it draws none)
    assert parse_way("local:allx2", steps) == ("local", steps, 2)
    local = TruncatedChainPlanner(agent, steps, estimates=1, network=False,
                                  cfg=dataclasses.replace(agent.cfg, num_pi_trajs=0))

    def no_prior_trajectories(*args, **kwargs):
        raise AssertionError("the prior's trajectories were drawn")

    monkeypatch.setattr("mbdpo.planning.diffusion.policy_trajectories", no_prior_trajectories)
    assert local.plan(z).shape == plans["monte carlo"].shape
    with pytest.raises(AssertionError, match="trajectories were drawn"):
        agent.planner.plan(z)

    ones, threes = torch.ones(2, 3, 1), 3 * torch.ones(2, 3, 1)
    average = averaged_denoiser([lambda x_tau, tau: ones, lambda x_tau, tau: threes])
    assert torch.equal(average(torch.zeros(2, 3, 1), 0), 2 * ones)


def test_value_ranking_acts_on_the_proposal_its_critic_or_model_ranks_first(short_run, monkeypatch):
    benchmarks = Path(__file__).resolve().parent.parent / "benchmarks"
    monkeypatch.syspath_prepend(str(benchmarks))
    from value_ranking import BestProposalPlanner, Way, parse_way

    from mbdpo.agent import Agent
    from mbdpo.diagnostics import mean_q
    from mbdpo.planning.rollout import candidate_returns, policy_trajectories

    agent = Agent.from_checkpoint(short_run / "checkpoint.pt", device="cpu")
    model, cfg = agent.model.eval(), agent.cfg  # as when acting: no Q dropout
    with torch.no_grad():
        z = model.encode(torch.randn(1, cfg.obs_dim))
    rankings = {"value": lambda plans: mean_q(model, z.expand(len(plans), -1), plans[:, 0]),
                "return": lambda plans: candidate_returns(model, z, plans.unsqueeze(0), cfg.energy_eta)[0]}
    for ranking, score in rankings.items():
        planner = BestProposalPlanner(agent.planner, Way("prior", prior_plans=16, ranking=ranking))
        with torch.no_grad():
            torch.manual_seed(7)  # the planner's draws, in its order: the proposals, then the ranking
            proposals = policy_trajectories(model, z, cfg.horizon, 16)[0]
            scores = score(proposals)
            torch.manual_seed(7)
            chosen = planner.plan(z)
        assert len(set(scores.tolist())) == 16  # a real choice
        assert torch.equal(chosen, proposals[scores.argmax()])
    first_actions = proposals[:, 0]
    assert torch.equal(mean_q(model, z.expand(16, -1), first_actions), mean_q(model, z.expand(16, -1), first_actions))

    # beside a network, it counts the actions that took one of the network's plans
    with torch.no_grad():
        fixed = policy_trajectories(model, z, cfg.horizon, 5)[0]
    best_first = fixed[mean_q(model, z.expand(5, -1), fixed[:, 0]).argsort(descending=True)]
    for network_plans, prior_plans, network_actions in [(best_first[:2], best_first[2:], 3),
                                                         (best_first[3:], best_first[:3], 0)]:
        mixed = BestProposalPlanner(agent.planner, Way("network", network_plans=2, prior_plans=3, ranking="value"))
        monkeypatch.setattr(mixed, "network_plans", lambda z, obs, plans=network_plans: plans)
        monkeypatch.setattr("value_ranking.policy_trajectories", lambda *args, plans=prior_plans: plans.unsqueeze(0))
        with torch.no_grad():
            for _ in range(3):
                assert torch.equal(mixed.plan(z), best_first[0])
        assert (mixed.actions, mixed.network_actions) == (3, network_actions)
        mixed.reset()  # at an episode's start: the counts are per episode
        assert (mixed.actions, mixed.network_actions) == (0, 0)

    assert parse_way("network:16+0:return") == Way("network", network_plans=16, prior_plans=0, ranking="return")
    assert parse_way("prior-mean") == Way("prior-mean") and parse_way("network") == Way("network", network_plans=1)
    result = subprocess.run([sys.executable, str(benchmarks / "value_ranking.py"), "--checkpoint", "any.pt",
                             "--buffer", "any.npz", "--ways", "mc", "prior:8:rank"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "value_ranking: error: --ways 'prior:8:rank': valid are mc, prior-mean, prior:<P>:<rank>, network and "
        "network:<K>+<P>:<rank>, with K, P >= 1 (P >= 0 beside a network) and rank value or return")


def test_planner_distillation_labels_the_students_states_and_learns_a_known_teacher(short_run, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from planner_distillation import (
        StudentPlanner, fit_student, held_out_split, labelled_episode, prior_copy, student_error,
    )

    from mbdpo.agent import Agent
    from mbdpo.envs import make_env

    agent = Agent.from_checkpoint(short_run / "checkpoint.pt", device="cpu")
    prior = prior_copy(agent)
    torch.manual_seed(0)
    teacher = prior_copy(agent)
    with torch.no_grad():  # a teacher whose action is a known function of z, unlike the prior's
        for parameter in teacher.parameters():
            parameter.copy_(0.5 * torch.randn_like(parameter))
    prior_before = [parameter.clone() for parameter in agent.model.policy_head.parameters()]

    # the student acts, the teacher labels each state the student visits
    env = make_env(agent.cfg.task, agent.cfg.seed)
    taken, step = [], env.step
    monkeypatch.setattr(env, "step", lambda action: (taken.append(action), step(action))[1])
    z, labels = labelled_episode(agent, StudentPlanner(agent, teacher), StudentPlanner(agent, prior), env, seed=3)
    assert len(z) == len(taken)
    with torch.no_grad():
        assert torch.allclose(labels, teacher.actions(agent.model, z), atol=1e-6)
        assert torch.allclose(torch.as_tensor(np.stack(taken)), agent.model.pi(z)[1]["mean"], atol=1e-6)

    # fitted on nine tenths of the states, the student matches the teacher on the tenth it never saw
    held_out = held_out_split(len(z), seed=0)
    assert int(held_out.sum()) == len(z) // 10
    student = fit_student(agent, z[~held_out], labels[~held_out], steps=300, batch_size=64, lr=1e-3, seed=0)
    with torch.no_grad():
        error, prior_error = (student_error(agent.model, policy, z[held_out], labels[held_out])
                              for policy in (student, prior))
    assert error < 0.05 * prior_error
    assert all(torch.equal(a, b) for a, b in zip(prior_before, agent.model.policy_head.parameters()))  # a start

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "planner_distillation.py"
    errors = {
        ("--fit-seeds", "0"): "--fit-seeds 0: valid are --rounds >= 0, --label-episodes >= 0, --replay-states >= 0, "
                              "--plans-per-state >= 1, --imagined-steps >= 0, --fit-steps >= 1, --fit-seeds >= 1, --batch-size >= 1, "
                              "--floor-states >= 1, --episodes >= 2, --mean-of >= 0",
        ("--label-episodes", "0"): "--label-episodes 0 with --rounds 1 --replay-states 0 labels nothing in some "
                                   "round: valid with --rounds 0 and --replay-states >= 1 or --chain-labels",
        ("--replay-states", "5"): "--replay-states 5 needs --buffer RUN/buffer.npz",
        ("--imagined-steps", "2"): "--imagined-steps 2 starts from replay states: valid with --replay-states >= 1",
    }
    for flag, message in errors.items():
        result = subprocess.run([sys.executable, str(script), "--checkpoint", "any.pt", *flag],
                                capture_output=True, text=True)
        assert result.returncode == 2
        assert result.stderr.strip() == "planner_distillation: error: " + message


def test_chain_labels_are_the_stored_chains_states_and_first_actions(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from planner_distillation import chain_labels

    from tests.test_score_network import tiny_agent

    agent = tiny_agent(act_mode="auto", score_target="chain", score_sampler="policy")
    with pytest.raises(ConfigError, match="stores no chains"):
        chain_labels(agent)
    obs = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    for row in obs:
        agent.act(row, explore=True)
    z, labels = chain_labels(agent)
    assert torch.equal(z, agent.model.encode(torch.as_tensor(obs)))
    assert torch.equal(labels, agent.chains.plan[:6, 0])


def test_replay_labels_average_each_states_own_plans_across_batches(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import planner_distillation
    from planner_distillation import LABEL_BATCH, replay_labels

    horizon, action_dim, plans = 3, 2, 4

    def first_action_is_the_latent_plus_or_minus_one(monte_carlo, z):
        """Plans whose first action is z's first coordinates, +1 on even rows of the batch and -1 on odd ones."""
        sign = torch.where(torch.arange(len(z)) % 2 == 0, 1.0, -1.0)[:, None]
        return (z[:, :action_dim] + sign)[:, None].expand(-1, horizon, -1)

    monkeypatch.setattr(planner_distillation, "fresh_plans", first_action_is_the_latent_plus_or_minus_one)
    z = torch.randn(LABEL_BATCH + 37, 8)  # the repeated latents span several batches, the last one short
    labels = replay_labels(None, z, plans)
    assert labels.shape == (len(z), action_dim)
    assert torch.allclose(labels, z[:, :action_dim], atol=1e-6)  # each state's own plans, their +-1 cancelling
    assert not torch.allclose(replay_labels(None, z, 1), z[:, :action_dim])  # one plan keeps its +-1


def test_imagined_labels_follow_each_labels_action_through_the_model(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import planner_distillation
    from planner_distillation import imagined_labels

    horizon, action_dim, steps = 3, 2, 3

    def first_action_is_the_latents_head(monte_carlo, z):
        return z[:, :action_dim, None].transpose(1, 2).expand(-1, horizon, -1)

    class Model:
        """Dynamics that add the action, doubled, to the latent's first coordinates."""
        def next(self, z, action):
            return torch.cat([z[:, :action_dim] + 2 * action, z[:, action_dim:]], dim=1)

    monkeypatch.setattr(planner_distillation, "fresh_plans", first_action_is_the_latents_head)
    monte_carlo = types.SimpleNamespace(model=Model())
    z, labels = torch.randn(5, 4), torch.randn(5, action_dim)
    imagined_z, imagined_targets = imagined_labels(monte_carlo, z, labels, steps, plans=2)
    assert imagined_z.shape == (steps * 5, 4) and imagined_targets.shape == (steps * 5, action_dim)
    expected, action = z.clone(), labels
    for step in range(steps):  # row step * 5 + i descends from state i, along each step's label
        expected[:, :action_dim] += 2 * action
        action = expected[:, :action_dim]
        assert torch.allclose(imagined_z[step * 5:(step + 1) * 5], expected)
        assert torch.allclose(imagined_targets[step * 5:(step + 1) * 5], action)


def test_students_never_fit_the_imagined_descendants_of_held_out_states(short_run, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import planner_distillation
    from planner_distillation import fitted_students, held_out_split, prior_copy

    from mbdpo.agent import Agent

    agent = Agent.from_checkpoint(short_run / "checkpoint.pt", device="cpu")
    replay, episode, steps = 20, 7, 2
    latents = [torch.randn(replay, agent.cfg.latent_dim), torch.randn(episode, agent.cfg.latent_dim)]
    latents[0][:, 0] = torch.arange(replay)  # each state's id in its first coordinate: replay first, then
    latents[1][:, 0] = 100 + torch.arange(episode)  # an episode's
    labels = [torch.zeros(len(z), agent.cfg.action_dim) for z in latents]
    imagined_z = torch.randn(steps * replay, agent.cfg.latent_dim)
    imagined_z[:, 0] = 1000 + torch.arange(replay).repeat(steps)  # 1000 + the id of the state it descends from
    fitted = []
    monkeypatch.setattr(planner_distillation, "fit_student",
                        lambda agent, z, targets, *rest: (fitted.append(z[:, 0]), prior_copy(agent))[1])
    args = argparse.Namespace(replay_states=replay, imagined_steps=steps, fit_seeds=1, fit_steps=1, batch_size=4,
                              lr=1e-3, floor_states=2)
    fit = fitted_students(agent, agent.planner, latents, labels,
                          (imagined_z, torch.zeros(len(imagined_z), agent.cfg.action_dim)), 0, args)
    held_out_ids = torch.cat([z[:, 0] for z in latents])[held_out_split(replay + episode, 0)]
    fitted_ids = set(fitted[0].tolist())
    assert fitted_ids.isdisjoint(held_out_ids.tolist())
    assert fitted_ids.isdisjoint((1000 + held_out_ids).tolist())  # nor anything imagined from them
    held_out_replay = int((held_out_ids < replay).sum())
    assert fit["student:0"][1]["labels"] == len(fitted[0]) == (replay + episode - len(held_out_ids)
                                                                  + steps * (replay - held_out_replay))


def test_the_mean_of_k_monte_carlo_plans_spreads_a_kth_as_much_as_one_plan(short_run, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from planner_distillation import MonteCarloMeanPlanner

    from mbdpo.agent import Agent
    from mbdpo.envs import make_env

    agent = Agent.from_checkpoint(short_run / "checkpoint.pt", device="cpu")
    obs, _ = make_env(agent.cfg.task, agent.cfg.seed).reset(seed=0)
    with torch.no_grad():
        z = agent.model.encode(torch.as_tensor(obs).unsqueeze(0))
    torch.manual_seed(0)
    spreads = {}
    for count in (1, 16):
        plans = torch.stack([MonteCarloMeanPlanner(agent.planner, count).plan(z) for _ in range(12)])
        assert plans.shape == (12, agent.cfg.horizon, agent.cfg.action_dim)
        spreads[count] = float(plans.var(0).sum())
    assert spreads[1] > 0
    assert spreads[16] < 0.25 * spreads[1]  # 1/16 expected: independent plans, averaged


def test_step_distances_measure_where_two_denoisers_part_along_a_chain(short_run, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from plan_departure import step_distances

    from mbdpo.agent import Agent
    from mbdpo.planning.rollout import policy_mean_plan

    agent = Agent.from_checkpoint(short_run / "checkpoint.pt", device="cpu")
    schedule = agent.planner.schedule_on(torch.device("cpu"))
    with torch.no_grad():
        z = agent.model.encode(torch.randn(4, agent.cfg.obs_dim))
        prior = torch.tanh(policy_mean_plan(agent.model, z, agent.cfg.horizon))

    def identity(x_tau: torch.Tensor, tau: int) -> torch.Tensor:  # denoises nothing
        return (x_tau / schedule.alpha_bar[tau].sqrt()).clamp(-1, 1)

    def to_prior(x_tau: torch.Tensor, tau: int) -> torch.Tensor:  # always the prior's mean plan
        return prior

    with torch.no_grad():
        rows = step_distances(agent, z, {"identity": identity, "prior": to_prior}, identity, to_prior)
    assert [(r["chain"], r["tau"]) for r in rows] == [(chain, tau) for chain in ("identity", "prior")
                                                      for tau in reversed(range(schedule.steps))]
    for row in rows:
        assert row["network_to_identity"] == 0 and row["monte_carlo_to_prior"] == 0
        assert row["network_to_monte_carlo"] == row["network_to_prior"] == row["monte_carlo_to_identity"] > 0


def test_rollout_costs_time_each_count_of_plans_and_a_network_call(monkeypatch):
    benchmarks = Path(__file__).resolve().parent.parent / "benchmarks"
    monkeypatch.syspath_prepend(str(benchmarks))
    from rollout_cost import ACTION_DIM, OBS_DIM, cost_rows

    from mbdpo.agent import Agent

    cfg = Config.from_overrides({"device": "cpu", "mlp_dim": 32, "enc_dim": 32, "latent_dim": 16,
                                 "planner_preset": "cpu", "act_mode": "score"}).resolve(OBS_DIM, ACTION_DIM, 1000)
    rows = cost_rows(Agent(cfg, torch.device("cpu")), [1, 4], repeats=2)
    assert [row["call"] for row in rows] == ["rollout of 1 plans", "rollout of 4 plans", "score-network call"]
    for row in rows:
        assert row["ms_per_call"] > 0
        assert row["ms_per_action_at_one_per_step"] == round(row["ms_per_call"] * cfg.diffusion_steps, 1)
    for options, message in [(["--plans", "0", "8"], "--plans 0: every count of plans must be at least 1"),
                             (["--repeats", "0"], "--repeats 0: must be at least 1")]:
        result = subprocess.run([sys.executable, str(benchmarks / "rollout_cost.py"), *options],
                                capture_output=True, text=True)
        assert result.returncode == 2
        assert result.stderr.strip() == f"rollout_cost: error: {message}"
