"""Reconstruction loss for GAN inversion and pivotal tuning: MSE + LPIPS.

PTI fits the pivot and the tuned generator with LPIPS (VGG) plus L2. LPIPS' linear heads
ship inside the ``lpips`` package, but its VGG/AlexNet backbone comes from torchvision's
download cache; offline, with the backbone absent, the loss falls back to MSE alone and
says so once in the log rather than failing a long run.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

log = logging.getLogger(__name__)

_BACKBONE_WEIGHTS = {"vgg": "VGG16_Weights", "alex": "AlexNet_Weights"}


def backbone_cached(net: str) -> bool:
    """Whether torchvision's ImageNet weights for ``net`` are already in the torch hub cache."""
    import torchvision.models as tvm

    url = getattr(tvm, _BACKBONE_WEIGHTS[net]).IMAGENET1K_V1.url
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name).is_file()


@lru_cache(maxsize=None)
def _lpips_model(net: str) -> nn.Module | None:
    if not backbone_cached(net):
        log.warning("LPIPS(%s) unavailable: torchvision's %s weights are not in %s/checkpoints; "
                    "inversion and tuning use MSE only", net, net, torch.hub.get_dir())
        return None
    import lpips

    model = lpips.LPIPS(net=net, verbose=False).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class ReconstructionLoss(nn.Module):
    """``mse_weight * MSE + lpips_weight * LPIPS`` on images in [0, 1], averaged over the batch."""

    def __init__(self, mse_weight: float = 1.0, lpips_weight: float = 1.0, net: str = "vgg") -> None:
        super().__init__()
        self.mse_weight = mse_weight
        self.lpips = _lpips_model(net) if lpips_weight > 0 else None
        self.lpips_weight = lpips_weight if self.lpips is not None else 0.0
        if self.mse_weight == 0 and self.lpips_weight == 0:  # LPIPS was the whole loss: keep a signal
            log.warning("reconstruction loss had only LPIPS, which is unavailable; using MSE")
            self.mse_weight = 1.0

    @property
    def uses_lpips(self) -> bool:
        return self.lpips_weight > 0

    def forward(self, x: Tensor, target: Tensor) -> Tensor:
        loss = self.mse_weight * F.mse_loss(x, target)
        if self.lpips_weight > 0:
            self.lpips.to(x.device)
            loss = loss + self.lpips_weight * self.lpips(x * 2 - 1, target * 2 - 1).mean()
        return loss
