"""PSNR/SSIM/Y against hand-worked cases and scikit-image, on held-out real photos."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.color import rgb2ycbcr
from skimage.metrics import structural_similarity

from hf_srdistill.metrics import psnr, rgb2y, ssim
from hf_srdistill.metrics.psnr_ssim import gaussian_window_1d, ssim_map

LUMA_GAIN = (65.481 + 128.553 + 24.966) / 255  # dY per unit step added to R, G and B alike


def test_y_matches_skimage(photo_pairs) -> None:
    for _, sr, hr in photo_pairs:
        for img in (sr, hr):
            np.testing.assert_allclose(rgb2y(img), rgb2ycbcr(img)[..., 0], rtol=0, atol=1e-10)
    assert rgb2y(np.zeros((1, 1, 3), np.uint8))[0, 0] == pytest.approx(16.0, abs=1e-12)
    assert rgb2y(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235.0, abs=1e-12)


def test_identical_images(photo_pairs) -> None:
    for _, _, hr in photo_pairs:
        for y in (True, False):
            assert psnr(hr, hr.copy(), crop_border=4, test_y_channel=y) == math.inf
            assert ssim(hr, hr.copy(), crop_border=4, test_y_channel=y) == pytest.approx(1.0, abs=1e-12)


def _with_known_noise(hr: np.ndarray, border: int) -> tuple[np.ndarray, np.ndarray]:
    """A pattern of -2,-1,+1,+2 (equally often inside the crop; same on R, G, B) plus
    large errors in the border band that crop_border must remove."""
    ref = np.clip(hr, 10, 245).astype(np.uint8)  # headroom: the pattern never clips
    h, w = ref.shape[:2]
    i, j = np.mgrid[0:h, 0:w]
    steps = np.array([-2, -1, 1, 2])[(i + 2 * j) % 4]
    noisy = ref.astype(int) + steps[..., None]
    band = np.ones((h, w), bool)
    band[border:-border, border:-border] = False
    noisy[band] = 255 - ref[band]
    return noisy.astype(np.uint8), ref


def test_psnr_known_noise(photo_pairs) -> None:
    _, _, hr = photo_pairs[0]
    border = 4
    noisy, ref = _with_known_noise(hr, border)
    inner = (hr.shape[0] - 2 * border, hr.shape[1] - 2 * border)
    assert inner[0] % 4 == 0 and inner[1] % 4 == 0  # each step value covers a quarter exactly
    mse_rgb = (4 + 1 + 1 + 4) / 4
    assert psnr(noisy, ref, border, test_y_channel=False) == pytest.approx(
        10 * math.log10(255 ** 2 / mse_rgb), abs=1e-9)
    assert psnr(noisy, ref, border, test_y_channel=True) == pytest.approx(
        10 * math.log10(255 ** 2 / (mse_rgb * LUMA_GAIN ** 2)), abs=1e-9)
    assert psnr(noisy, ref, 0, test_y_channel=False) < psnr(noisy, ref, border, test_y_channel=False) - 10


@pytest.mark.parametrize("crop", [0, 4])
def test_ssim_matches_skimage_on_y(photo_pairs, crop: int) -> None:
    """skimage filters the whole image (reflect padding) and averages its map over the
    interior, 5 px (the window radius) in from each side: exactly the pixels whose 11x11
    window lies inside the image, i.e. our valid-region map. So means agree, and maps agree
    after cropping skimage's full map by 5."""
    for _, sr, hr in photo_pairs:
        c = slice(crop, -crop or None)
        ya, yb = rgb2y(sr[c, c]), rgb2y(hr[c, c])
        mean, full = structural_similarity(ya, yb, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                           data_range=255, full=True)
        np.testing.assert_allclose(ssim_map(ya, yb), full[5:-5, 5:-5], rtol=0, atol=1e-10)
        assert ssim(sr, hr, crop_border=crop) == pytest.approx(mean, abs=1e-9)
        assert 0.3 < mean < 0.99  # a real, imperfect reconstruction


def test_ssim_rgb_is_channel_mean_like_skimage(photo_pairs) -> None:
    _, sr, hr = photo_pairs[0]
    ref = structural_similarity(sr[4:-4, 4:-4].astype(np.float64), hr[4:-4, 4:-4].astype(np.float64),
                                gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255,
                                channel_axis=2)
    assert ssim(sr, hr, crop_border=4, test_y_channel=False) == pytest.approx(ref, abs=1e-9)


def test_psnr_matches_formula_on_photos(photo_pairs) -> None:
    for _, sr, hr in photo_pairs:
        ya, yb = rgb2ycbcr(sr)[4:-4, 4:-4, 0], rgb2ycbcr(hr)[4:-4, 4:-4, 0]
        expected = 10 * math.log10(255 ** 2 / np.mean((ya - yb) ** 2))
        assert psnr(sr, hr, crop_border=4) == pytest.approx(expected, abs=1e-9)
        assert 18 < expected < 40


def test_float32_luma_gap_is_below_1e6_db(photo_pairs) -> None:
    """BasicSR rounds the luma to float32 inside to_y_channel; we stay in float64. Measured
    here against that path written from its definition: the gap stays well below 1e-6 dB."""
    w = np.array([65.481, 128.553, 24.966])

    def y_float32(img: np.ndarray) -> np.ndarray:
        x = img.astype(np.float32) / np.float32(255)
        y = ((x @ w + 16.0) / 255.0).astype(np.float32)
        return (y * np.float32(255)).astype(np.float64)

    for _, sr, hr in photo_pairs:
        a, b = y_float32(sr[4:-4, 4:-4]), y_float32(hr[4:-4, 4:-4])
        assert psnr(sr, hr, 4) == pytest.approx(10 * math.log10(255 ** 2 / np.mean((a - b) ** 2)), abs=1e-6)
        assert ssim(sr, hr, 4) == pytest.approx(ssim_map(a, b).mean(), abs=1e-6)


def test_window_is_opencv_gaussian() -> None:
    g = gaussian_window_1d()
    k = np.arange(11) - 5
    expected = np.exp(-k ** 2 / 4.5)
    np.testing.assert_allclose(g, expected / expected.sum(), rtol=1e-15)


def test_bad_inputs() -> None:
    img = np.zeros((20, 20, 3), np.uint8)
    with pytest.raises(TypeError, match="uint8"):
        psnr(img.astype(np.float32), img, 0)
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(img, img[:19], 0)
    with pytest.raises(ValueError, match="3 \\(RGB\\) channels"):
        ssim(img[..., 0], img[..., 0], 0)
    with pytest.raises(ValueError, match="crop_border"):
        psnr(img, img, -1)
    with pytest.raises(ValueError, match="leaves nothing"):
        psnr(img, img, 10)
    with pytest.raises(ValueError, match="11x11"):
        ssim(img, img, 5)
