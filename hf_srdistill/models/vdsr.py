"""VDSR: Kim, Lee, Lee, "Accurate Image Super-Resolution Using Very Deep Convolutional
Networks", CVPR 2016 (arXiv:1511.04587).

``depth`` 3x3 convolutions (20 in the paper) with 64 features and ReLU between them; the
network predicts the residual that is added to the bicubic-upsampled input (global residual
learning), with zero padding so every layer keeps the image size, as in the paper.

Choices that differ from the paper:
- RGB in and out (the paper works on the Y channel of YCbCr).
- The MATLAB-bicubic upsampling happens inside ``forward``, so the model maps LR to SR.
- Training details of the paper (very high learning rate with adjustable gradient clipping,
  one model for several scales) belong to the training code, not to the model; here one
  model serves one ``scale``.
"""

from __future__ import annotations

import torch
from torch import nn

from hf_srdistill.data.imresize import imresize
from hf_srdistill.models.base import SRModel


class VDSR(SRModel, paper_url="https://arxiv.org/abs/1511.04587", tags=["vdsr"]):
    arch = "vdsr"

    def __init__(self, scale: int = 2, num_features: int = 64, depth: int = 20) -> None:
        super().__init__()
        self.scale = self.check_scale("VDSR", scale)
        if depth < 2:
            raise ValueError(f"VDSR: depth counts all conv layers (first and last included), "
                             f"so it must be >= 2, got {depth}")
        self.num_features, self.depth = num_features, depth
        layers: list[nn.Module] = [nn.Conv2d(3, num_features, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(num_features, num_features, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(num_features, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)
        # He initialisation, as the paper uses (it follows He et al. 2015 for its ReLU net).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        up = imresize(x, self.scale)
        return up + self.body(up)
