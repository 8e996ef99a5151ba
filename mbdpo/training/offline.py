"""Multi-task offline pre-training on a TD-MPC2 data set (ALGORITHM.md section 7).

``mbdpo train task=mt30 data_dir=PATH`` trains one model for every task of
the set from the data set's episodes. ``steps`` counts updates (iterations),
not environment steps. Every ``log_freq`` updates the mean losses go to
train.csv; every ``eval_freq`` updates the agent is evaluated in the real
environment of every task that occurs in the data set, and the run is
checkpointed. eval.csv then holds the normalised score (DMControl return / 10,
MetaWorld success x 100, averaged), the mean return and one
``<task>/episode_reward`` column per task. Ctrl-C or SIGTERM asks the run to
stop: it finishes the update, checkpoints and stops (:mod:`mbdpo.training.stop`).

Tasks whose suite is not installed (MetaWorld is optional) are trained on
but not evaluated; the run says so at start.

Under ``torchrun --nproc_per_node=K`` the update is data-parallel
(:mod:`mbdpo.training.distributed`): each process samples ``batch_size``
windows from its shard of the episodes, so one update uses K x ``batch_size``;
rank 0 evaluates, logs and checkpoints.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mbdpo.agent import Agent
from mbdpo.checkpoint import save_checkpoint
from mbdpo.config import Config, torch_device
from mbdpo.data.offline import OfflineDataset
from mbdpo.envs import available
from mbdpo.envs.task_sets import task_set
from mbdpo.errors import ConfigError
from mbdpo.training.distributed import local_device, process_group
from mbdpo.training.evaluate import evaluate_tasks, normalised_score
from mbdpo.training.logger import RunLogger
from mbdpo.training.run_dir import (
    CHECKPOINT, choose_run_dir, keys_set, kept_from_checkpoint, peak_rss_mib, random_state, restore_random_state,
    resume_point, seed_everything,
)
from mbdpo.training.stop import RunStopped, StopRequest


class OfflineTrainer:
    """Trains one multi-task agent from a data set; see the module docstring."""

    def __init__(self, cfg: Config, given: set[str] | None = None):
        """``given``: the keys the command set (default: those of ``cfg`` away from their defaults); a
        resumed run takes the others from its checkpoint (:func:`mbdpo.training.run_dir.resume_point`)."""
        if not cfg.data_dir:
            raise ConfigError(f"task={cfg.task} trains offline: give data_dir=PATH (the folder of chunk_*.pt files)")
        self.device = local_device(torch_device(cfg.device))
        self.sync = process_group(self.device)
        self.main = self.sync.rank == 0
        given = keys_set(cfg) if given is None else given
        self.run_dir = self.sync.broadcast_object(choose_run_dir(cfg, given))
        resumed_cfg, checkpoint = resume_point(self.run_dir, cfg, given, self.device)
        self.kept_note = kept_from_checkpoint(resumed_cfg, cfg) if checkpoint else ""
        self.cfg = cfg = resumed_cfg.resolve_multitask(task_set(resumed_cfg.task))
        self.dataset = OfflineDataset(cfg.data_dir, cfg.obs_dim, cfg.action_dim, cfg.num_tasks, cfg.horizon,
                                      self.sync.rank, self.sync.world_size)
        present = self.dataset.tasks()
        self.eval_tasks = [t for t in present if available(cfg.tasks[t])]
        self.unevaluated = [cfg.tasks[t] for t in present if not available(cfg.tasks[t])]

        seed_everything(cfg.seed)  # the same initial networks in every process
        self.rng = np.random.default_rng(cfg.seed)
        self.agent = Agent(cfg, self.device, self.sync)
        self.step, self.elapsed_before = 0, 0.0
        self.resumed = checkpoint is not None
        if self.resumed:
            self.agent.load_state_dict(checkpoint["agent"])
            self.step, self.elapsed_before = checkpoint["step"], checkpoint["elapsed"]
            restore_random_state(checkpoint["rng"], self.rng, self.device)
        if self.sync.world_size > 1:  # each process its own random streams from here on
            self.rng = np.random.default_rng([cfg.seed, self.sync.rank, self.step])
            torch.manual_seed(int(self.rng.integers(2**31)))
        self.logger = None
        if self.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            cfg.save(self.run_dir / "config.json")
            self.logger = RunLogger(self.run_dir, cfg, self.step if self.resumed else None)
            self._print_header(present)

    def _print_header(self, present: list[int]) -> None:
        cfg, dataset = self.cfg, self.dataset
        state = f"resuming at update {self.step:,}" if self.resumed else "training"
        processes = f" x {self.sync.world_size} processes" if self.sync.world_size > 1 else ""
        print(f"mbdpo: {state} {cfg.task} offline with planner={cfg.planner} on {self.device}{processes}, "
              f"run dir {self.run_dir}")
        if self.kept_note:
            print(self.kept_note)
        print(f"data set: {len(dataset.chunks)} chunk(s), {dataset.num_transitions:,} transitions, "
              f"{dataset.nbytes / 2**30:.2f} GiB memory-mapped from {cfg.data_dir}; "
              f"{len(present)} of {cfg.num_tasks} tasks present")
        print("parameters: " + ", ".join(f"{k} {v:,}" for k, v in self.agent.model.parameter_counts().items()))
        if self.unevaluated:
            print(f"not evaluated (no environment installed): {', '.join(self.unevaluated)}")

    def run(self) -> Path:
        cfg = self.cfg
        self.start_time = time.time()
        if self.resumed and self.step >= cfg.steps:
            if self.main:
                print(f"mbdpo: {self.run_dir} is already complete at update {self.step:,} (steps={cfg.steps:,})")
            self._close()
            return self.run_dir
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (cfg.progress and self.main), unit="update",
                   dynamic_ncols=True)
        metric_sums: dict[str, torch.Tensor] = {}
        update_seconds, since_log = 0.0, 0
        try:
            if not self.resumed:
                self._evaluate_and_save(bar)
            with StopRequest("update (or evaluation)") as stop:
                while self.step < cfg.steps:
                    tick = time.perf_counter()
                    metrics = self.agent.update(self.dataset.sample(cfg.batch_size, self.rng, self.device))
                    update_seconds += time.perf_counter() - tick
                    metric_sums = {k: metric_sums.get(k, 0.0) + v for k, v in metrics.items()}
                    self.step += 1
                    since_log += 1
                    bar.update(1)
                    if self.main and (self.step % cfg.log_freq == 0 or self.step == cfg.steps):
                        row = {k: float(v) / since_log for k, v in metric_sums.items()}
                        self.logger.log("train", {"step": self.step, **row, "elapsed": self.elapsed(),
                                                  "updates_per_second": since_log / update_seconds,
                                                  "peak_rss_mib": peak_rss_mib()})
                        metric_sums, update_seconds, since_log = {}, 0.0, 0
                    if self.step % cfg.eval_freq == 0 or self.step == cfg.steps:
                        self._evaluate_and_save(bar)
                    elif self.sync.any(stop.requested()):  # every process stops at the same update
                        if self.main:
                            self.save()
                        self.sync.barrier()  # the processes leave together, once the checkpoint is written
                        # A process that got no signal itself (only another one did) stops as on SIGTERM.
                        raise RunStopped(self.run_dir, self.step, stop.signal or signal.SIGTERM)
                # The other processes wait for rank 0's last evaluation and checkpoint, so that none tears its
                # process group down while another still works (a process that left early was once aborted in CI).
                self.sync.barrier()
        finally:
            bar.close()
            self._close()
        return self.run_dir

    def _close(self) -> None:
        if self.logger is not None:
            self.logger.close()
        self.sync.close()

    def _evaluate_and_save(self, bar: tqdm) -> None:
        """Evaluate every task and checkpoint (rank 0 only)."""
        cfg = self.cfg
        if not self.main:
            return
        bar.set_description(f"evaluating {len(self.eval_tasks)} tasks")
        rows = evaluate_tasks(self.agent, self.eval_tasks, cfg.eval_episodes, cfg.seed)
        bar.set_description("training")
        row = {"step": self.step}
        if rows:
            row.update(score=normalised_score(rows), episode_reward=float(np.mean([r["episode_reward"] for r in rows])),
                       episode_success=float(np.mean([r["episode_success"] for r in rows])))
            row.update({f"{r['task']}/episode_reward": r["episode_reward"] for r in rows})
            row.update({f"{r['task']}/episode_success": r["episode_success"] for r in rows
                        if str(r["task"]).startswith("mw-")})
            bar.set_postfix(score=f"{row['score']:.1f}")
        self.logger.log("eval", {**row, "elapsed": self.elapsed()})
        self.save()

    def elapsed(self) -> float:
        return self.elapsed_before + time.time() - self.start_time

    def save(self) -> None:
        save_checkpoint(self.run_dir / CHECKPOINT, {
            "config": self.cfg.to_dict(),
            "agent": self.agent.state_dict(),
            "step": self.step,
            "elapsed": self.elapsed(),
            "trained_tasks": [self.cfg.tasks[t] for t in self.dataset.tasks()],
            "rng": random_state(self.rng, self.device),
        })
