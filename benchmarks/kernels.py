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
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from mbdpo.analysis.runs import write_csv
from mbdpo.model.functional import mish, simnorm

SHAPES = {"planning, latents": (512, 128), "planning, hidden": (512, 512), "update, latents": (4, 256, 128),
          "update, hidden": (4, 256, 512)}


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
    """Mean time of ``fn(x)`` (and its backward pass) over ``repeats`` calls, after 10 warm-up calls."""
    x = x.clone().requires_grad_(backward)

    def call() -> None:
        if backward:
            fn(x).sum().backward()
        else:
            with torch.no_grad():
                fn(x)

    for _ in range(10):
        call()
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", type=Path)
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


if __name__ == "__main__":
    main()
