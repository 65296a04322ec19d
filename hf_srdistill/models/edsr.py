"""EDSR: Lim, Son, Kim, Nah, Lee, "Enhanced Deep Residual Networks for Single Image
Super-Resolution", CVPRW 2017 (arXiv:1707.02921).

Head conv -> ``depth`` residual blocks (conv-ReLU-conv, no batch norm, output scaled by
``res_scale`` before the skip) -> conv, with a global skip from the head -> pixel-shuffle
upsampler (x2: one 2x stage, x3: one 3x stage, x4: two 2x stages) -> conv to RGB.
The DIV2K RGB mean is subtracted from the input and added back to the output, as in the
paper. Baseline: 16 blocks x 64 features, res_scale 1; the large model is 32 x 256 with
res_scale 0.1 (set ``depth``, ``num_features`` and ``res_scale`` in the config).

Choices that differ from the reference code: images are in [0, 1] rather than [0, 255], so
the mean shift uses the DIV2K mean in [0, 1] units (the network sees the same centred
input up to the overall 1/255 factor, which the first layer absorbs); the mean is a fixed
buffer, not a frozen 1x1 convolution; one model serves one ``scale`` (the paper's x3/x4
models start from the x2 weights, which is a training choice).
"""

from __future__ import annotations

import torch
from torch import nn

from hf_srdistill.models.base import SRModel

# DIV2K train-set RGB mean in [0, 1] (EDSR's rgb_mean, there in units of rgb_range).
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


class ResBlock(nn.Module):
    def __init__(self, num_features: int, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(num_features, num_features, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(num_features, num_features, 3, padding=1))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.res_scale * self.body(x)


def upsampler(scale: int, num_features: int) -> nn.Sequential:
    """Sub-pixel convolution stages: log2(scale) x2 stages for 2/4, one x3 stage for 3."""
    factors = [3] if scale == 3 else [2] * (scale.bit_length() - 1)
    layers: list[nn.Module] = []
    for f in factors:
        layers += [nn.Conv2d(num_features, num_features * f * f, 3, padding=1), nn.PixelShuffle(f)]
    return nn.Sequential(*layers)


class EDSR(SRModel, paper_url="https://arxiv.org/abs/1707.02921", tags=["edsr"]):
    arch = "edsr"

    def __init__(self, scale: int = 2, num_features: int = 64, depth: int = 16,
                 res_scale: float = 1.0) -> None:
        super().__init__()
        self.scale = self.check_scale("EDSR", scale)
        if depth < 1:
            raise ValueError(f"EDSR: depth (residual blocks) must be >= 1, got {depth}")
        if not res_scale > 0:
            raise ValueError(f"EDSR: res_scale must be > 0, got {res_scale}")
        self.num_features, self.depth, self.res_scale = num_features, depth, res_scale
        self.register_buffer("rgb_mean", torch.tensor(DIV2K_RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.head = nn.Conv2d(3, num_features, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(num_features, res_scale) for _ in range(depth)],
                                  nn.Conv2d(num_features, num_features, 3, padding=1))
        self.tail = nn.Sequential(upsampler(self.scale, num_features), nn.Conv2d(num_features, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        h = self.head(x - self.rgb_mean)
        h = h + self.body(h)
        return self.tail(h) + self.rgb_mean
