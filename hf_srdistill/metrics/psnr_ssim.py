"""PSNR and SSIM with the conventions SR papers report (BasicSR / the MATLAB scripts).

Inputs are HWC uint8 RGB arrays (what an SR output looks like once saved as PNG).
- Everything is computed in float64.
- ``crop_border`` pixels are removed from every side first (SR papers use crop = scale).
- ``test_y_channel=True`` compares the luma of BT.601 YCbCr in studio range [16, 235]:
  ``Y = 16 + (65.481 R + 128.553 G + 24.966 B)`` with R, G, B in [0, 1] -- the MATLAB
  ``rgb2ycbcr`` that BasicSR's ``rgb2ycbcr(y_only=True)`` reproduces -- kept as a float on
  the [0, 255] scale, not rounded. (BasicSR casts to float32 inside ``to_y_channel``; here it
  stays float64, which moves PSNR by well under 1e-6 dB on real photos.)
- PSNR = 10 log10(255^2 / MSE); identical images give ``inf``.
- SSIM (Wang et al. 2004) with an 11x11 Gaussian window (sigma 1.5), C1 = (0.01 * 255)^2,
  C2 = (0.03 * 255)^2, evaluated only where the window fits inside the image (no padding),
  averaged over the map; for RGB (``test_y_channel=False``) averaged over the channels.
"""

from __future__ import annotations

import numpy as np

__all__ = ["psnr", "ssim", "rgb2y"]

# BT.601 studio-range luma coefficients for R, G, B in [0, 1] (MATLAB rgb2ycbcr).
Y_WEIGHTS = np.array([65.481, 128.553, 24.966])
Y_OFFSET = 16.0
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5
C1, C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2


def _check_rgb_uint8(img: np.ndarray, what: str) -> None:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        kind = img.dtype if isinstance(img, np.ndarray) else type(img).__name__
        raise TypeError(f"{what} must be an HWC uint8 numpy array, got {kind} "
                        "(convert tensors with hf_srdistill.data.images.to_uint8)")
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"{what} must be HWC with 3 (RGB) channels, got shape {img.shape}")


def rgb2y(img: np.ndarray) -> np.ndarray:
    """Y of BT.601 YCbCr (studio range, [16, 235]) as float64 (H, W), from HWC uint8 RGB."""
    _check_rgb_uint8(img, "img")
    return (img.astype(np.float64) / 255.0) @ Y_WEIGHTS + Y_OFFSET


def _prepare(img: np.ndarray, img2: np.ndarray, crop_border: int, test_y_channel: bool) -> tuple:
    """Validate, crop and convert both images to float64 (H, W, C) with C = 1 (Y) or 3 (RGB)."""
    _check_rgb_uint8(img, "img")
    _check_rgb_uint8(img2, "img2")
    if img.shape != img2.shape:
        raise ValueError(f"image shapes differ: {img.shape} vs {img2.shape}")
    if isinstance(crop_border, bool) or not isinstance(crop_border, (int, np.integer)) or crop_border < 0:
        raise ValueError(f"crop_border must be an int >= 0, got {crop_border!r}")
    h, w = img.shape[:2]
    if 2 * crop_border >= min(h, w):
        raise ValueError(f"crop_border={crop_border} leaves nothing of a {h}x{w} image")
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border]
        img2 = img2[crop_border:-crop_border, crop_border:-crop_border]
    if test_y_channel:
        return rgb2y(img)[..., None], rgb2y(img2)[..., None]
    return img.astype(np.float64), img2.astype(np.float64)


def psnr(img: np.ndarray, img2: np.ndarray, crop_border: int, test_y_channel: bool = True) -> float:
    """Peak signal-to-noise ratio in dB (peak 255); ``inf`` for identical images."""
    a, b = _prepare(img, img2, crop_border, test_y_channel)
    mse = np.mean((a - b) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(255.0 ** 2 / mse))


def gaussian_window_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian; the 2-D SSIM window is its outer product."""
    k = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(k ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of a 2-D array with g x g (tap loop: no big temporaries)."""
    n = len(g)
    rows = sum(g[i] * x[i:x.shape[0] - n + 1 + i] for i in range(n))
    return sum(g[j] * rows[:, j:x.shape[1] - n + 1 + j] for j in range(n))


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM map of two float64 (H, W) images on the [0, 255] scale, valid region only."""
    g = gaussian_window_1d()
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    var_a = _filter_valid(a * a, g) - mu_a ** 2
    var_b = _filter_valid(b * b, g) - mu_b ** 2
    cov = _filter_valid(a * b, g) - mu_a * mu_b
    return ((2 * mu_a * mu_b + C1) * (2 * cov + C2)) / ((mu_a ** 2 + mu_b ** 2 + C1) * (var_a + var_b + C2))


def ssim(img: np.ndarray, img2: np.ndarray, crop_border: int, test_y_channel: bool = True) -> float:
    """Mean structural similarity (Gaussian window, valid region; mean over RGB channels)."""
    a, b = _prepare(img, img2, crop_border, test_y_channel)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels after cropping, "
                         f"got {a.shape[0]}x{a.shape[1]}")
    return float(np.mean([ssim_map(a[..., c], b[..., c]).mean() for c in range(a.shape[2])]))
