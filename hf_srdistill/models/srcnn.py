"""SRCNN: Dong, Loy, He, Tang, "Image Super-Resolution Using Deep Convolutional Networks",
TPAMI 2016 (arXiv:1501.00092; first version ECCV 2014).

Three convolutions on the bicubic-upsampled image: patch extraction (9x9, n1 = 64), non-linear
mapping (5x5, n2 = 32) and reconstruction (5x5), ReLU after the first two. This is the
paper's better 9-5-5 setting; the base 9-1-5 setting only differs in the middle kernel.

Choices that differ from the paper:
- "same" zero padding, so the output has the size of the upsampled input; the paper uses
  valid convolutions (the output loses 8 px per side) and crops the target instead.
- RGB in and out (the paper's main models work on the Y channel; its RGB variant exists).
- The MATLAB-bicubic pre-upsampling happens inside ``forward``, so the model maps LR to SR
  like EDSR does and can be trained/evaluated by the same code.
- ``num_features`` sets n1; n2 stays n1 / 2 as in the paper (64/32).
"""

from __future__ import annotations

import torch
from torch import nn

from hf_srdistill.data.imresize import imresize
from hf_srdistill.models.base import SRModel


class SRCNN(SRModel, paper_url="https://arxiv.org/abs/1501.00092", tags=["srcnn"]):
    arch = "srcnn"

    def __init__(self, scale: int = 2, num_features: int = 64) -> None:
        super().__init__()
        self.scale = self.check_scale("SRCNN", scale)
        if num_features < 2:
            raise ValueError(f"SRCNN: num_features must be >= 2 (n2 = n1 // 2), got {num_features}")
        self.num_features = num_features
        n1, n2 = num_features, num_features // 2
        self.extract = nn.Conv2d(3, n1, 9, padding=4)
        self.map = nn.Conv2d(n1, n2, 5, padding=2)
        self.reconstruct = nn.Conv2d(n2, 3, 5, padding=2)
        self.relu = nn.ReLU(inplace=True)
        # The paper initialises with N(0, 0.001); with Adam and the ~1e-3 learning rates used
        # here that start is very slow, so the weights keep PyTorch's default (Kaiming-uniform).

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        up = imresize(x, self.scale)
        h = self.relu(self.extract(up))
        h = self.relu(self.map(h))
        return self.reconstruct(h)
