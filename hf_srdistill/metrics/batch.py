"""PSNR of tensor batches, for monitoring during training without leaving the device.

Same conventions as :func:`hf_srdistill.metrics.psnr`. With ``quantize=True`` (default) the
images are first clamped and rounded to 8 bits, as they are when saved as PNG, so the value
equals ``psnr`` on the saved uint8 images; ``quantize=False`` measures the raw float output.
"""

from __future__ import annotations

import torch

from hf_srdistill.metrics.psnr_ssim import Y_OFFSET, Y_WEIGHTS

__all__ = ["psnr_batch"]


def psnr_batch(sr: torch.Tensor, hr: torch.Tensor, crop_border: int, test_y_channel: bool = True,
               quantize: bool = True) -> torch.Tensor:
    """Per-image PSNR (dB, float64, shape (N,)) of (N,3,H,W) batches in [0, 1]; inf where equal."""
    if sr.shape != hr.shape or sr.ndim != 4 or sr.shape[1] != 3:
        raise ValueError(f"expected two (N, 3, H, W) batches of equal shape, got {tuple(sr.shape)}, "
                         f"{tuple(hr.shape)}")
    a, b = sr.detach().to(torch.float64) * 255.0, hr.detach().to(torch.float64) * 255.0
    if quantize:
        a, b = a.clamp(0, 255).round(), b.clamp(0, 255).round()
    if crop_border:
        a = a[..., crop_border:-crop_border, crop_border:-crop_border]
        b = b[..., crop_border:-crop_border, crop_border:-crop_border]
    if test_y_channel:
        w = torch.tensor(Y_WEIGHTS, dtype=torch.float64, device=a.device).view(1, 3, 1, 1)
        a = (a / 255.0 * w).sum(1, keepdim=True) + Y_OFFSET
        b = (b / 255.0 * w).sum(1, keepdim=True) + Y_OFFSET
    mse = (a - b).square().mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(255.0 ** 2 / mse)  # mse == 0 -> inf, as psnr()
