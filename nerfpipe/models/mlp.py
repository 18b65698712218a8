"""The multilayer perceptron shared by every field."""

from __future__ import annotations

import torch
from torch import nn


class MLP(nn.Module):
    """ReLU MLP of `depth` layers of `width` units; layer `skip` (0-based) takes the input concatenated
    to the previous layer's activation (NeRF's skip connection, Mildenhall et al. 2020, fig. 7).

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


# The input is concatenated to the fifth layer's activation (NeRF fig. 7; multinerf's skip_layer = 4,
# which concatenates after layer index 4), so it feeds the sixth layer.
SKIP_AFTER_LAYERS = 5


def default_skip(depth: int) -> int | None:
    """Index of the layer that receives the input again: NeRF's 8-layer MLP concatenates its input to
    the fifth layer's activation (Mildenhall et al. 2020, fig. 7), i.e. layer 5 (0-based) sees it. An
    MLP of at most 5 layers has no skip."""
    return SKIP_AFTER_LAYERS if depth > SKIP_AFTER_LAYERS else None
