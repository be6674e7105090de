"""Task heads: shared features [B, F] -> logits [B, K]."""

from __future__ import annotations

from torch import nn


def build_head(in_features: int, out_features: int, *, hidden: list[int] | tuple[int, ...] = (),
               dropout: float = 0.0) -> nn.Sequential:
    """A linear head, or an MLP with ReLU hidden layers when `hidden` is non-empty."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Dropout(dropout)] if dropout > 0 else []
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        width = h
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)
