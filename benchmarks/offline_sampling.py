"""Cost of sampling a memory-mapped data set, from the page cache and from disk, against the cost of an update.

Writes a synthetic mt30-shaped chunk (``--episodes`` x 501 rows, 132 bytes a
row) into ``--dir`` unless one is there, then measures in one run:

1. milliseconds to gather a batch of windows with the file in the page cache,
   and right after the cache was dropped (needs root: ``/proc/sys/vm/drop_caches``;
   skipped otherwise), i.e. read from disk;
2. milliseconds of one offline update (model_size 1) on such batches, from a
   cold cache, sampling included (``--updates`` of them).

    sudo python benchmarks/offline_sampling.py --dir /tmp/offline-bench --episodes 30000 --batch-sizes 256,1024

Results: benchmarks/results/offline_sampling.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from mbdpo.agent import Agent
from mbdpo.config import Config
from mbdpo.data.offline import OfflineDataset, write_chunk
from mbdpo.envs.task_sets import MT30

RESULTS = Path(__file__).resolve().parent / "results"


def synthetic_chunk(path: Path, episodes: int) -> None:
    rng = np.random.default_rng(0)
    rows = 501
    action = rng.uniform(-1, 1, (episodes, rows, 6)).astype(np.float32)
    reward = rng.uniform(0, 1, (episodes, rows)).astype(np.float32)
    action[:, 0], reward[:, 0] = np.nan, np.nan
    write_chunk(path, rng.standard_normal((episodes, rows, 24), dtype=np.float32), action, reward,
                np.repeat((np.arange(episodes) % 30)[:, None], rows, 1))


def drop_page_cache() -> bool:
    result = subprocess.run("sync && echo 3 > /proc/sys/vm/drop_caches", shell=True, capture_output=True)
    return result.returncode == 0


def batch_milliseconds(dataset: OfflineDataset, batch_size: int, count: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    tick = time.perf_counter()
    for _ in range(count):
        dataset.sample(batch_size, rng, torch.device("cpu"))
    return 1000 * (time.perf_counter() - tick) / count


def update_milliseconds(dataset: OfflineDataset, batch_size: int, updates: int) -> float:
    cfg = Config.from_overrides({"model_size": 1, "device": "cpu", "batch_size": batch_size}).resolve_multitask(MT30)
    torch.manual_seed(0)
    agent = Agent(cfg, torch.device("cpu"))
    rng = np.random.default_rng(1)
    agent.update(dataset.sample(batch_size, rng, torch.device("cpu")))  # first-call overheads
    tick = time.perf_counter()
    for _ in range(updates):
        agent.update(dataset.sample(batch_size, rng, torch.device("cpu")))
    return 1000 * (time.perf_counter() - tick) / updates


def measure(dataset: OfflineDataset, path: Path, batch_size: int, updates: int) -> dict:
    result = {"batch_size": batch_size, "threads": torch.get_num_threads()}
    subprocess.run(f"cat {path} > /dev/null", shell=True, check=True)
    result["ms_per_batch_cached"] = round(batch_milliseconds(dataset, batch_size, 50, 0), 1)
    cold = drop_page_cache()
    if cold:
        result["ms_per_batch_from_disk"] = round(batch_milliseconds(dataset, batch_size, 50, 1), 1)
        drop_page_cache()
    result["ms_per_update_sampling_included"] = round(update_milliseconds(dataset, batch_size, updates), 1)
    result["page_cache_dropped"] = cold
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--episodes", type=int, default=30_000)
    parser.add_argument("--batch-sizes", default="256,1024")
    parser.add_argument("--updates", type=int, default=30)
    args = parser.parse_args()
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "chunk_0.pt"
    if not path.exists():
        synthetic_chunk(path, args.episodes)
    dataset = OfflineDataset(directory, 24, 6, 30, horizon=3)
    results = {"file_gb": round(path.stat().st_size / 1e9, 2),
               "runs": [measure(dataset, path, int(b), args.updates) for b in args.batch_sizes.split(",")]}
    print(json.dumps(results, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "offline_sampling.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
