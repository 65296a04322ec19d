"""Distances between the SR-loss gradients of a synthetic and a real batch.

Every function takes two lists of per-parameter gradients whose leading dimension is
the class (K), so that many classes are compared in one call, and returns a (K,) tensor
of distances (0 = identical direction / value). They are pure tensor functions: the
batched and the per-class matching paths share them unchanged.

- ``cos``: 1 - cosine similarity over all weights flattened into one vector. This is the
  variant used by the published SR distillation study.
- ``layerwise``: Dataset Condensation's ``distance_wb``: for every weight tensor, one
  1 - cosine per output channel (conv kernels flattened per output channel), summed over
  channels and layers. Tensors with a single dimension per class (biases, norm scales) are
  ignored, as in DC.
- ``mse``: sum of squared differences over all weights (DC's ``mse`` option).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

# DC adds this to the norm product; keeps the distance finite for an all-zero gradient.
EPS = 1e-6

Grads = Sequence[Tensor]


def _check(g_syn: Grads, g_real: Grads) -> int:
    if len(g_syn) != len(g_real) or not g_syn:
        raise ValueError(f"gradient lists must be non-empty and of equal length, got {len(g_syn)} and {len(g_real)}")
    k = g_syn[0].shape[0]
    for a, b in zip(g_syn, g_real):
        if a.shape != b.shape or a.shape[0] != k:
            raise ValueError(f"gradient shapes differ or lack the class dimension: {tuple(a.shape)} vs {tuple(b.shape)}")
    return k


def _flat(grads: Grads) -> Tensor:
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads], dim=1)


def cos_distance(g_syn: Grads, g_real: Grads) -> Tensor:
    """1 - cosine over all weights of the model, one value per class."""
    _check(g_syn, g_real)
    a, b = _flat(g_syn), _flat(g_real)
    return 1 - (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1) + EPS)


def layerwise_distance(g_syn: Grads, g_real: Grads) -> Tensor:
    """DC's per-output-channel cosine distance summed over weight tensors; biases ignored."""
    k = _check(g_syn, g_real)
    total = g_syn[0].new_zeros(k)
    for a, b in zip(g_syn, g_real):
        if a.dim() <= 2:  # (K, C): a bias or a norm scale
            continue
        a = a.reshape(k, a.shape[1], -1)
        b = b.reshape(k, b.shape[1], -1)
        cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1) + EPS)
        total = total + (1 - cos).sum(-1)
    return total


def mse_distance(g_syn: Grads, g_real: Grads) -> Tensor:
    """Sum of squared gradient differences over all parameters, one value per class."""
    _check(g_syn, g_real)
    return ((_flat(g_syn) - _flat(g_real)) ** 2).sum(1)


DISTANCES: dict[str, Callable[[Grads, Grads], Tensor]] = {
    "cos": cos_distance,
    "layerwise": layerwise_distance,
    "mse": mse_distance,
}


def get_distance(name: str) -> Callable[[Grads, Grads], Tensor]:
    try:
        return DISTANCES[name]
    except KeyError:
        raise ValueError(f"unknown gradient distance {name!r}; choose one of {', '.join(DISTANCES)}") from None
