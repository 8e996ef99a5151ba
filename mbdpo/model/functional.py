"""Small pure functions of the world model (ALGORITHM.md sections 1 and 3)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class _Mish(torch.autograd.Function):
    """Mish with a closed form, faster than ``F.mish`` on CPU (``benchmarks/kernels.py``).

    With n = e^x and d = (1 + n)^2 + 1: tanh(softplus(x)) = 1 - 2/d, so
    mish(x) = x (1 - 2/d), and its derivative is
    1 - 2/d + 4 x n (1 + n) / d^2 = 1 + (2/d) (2 x n (1 + n) / d - 1).
    The forward pass computes the derivative too and keeps only it.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        n, inverse_d = _exp_and_inverse_d(x)
        derivative = (n + 1).mul_(n).mul_(x).mul_(inverse_d).mul_(2).sub_(1).mul_(inverse_d).mul_(2).add_(1)
        ctx.save_for_backward(derivative)
        return inverse_d.mul_(-2).add_(1).mul_(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (derivative,) = ctx.saved_tensors
        return grad * derivative


def _exp_and_inverse_d(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """n = e^x (x clamped at 20, where mish(x) = x in float32) and 1/d = 1 / ((1 + n)^2 + 1), new tensors."""
    n = x.clamp(max=20.0).exp_()
    return n, (n + 2).mul_(n).add_(2).reciprocal_()


def mish(x: torch.Tensor) -> torch.Tensor:
    """x * tanh(softplus(x)); equal to ``F.mish`` up to float rounding."""
    if torch.is_grad_enabled() and x.requires_grad:
        return _Mish.apply(x)
    _, inverse_d = _exp_and_inverse_d(x)
    return inverse_d.mul_(-2).add_(1).mul_(x)


def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x) * log(1 + |x|)."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`symlog`."""
    return torch.sign(x) * torch.expm1(x.abs())


def simnorm(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """Split the last dimension into groups of ``group_size`` and softmax each group.

    The softmax runs over a transposed view, the group's elements strided:
    PyTorch's CPU softmax over a contiguous last dimension of 8 is 5-8x
    slower (``benchmarks/kernels.py``).
    """
    groups = x.unflatten(-1, (-1, group_size)).transpose(-1, -2)  # [..., group_size, groups]
    return F.softmax(groups, dim=-2).transpose(-1, -2).flatten(-2)


def bin_centres(num_bins: int, vmin: float, vmax: float, device=None) -> torch.Tensor:
    """Centres of the two-hot bins, uniform in symlog space."""
    return torch.linspace(vmin, vmax, num_bins, device=device)


def two_hot(x: torch.Tensor, num_bins: int, vmin: float, vmax: float) -> torch.Tensor:
    """Encode scalars ``x[..., 1]`` as two-hot vectors over symlog bins.

    The mass is split between the two bins around symlog(x) so that the
    expectation of the bin centres equals symlog(x) (clipped to the range).
    """
    x = symlog(x.squeeze(-1)).clamp(vmin, vmax)
    bin_size = (vmax - vmin) / (num_bins - 1)
    position = (x - vmin) / bin_size
    lower = position.floor().long().clamp(0, num_bins - 1)
    upper = (lower + 1).clamp(max=num_bins - 1)
    upper_weight = position - lower
    encoded = torch.zeros(*x.shape, num_bins, device=x.device, dtype=x.dtype)
    encoded.scatter_(-1, lower.unsqueeze(-1), (1 - upper_weight).unsqueeze(-1))
    encoded.scatter_add_(-1, upper.unsqueeze(-1), upper_weight.unsqueeze(-1))
    return encoded


def two_hot_decode(logits: torch.Tensor, vmin: float, vmax: float) -> torch.Tensor:
    """Decode logits ``[..., num_bins]`` to scalars ``[..., 1]``: symexp(E[bin centre])."""
    centres = bin_centres(logits.shape[-1], vmin, vmax, logits.device)
    expected = (F.softmax(logits, dim=-1) * centres).sum(-1, keepdim=True)
    return symexp(expected)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, vmin: float, vmax: float) -> torch.Tensor:
    """Cross-entropy between ``logits`` and the two-hot encoding of ``target [..., 1]``.

    Returns ``[..., 1]``.
    """
    target_probs = two_hot(target, logits.shape[-1], vmin, vmax)
    return -(target_probs * F.log_softmax(logits, dim=-1)).sum(-1, keepdim=True)


def squashed_gaussian_sample(
    mean: torch.Tensor, log_std: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample tanh(mean + std * eps) and its log-density ``[..., 1]``.

    ``mask`` (1 for the action dimensions a task uses) zeroes the unused
    dimensions and leaves them out of the log-density.
    """
    eps = torch.randn_like(mean)
    pre_tanh = mean + eps * log_std.exp()
    action = torch.tanh(pre_tanh)
    log_prob = -0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)
    log_prob = log_prob - torch.log(F.relu(1 - action.pow(2)) + 1e-6)
    if mask is not None:
        action, log_prob = action * mask, log_prob * mask
    return action, log_prob.sum(-1, keepdim=True)


def squash_log_std(raw: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Map an unbounded network output into [low, high] with a tanh."""
    return low + 0.5 * (high - low) * (torch.tanh(raw) + 1)


def random_shift(images: torch.Tensor, pad: int = 3, shifts: torch.Tensor | None = None) -> torch.Tensor:
    """Shift each image by up to ``pad`` pixels, filling the border by replication (ALGORITHM.md section 1).

    ``images`` ``[..., C, H, W]``; each image gets its own shift, drawn
    uniformly from ``{0, ..., 2 pad}`` per axis unless ``shifts``
    ``[N, 2]`` (rows, columns; N = number of images) is given. A shift of
    ``(pad, pad)`` leaves an image unchanged.
    """
    flat = images.reshape(-1, *images.shape[-3:])
    count, channels, height, width = flat.shape
    if shifts is None:
        shifts = torch.randint(0, 2 * pad + 1, (count, 2), device=images.device)
    padded = F.pad(flat.float(), (pad, pad, pad, pad), mode="replicate").to(flat.dtype)
    crops = [image[:, row : row + height, col : col + width] for image, (row, col) in zip(padded, shifts.tolist())]
    return torch.stack(crops).reshape(images.shape)
