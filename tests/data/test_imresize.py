"""imresize against a plain-loop transcription of MATLAB's imresize algorithm."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hf_srdistill.data.imresize import imresize, imresize_uint8


def _matlab_cubic(x: float) -> float:
    a = abs(x)
    if a <= 1:
        return 1.5 * a**3 - 2.5 * a**2 + 1
    if a <= 2:
        return -0.5 * a**3 + 2.5 * a**2 - 4 * a + 2
    return 0.0


def _resize_axis0(arr: np.ndarray, scale: float) -> np.ndarray:
    """Resize axis 0 one output pixel at a time, as MATLAB's contributions() describes."""
    n = arr.shape[0]
    m = math.ceil(n * scale)
    width = 4.0 / scale if scale < 1 else 4.0
    aux = list(range(1, n + 1)) + list(range(n, 0, -1))  # MATLAB's mirrored index table
    out = np.zeros((m,) + arr.shape[1:])
    for i in range(1, m + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = []
        for k in range(math.ceil(width) + 2):
            j = left + k
            d = u - j
            w = scale * _matlab_cubic(scale * d) if scale < 1 else _matlab_cubic(d)
            taps.append((j, w))
        total = sum(w for _, w in taps)
        for j, w in taps:
            src = aux[(j - 1) % len(aux)] - 1
            out[i - 1] += (w / total) * arr[src]
    return out


def reference_imresize(img_chw: np.ndarray, scale: float) -> np.ndarray:
    x = np.moveaxis(img_chw, -2, 0)           # H first
    x = np.moveaxis(_resize_axis0(x, scale), 0, -2)
    x = np.moveaxis(x, -1, 0)                 # then W
    return np.moveaxis(_resize_axis0(x, scale), 0, -1)


@pytest.mark.parametrize("scale", [1 / 2, 1 / 3, 1 / 4, 2.0])
@pytest.mark.parametrize("hw", [(13, 17), (24, 30), (9, 7)])
def test_matches_matlab_reference_random(scale, hw):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, *hw, generator=gen, dtype=torch.float32)
    ref = reference_imresize(x.double().numpy(), scale)
    out = imresize(x, scale)
    assert out.shape == (3, math.ceil(hw[0] * scale), math.ceil(hw[1] * scale))
    assert out.dtype == torch.float32
    assert np.abs(out.double().numpy() - ref).max() < 1e-5


def test_matches_reference_on_real_photo(astronaut):
    crop = torch.from_numpy(astronaut[100:151, 200:247].transpose(2, 0, 1).copy()).float() / 255
    for scale in (1 / 2, 1 / 3, 1 / 4, 2.0):
        ref = reference_imresize(crop.double().numpy(), scale)
        assert np.abs(imresize(crop, scale).double().numpy() - ref).max() < 1e-5


def test_batched_equals_per_image():
    x = torch.rand(4, 3, 11, 15, dtype=torch.float64)
    batched = imresize(x, 1 / 3)
    for i in range(4):
        torch.testing.assert_close(batched[i], imresize(x[i], 1 / 3), rtol=0, atol=1e-12)
        ref = reference_imresize(x[i].numpy(), 1 / 3)
        assert np.abs(batched[i].numpy() - ref).max() < 1e-12


def test_known_values_by_hand():
    # x2 upscale of the row [0, 1]. Output 1 sits at u = 0.75 (1-based input coords), taps
    # j = -2..3 at distances 2.75, 1.75, 0.75, -0.25, -1.25, -2.25; mirroring [1,2,2,1]
    # sends j = -2, -1, 2, 3 to pixel 2. Weights cubic(1.75) = -0.0234375 and
    # cubic(1.25) = -0.0703125 reach pixel 2 (taps at 2.25/2.75 weigh 0); they sum to 1.
    out = imresize(torch.tensor([[[0.0, 1.0]]], dtype=torch.float64), 2.0)
    assert out.shape == (1, 2, 4)
    row = out[0, 0]
    assert row[0].item() == pytest.approx(-0.09375, abs=1e-12)
    assert row[3].item() == pytest.approx(1.09375, abs=1e-12)
    torch.testing.assert_close(row + row.flip(0), torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(out[0, 0], out[0, 1])  # a single row only mirrors onto itself


def test_constant_stays_constant():
    x = torch.full((2, 3, 17, 10), 0.37, dtype=torch.float64)
    for scale in (1 / 2, 1 / 3, 1 / 4, 2.0, 3.0):
        assert torch.allclose(imresize(x, scale), torch.full_like(imresize(x, scale), 0.37), atol=1e-12)


def test_gradcheck():
    x = torch.rand(1, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: imresize(t, 1 / 2), (x,))
    assert torch.autograd.gradcheck(lambda t: imresize(t, 2.0), (x,))


def test_bad_input():
    with pytest.raises(TypeError, match="floating"):
        imresize(torch.zeros(3, 4, 4, dtype=torch.uint8), 0.5)
    with pytest.raises(ValueError, match="shape"):
        imresize(torch.zeros(4, 4), 0.5)
    with pytest.raises(ValueError, match="scale"):
        imresize(torch.zeros(3, 4, 4), 0.0)
    with pytest.raises(TypeError, match="imresize_uint8"):
        imresize(np.zeros((3, 4, 4)), 0.5)


def test_uint8_rounds_like_matlab(astronaut):
    crop = astronaut[:40, :37]
    out = imresize_uint8(crop, 1 / 4)
    ref = reference_imresize(crop.transpose(2, 0, 1).astype(np.float64), 1 / 4).transpose(1, 2, 0)
    assert out.dtype == np.uint8 and out.shape == (10, 10, 3)
    np.testing.assert_array_equal(out, np.floor(np.clip(ref, 0, 255) + 0.5).astype(np.uint8))
    grey = imresize_uint8(crop[..., 0], 1 / 2)
    assert grey.shape == (20, 19)


def test_bicubic_downscale():
    from hf_srdistill.data.imresize import bicubic_downscale

    hr = torch.rand(2, 3, 12, 18, dtype=torch.float64)
    lr = bicubic_downscale(hr, 3)
    assert lr.shape == (2, 3, 4, 6)
    assert np.abs(lr[1].numpy() - reference_imresize(hr[1].numpy(), 1 / 3)).max() < 1e-12
    with pytest.raises(ValueError, match="13x18 does not divide by scale 3"):
        bicubic_downscale(torch.rand(3, 13, 18), 3)
    with pytest.raises(ValueError, match="integer"):
        bicubic_downscale(hr, 2.5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    x = torch.rand(2, 3, 33, 47, dtype=torch.float64)
    for scale in (1 / 2, 1 / 3, 1 / 4, 2.0):
        cpu = imresize(x, scale)
        gpu = imresize(x.cuda(), scale)
        assert gpu.device.type == "cuda"
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-12)
