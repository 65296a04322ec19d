"""Convolution FLOPs of one forward pass, for achieved-GFLOP/s figures in benchmarks.

Counted from the shapes each ``nn.Conv2d`` actually sees (forward hooks), so the count
follows the real input size, upsampling stages and depth without per-architecture formulas.
One multiply-add = 2 FLOPs; biases, activations, pixel shuffle and the bicubic
pre-upsampling of SRCNN/VDSR are not counted (they are a small fraction of the convs).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def conv_flops(conv: nn.Conv2d, out: torch.Tensor) -> int:
    """2 x multiply-adds of one conv call: every output element sums Cin/groups x kh x kw products."""
    kh, kw = conv.kernel_size
    return 2 * out.numel() * (conv.in_channels // conv.groups) * kh * kw


def count_conv_flops(model: nn.Module, lr_shape: Sequence[int]) -> int:
    """FLOPs of the conv layers for one forward on a zero input of ``lr_shape`` ((N,C,h,w) or (C,h,w))."""
    shape = tuple(int(s) for s in lr_shape)
    if len(shape) == 3:
        shape = (1, *shape)
    if len(shape) != 4:
        raise ValueError(f"lr_shape must be (N, C, h, w) or (C, h, w), got {tuple(lr_shape)}")
    total = 0

    def hook(module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        total += conv_flops(module, output)  # type: ignore[arg-type]

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not handles:
        raise ValueError(f"{type(model).__name__} has no nn.Conv2d layers to count")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    try:
        with torch.no_grad():
            model(torch.zeros(shape, device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
    return total
