"""Image-quality metrics with SR-paper conventions: PSNR/SSIM (BasicSR/MATLAB), LPIPS.

``SR_METRICS_PATH`` is the folder of the same metrics as an ``evaluate`` module:
``evaluate.load(SR_METRICS_PATH)``.
"""

from pathlib import Path

from hf_srdistill.metrics.batch import psnr_batch
from hf_srdistill.metrics.lpips import LPIPSMetric
from hf_srdistill.metrics.psnr_ssim import psnr, rgb2y, ssim

SR_METRICS_PATH = str(Path(__file__).resolve().parent / "sr_metrics")

__all__ = ["psnr", "ssim", "rgb2y", "psnr_batch", "LPIPSMetric", "SR_METRICS_PATH"]
