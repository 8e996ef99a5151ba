"""Network building blocks: NormedLinear MLPs, SimNorm, ensembles (ALGORITHM.md section 1)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mbdpo.model.functional import mish, simnorm


class SimNorm(nn.Module):
    """Simplicial normalisation: softmax over groups of ``group_size``."""

    def __init__(self, group_size: int):
        super().__init__()
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return simnorm(x, self.group_size)


class Mish(nn.Module):
    """The Mish activation, computed with :func:`mbdpo.model.functional.mish`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mish(x)


class SparseDropout(nn.Module):
    """Dropout for small rates that draws only the dropped positions.

    ``nn.Dropout`` draws one random number per element, which dominates a
    CPU update at the Q heads' rate of 0.01. Here the number of dropped
    elements is Poisson(n p) and their positions uniform, so each element is
    dropped with probability ~p (exactly 1 - exp(-p) for large n), and kept
    values are scaled by 1 / (1 - p) as usual.
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        n = x.numel()
        count = int(torch.poisson(torch.tensor(float(n * self.p))).item())
        mask = torch.ones(n, device=x.device, dtype=x.dtype)
        mask[torch.randint(n, (count,), device=x.device)] = 0
        return x * mask.view_as(x) / (1 - self.p)


class NormedLinear(nn.Sequential):
    """Linear -> (Dropout) -> LayerNorm -> activation (Mish unless given)."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0, activation: nn.Module | None = None):
        layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
        if dropout:
            layers.append(SparseDropout(dropout))
        layers += [nn.LayerNorm(out_dim), activation or Mish()]
        super().__init__(*layers)


def mlp(
    in_dim: int,
    hidden: list[int],
    out_dim: int,
    output_activation: nn.Module | None = None,
    dropout: float = 0.0,
) -> nn.Sequential:
    """NormedLinear hidden layers, then a plain Linear output layer.

    With ``output_activation`` the output layer is a NormedLinear ending in
    that activation instead (e.g. SimNorm for latent states). ``dropout``
    applies to the first hidden layer only.
    """
    dims = [in_dim, *hidden]
    layers: list[nn.Module] = [
        NormedLinear(dims[i], dims[i + 1], dropout=dropout if i == 0 else 0.0) for i in range(len(hidden))
    ]
    if output_activation is None:
        layers.append(nn.Linear(dims[-1], out_dim))
    else:
        layers.append(NormedLinear(dims[-1], out_dim, activation=output_activation))
    return nn.Sequential(*layers)


def conv_encoder(channels: int, latent_dim: int, output_activation: nn.Module, width: int = 32) -> nn.Sequential:
    """The pixel encoder of ALGORITHM.md section 1, for 64x64 images with ``channels`` stacked colour channels.

    Four convolutions (``width`` channels, kernels 7, 5, 3, 3, strides 2, 2,
    2, 1, ReLU) take a 64x64 image to 4x4, flattened to ``16 * width`` = 512
    features. When ``latent_dim`` differs (smaller model presets), a
    NormedLinear layer maps them to it, ending in ``output_activation``
    (SimNorm) as the state encoder does: its LayerNorm gives SimNorm inputs of
    unit scale. (A plain linear layer, initialised small like every linear
    layer here, gave SimNorm inputs ~1e-3 apart: every image mapped to nearly
    the uniform latent, and a pixel run collapsed.) Otherwise SimNorm ends the
    encoder directly. Inputs are ``uint8`` pixels (or floats in [0, 255]),
    scaled to [-0.5, 0.5].
    """
    layers: list[nn.Module] = [PixelScale()]
    for in_channels, kernel, stride in ((channels, 7, 2), (width, 5, 2), (width, 3, 2), (width, 3, 1)):
        layers += [nn.Conv2d(in_channels, width, kernel, stride), nn.ReLU()]
    layers.append(nn.Flatten())
    if 16 * width != latent_dim:
        layers.append(NormedLinear(16 * width, latent_dim, activation=output_activation))
    else:
        layers.append(output_activation)
    return nn.Sequential(*layers)


class PixelScale(nn.Module):
    """``uint8`` pixels in [0, 255] -> floats in [-0.5, 0.5]."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.float() / 255.0 - 0.5


class EnsembleLinear(nn.Module):
    """``num`` independent linear layers applied in one batched matmul.

    Input ``[num, N, in]`` (or ``[N, in]``, shared by all members), output
    ``[num, N, out]``.
    """

    def __init__(self, num: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(num, 1, out_dim))

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """Apply every member, or only ``members`` (indices) when given."""
        weight, bias = (self.weight, self.bias) if members is None else (self.weight[members], self.bias[members])
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(weight.shape[0], -1, -1)
        return torch.baddbmm(bias, x, weight)


class EnsembleMLP(nn.Module):
    """An ensemble of identically shaped MLPs (the Q heads), evaluated together.

    Each member is NormedLinear hidden layers (dropout in the first) and a
    Linear output, like :func:`mlp`.
    """

    def __init__(self, num: int, in_dim: int, hidden: list[int], out_dim: int, dropout: float = 0.0):
        super().__init__()
        dims = [in_dim, *hidden]
        self.hidden = nn.ModuleList(EnsembleLinear(num, dims[i], dims[i + 1]) for i in range(len(hidden)))
        self.norm_weight = nn.ParameterList(nn.Parameter(torch.ones(num, 1, d)) for d in hidden)
        self.norm_bias = nn.ParameterList(nn.Parameter(torch.zeros(num, 1, d)) for d in hidden)
        self.dropout = SparseDropout(dropout)
        self.output = EnsembleLinear(num, dims[-1], out_dim)

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """``x [..., in]`` -> ``[num, ..., out]``, or ``[len(members), ..., out]`` for a subset."""
        leading = x.shape[:-1]
        h = x.reshape(-1, x.shape[-1])
        for i, linear in enumerate(self.hidden):
            h = linear(h, members)
            if i == 0:
                h = self.dropout(h)
            norm_weight, norm_bias = self.norm_weight[i], self.norm_bias[i]
            if members is not None:
                norm_weight, norm_bias = norm_weight[members], norm_bias[members]
            h = mish(F.layer_norm(h, h.shape[-1:]) * norm_weight + norm_bias)
        out = self.output(h, members)
        return out.reshape(out.shape[0], *leading, out.shape[-1])


def init_weights(module: nn.Module) -> None:
    """Truncated-normal(0.02) weights and zero biases for every linear layer; He-normal weights (for the
    ReLU that follows each) and zero biases for every convolution.

    The convolutions keep the spread of their inputs this way; PyTorch's
    default initialisation shrinks it ~5x over the pixel encoder's four layers.
    """
    for m in module.modules():
        if isinstance(m, (nn.Linear, EnsembleLinear)):
            nn.init.trunc_normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)


def zero_output_layer(module: nn.Module) -> None:
    """Zero the last linear layer so that the head starts by predicting 0."""
    last = [m for m in module.modules() if isinstance(m, (nn.Linear, EnsembleLinear))][-1]
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@torch.no_grad()
def move_parameters_towards(target: nn.Module, source: nn.Module, rate: float) -> None:
    """Polyak step: each parameter of ``target`` moves the fraction ``rate`` of the way to ``source``'s."""
    for moved, towards in zip(target.parameters(), source.parameters(), strict=True):
        moved.lerp_(towards, rate)
