"""Microseconds per call of the model's hand-written activations against PyTorch's own, side by side.

    python benchmarks/kernels.py --out benchmarks/results/kernels.csv

Mish (:func:`mbdpo.model.functional.mish`, a closed form with an analytic
backward pass, against ``F.mish``) and SimNorm
(:func:`mbdpo.model.functional.simnorm`, a softmax over a transposed view of
the groups, against the softmax over a contiguous last dimension of 8), at
the shapes of model_size 1: a planner's batch of imagined states (512
candidates) and an update's batch of windows (4 x 256). ``forward`` is one
call without autograd, ``forward+backward`` one call and its gradient. One
thread; run it on an idle machine.

With ``--steps`` it also times whole actions and updates (as
``benchmarks/speed.py`` does, model_size 1) with the model's Mish and
SimNorm, then with PyTorch's swapped in, alternating over two rounds
(``results/kernels_steps.csv``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

import mbdpo.model.layers
from mbdpo.analysis.runs import write_csv
from mbdpo.model.functional import mish, simnorm
from speed import CONFIGS, measure, time_ms

SHAPES = {"planning, latents": (512, 128), "planning, hidden": (512, 512), "update, latents": (4, 256, 128),
          "update, hidden": (4, 256, 512)}
STEP_CONFIGS = ("mppi tdmpc2 (6x512, eta=0)", "diffusion cpu preset (20x64)", "diffusion 5x256 (former cpu preset)")


def contiguous_simnorm(x: torch.Tensor, group_size: int = 8) -> torch.Tensor:
    """SimNorm with the softmax over a contiguous last dimension of ``group_size``."""
    return F.softmax(x.unflatten(-1, (-1, group_size)), dim=-1).flatten(-2)


KERNELS = {
    "mish (ours)": mish,
    "mish (F.mish)": F.mish,
    "simnorm (ours)": lambda x: simnorm(x, 8),
    "simnorm (contiguous softmax)": contiguous_simnorm,
}


def microseconds(fn, x: torch.Tensor, backward: bool, repeats: int) -> float:
    """Mean time of ``fn(x)`` (and its backward pass) over ``repeats`` calls, after 3 warm-up calls."""
    x = x.clone().requires_grad_(backward)

    def call() -> None:
        if backward:
            fn(x).sum().backward()
        else:
            with torch.no_grad():
                fn(x)

    return 1000 * time_ms(call, repeats)


def step_rows(repeats: int) -> list[dict]:
    """ms per action and per update of ``STEP_CONFIGS`` with the model's kernels and with PyTorch's, two rounds."""
    kernels = {"ours": (mish, simnorm), "pytorch": (F.mish, contiguous_simnorm)}
    rows = []
    for round_ in (1, 2):
        for name, (mish_fn, simnorm_fn) in kernels.items():
            mbdpo.model.layers.mish, mbdpo.model.layers.simnorm = mish_fn, simnorm_fn
            for config in STEP_CONFIGS:
                row = {"kernels": name, "round": round_, **measure(config, CONFIGS[config], 1, repeats)}
                rows.append(row)
                print(f"{name:8s} {config:40s} {row['ms_per_action']:7.1f} ms/action "
                      f"{row['ms_per_update']:7.1f} ms/update", flush=True)
    mbdpo.model.layers.mish, mbdpo.model.layers.simnorm = mish, simnorm
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--steps", action="store_true", help="also time whole actions and updates, both kernels")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    for shape_name, shape in SHAPES.items():
        x = torch.randn(*shape) * 3
        for kernel, fn in KERNELS.items():
            if kernel.startswith("simnorm") and "hidden" in shape_name:
                continue  # SimNorm acts on latents only
            row = {"kernel": kernel, "shape": shape_name, "size": "x".join(map(str, shape)),
                   "forward_us": round(microseconds(fn, x, False, args.repeats)),
                   "forward_backward_us": round(microseconds(fn, x, True, args.repeats))}
            rows.append(row)
            print(f"{kernel:30s} {shape_name:18s} {row['forward_us']:8d} us forward "
                  f"{row['forward_backward_us']:8d} us forward+backward", flush=True)
    if args.out:
        write_csv(args.out, rows)
    if args.steps:
        steps = step_rows(repeats=10)
        if args.out:
            write_csv(args.out.with_name("kernels_steps.csv"), steps)


if __name__ == "__main__":
    main()
