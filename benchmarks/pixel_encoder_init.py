"""Does a new pixel agent's encoder learn? The convolutions' initialisation side by side, on a pixel run's replay.

    python benchmarks/pixel_encoder_init.py --run RUN_DIR --updates 300 --out benchmarks/results/pixel_encoder_init.csv

For each pixel encoder (``library``: this library's; ``before``: as it was
before commit 80de2fe, with PyTorch's default initialisation of the
convolutions and, where the latent is not 512-dimensional, a plain linear
projection initialised small), a new agent with the run's configuration trains for
``--updates`` updates on batches of the run's stored replay (``buffer.npz``),
with the same seed. Every 50 updates a row gives the spread of the latents
of 20 stored frame stacks (std over the stacks, mean over latent dimensions),
and the update's losses and gradient norm. A collapsing encoder keeps its
energy loss at ln(candidates) and its gradient norm near 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from mbdpo.agent import Agent
from mbdpo.analysis.runs import write_csv
from mbdpo.checkpoint import load_checkpoint
from mbdpo.config import Config
from mbdpo.data.buffer import ReplayBuffer
from mbdpo.errors import ConfigError, exit_on_user_error
from mbdpo.model.layers import NormedLinear, init_weights
from mbdpo.training.online import buffer_rows

LOGGED = ("consistency_loss", "reward_loss", "energy_loss", "grad_norm")


def train_rows(cfg: Config, buffer: ReplayBuffer, probe: torch.Tensor, init: str, updates: int) -> list[dict]:
    torch.manual_seed(0)
    agent = Agent(cfg, torch.device("cpu"))
    if init == "before":
        encoder = agent.model.encoder
        for conv in (m for m in encoder.modules() if isinstance(m, torch.nn.Conv2d)):
            conv.reset_parameters()
        if isinstance(encoder[-1], NormedLinear):
            projection = torch.nn.Linear(encoder[-1][0].in_features, cfg.latent_dim)
            init_weights(projection)
            encoder[-1] = torch.nn.Sequential(projection, encoder[-1][-1])  # linear, then SimNorm
        agent.optimizer.param_groups[0]["params"] = list(encoder.parameters())  # the encoder's group
    rng, rows = np.random.default_rng(0), []
    for update in range(updates + 1):
        metrics = agent.update(buffer.sample(cfg.batch_size, rng, torch.device("cpu")))
        if update % 50 == 0:
            with torch.no_grad():
                spread = float(agent.model.encode(probe).std(0).mean())
            rows.append({"init": init, "update": update, "latent_spread": f"{spread:.3g}",
                         **{key: round(float(metrics[key]), 5) for key in LOGGED}})
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a pixel run's directory (obs=rgb)")
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    cfg = Config.from_dict(load_checkpoint(args.run / "checkpoint.pt", torch.device("cpu"))["config"])
    if cfg.obs != "rgb":
        raise ConfigError(f"{args.run} is a run with obs={cfg.obs}, not obs=rgb")
    buffer = ReplayBuffer(buffer_rows(cfg), cfg.obs_shape, cfg.action_dim, cfg.horizon, obs_dtype=np.uint8)
    buffer.load(args.run / "buffer.npz")
    used = buffer.next_row  # the rows the run stored
    probe = torch.as_tensor(buffer.obs[: used : used // 20][:20])
    write_csv(args.out, [row for init in ("library", "before") for row in train_rows(cfg, buffer, probe, init,
                                                                                 args.updates)])


if __name__ == "__main__":
    exit_on_user_error(main, "pixel_encoder_init")
