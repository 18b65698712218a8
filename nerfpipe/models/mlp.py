"""The multilayer perceptron shared by every field."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """ReLU MLP of `depth` layers of `width` units, with the input concatenated again after
    layer `skip` (NeRF's skip connection, Mildenhall et al. 2020, fig. 7).

    x: [..., in_dim] -> [..., width] (the last hidden layer; heads are added by the caller).
    """

    def __init__(self, in_dim: int, width: int, depth: int, skip: int | None = None) -> None:
        super().__init__()
        if depth < 1 or width < 1:
            raise ValueError(f"MLP needs depth >= 1 and width >= 1, got depth={depth}, width={width}")
        self.skip = skip if skip is not None and 0 < skip < depth else None
        layers = []
        for i in range(depth):
            fan_in = in_dim if i == 0 else width
            if self.skip is not None and i == self.skip:
                fan_in += in_dim
            layers.append(nn.Linear(fan_in, width))
        self.layers = nn.ModuleList(layers)
        self.out_dim = width
        for layer in self.layers:
            nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for i, layer in enumerate(self.layers):
            if i == self.skip:
                h = torch.cat([h, x], dim=-1)
            h = torch.relu(layer(h))
        return h


def default_skip(depth: int) -> int | None:
    """NeRF's 8-layer MLP re-injects its input after layer 4; shallow MLPs need no skip."""
    return depth // 2 + (depth % 2) if depth > 4 else None
