"""Tensor-batch PSNR equals the uint8 PSNR of the same images (quantised) on held-out photos."""

from __future__ import annotations

import math

import pytest
import torch

from hf_srdistill.metrics import psnr
from hf_srdistill.metrics.batch import psnr_batch


def to_t(x):
    return torch.from_numpy(x.copy()).permute(2, 0, 1).double() / 255.0


@pytest.mark.parametrize("y", [True, False])
def test_matches_uint8_psnr(photo_pairs, y: bool) -> None:
    sr = torch.stack([to_t(s) for _, s, _ in photo_pairs]).float()
    hr = torch.stack([to_t(h) for _, _, h in photo_pairs]).float()
    got = psnr_batch(sr, hr, crop_border=4, test_y_channel=y)
    expected = [psnr(s, h, 4, test_y_channel=y) for _, s, h in photo_pairs]
    assert got.tolist() == pytest.approx(expected, abs=1e-9)
    assert psnr_batch(hr, hr.clone(), 4).tolist() == [math.inf] * len(photo_pairs)
    # unquantised: an offset below half a grey level vanishes when rounded, not otherwise
    assert psnr_batch(hr + 0.4 / 255, hr, 4, quantize=True).isinf().all()
    assert psnr_batch(hr + 0.4 / 255, hr, 4, quantize=False).isfinite().all()


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        psnr_batch(torch.rand(3, 8, 8), torch.rand(3, 8, 8), 0)
