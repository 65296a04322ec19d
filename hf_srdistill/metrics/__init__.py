"""Image-quality metrics with SR-paper conventions: PSNR/SSIM (BasicSR/MATLAB), LPIPS."""

from hf_srdistill.metrics.lpips import LPIPSMetric
from hf_srdistill.metrics.psnr_ssim import psnr, rgb2y, ssim

__all__ = ["psnr", "ssim", "rgb2y", "LPIPSMetric"]
