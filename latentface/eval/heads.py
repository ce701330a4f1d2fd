"""Linear heads whose initial weights come from an explicit generator, so probes never touch the global RNG."""

from __future__ import annotations

import math

import torch
from torch import nn


def seeded_linear(
    in_features: int, out_features: int, *, bias: bool, generator: torch.Generator, device: str | torch.device = "cpu"
) -> nn.Linear:
    """An ``nn.Linear`` with PyTorch's default initialisation drawn from `generator`.

    The weight is Kaiming-uniform with ``a = sqrt(5)`` and the bias uniform in ``+-1/sqrt(in_features)``, exactly
    the distribution ``nn.Linear`` uses, but drawn on the CPU from `generator` (then moved to `device`), so the
    same generator state gives the same head on every device.

    Args:
        in_features: input size.
        out_features: output size.
        bias: whether the layer has a bias.
        generator: a CPU generator; it is advanced.
        device: where the layer lives.

    Returns:
        The initialised layer on `device`.
    """
    layer = nn.Linear(in_features, out_features, bias=bias, device="meta").to_empty(device="cpu")  # no global draw
    with torch.no_grad():
        nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
        if layer.bias is not None:
            bound = 1.0 / math.sqrt(in_features)
            nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return layer.to(device)
