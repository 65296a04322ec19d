"""MATLAB-compatible bicubic ``imresize`` in torch.

SR papers (SRCNN, VDSR, EDSR and the DIV2K/Set5 benchmarks) build their LR images with
MATLAB's ``imresize(img, scale, 'bicubic')``; ``F.interpolate(..., antialias=True)``
agrees with it only away from the border because MATLAB pads by mirroring indices.
MATLAB's resize is separable and linear, so each axis is a fixed (out, in) weight matrix:
``y = Wh @ x @ Ww.T`` is exact (borders included), batched over leading dims and
differentiable, which distillation needs because it backpropagates through the LR.

The matrices follow MATLAB's ``contributions``: output pixel ``i`` (1-based) sits at
``u = i / scale + 0.5 * (1 - 1 / scale)`` in input coordinates; the cubic kernel (a=-0.5)
is stretched by ``1 / scale`` when shrinking (antialiasing); taps falling outside the image
are mirrored back (``[1..n, n..1]`` periodically), and each row is normalised to sum to 1.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch

__all__ = ["imresize", "imresize_uint8", "bicubic_downscale", "bicubic_downscale_window", "resize_weights",
           "output_size"]

_KERNEL_WIDTH = 4.0  # bicubic support is [-2, 2]


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def output_size(in_size: int, scale: float) -> int:
    """MATLAB's output length: ``ceil(in_size * scale)``."""
    return int(math.ceil(in_size * scale))


def resize_weights(in_size: int, out_size: int, scale: float) -> np.ndarray:
    """The (out_size, in_size) float64 matrix that resizes one axis like MATLAB."""
    width = _KERNEL_WIDTH
    kernel = _cubic
    if scale < 1:  # antialiasing: a wider, lower kernel acts as the low-pass filter
        width = _KERNEL_WIDTH / scale
        kernel = lambda t: scale * _cubic(scale * t)  # noqa: E731
    out_pos = np.arange(1, out_size + 1, dtype=np.float64)
    centre = out_pos / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(centre - width / 2.0)
    taps = int(math.ceil(width)) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based input positions
    w = kernel(centre[:, None] - idx)
    w = w / w.sum(axis=1, keepdims=True)
    # symmetric padding: position p maps through the periodic sequence [1..n, n..1]
    period = 2 * in_size
    m = np.mod(idx - 1, period).astype(np.int64)
    src = np.where(m < in_size, m, period - 1 - m)
    mat = np.zeros((out_size, in_size), dtype=np.float64)
    np.add.at(mat, (np.repeat(np.arange(out_size), taps), src.ravel()), w.ravel())
    return mat


@lru_cache(maxsize=64)
def _weights(in_size: int, out_size: int, scale: float, dtype: torch.dtype,
             device: torch.device) -> torch.Tensor:
    return torch.from_numpy(resize_weights(in_size, out_size, scale)).to(device=device, dtype=dtype)


def imresize(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Resize (C,H,W) or (N,C,H,W) float tensor by ``scale`` (0.5 halves, 2 doubles).

    Output sides are ``ceil(side * scale)``. Values are not clamped (MATLAB does not clamp
    float input either), so an upscaled [0, 1] image may overshoot slightly.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"imresize expects a torch.Tensor, got {type(x).__name__}; "
                        "use imresize_uint8 for HWC uint8 arrays")
    if not x.is_floating_point():
        raise TypeError(f"imresize expects a floating-point tensor, got {x.dtype}")
    if x.dim() not in (3, 4):
        raise ValueError(f"imresize expects (C,H,W) or (N,C,H,W), got shape {tuple(x.shape)}")
    scale = float(scale)
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"imresize scale must be a positive finite number, got {scale}")
    h, w = x.shape[-2:]
    if h < 1 or w < 1:
        raise ValueError(f"imresize got an empty image of shape {tuple(x.shape)}")
    oh, ow = output_size(h, scale), output_size(w, scale)
    wh = _weights(h, oh, scale, x.dtype, x.device)
    ww = _weights(w, ow, scale, x.dtype, x.device)
    return torch.matmul(torch.matmul(wh, x), ww.transpose(0, 1))


def bicubic_downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """The SR degradation: LR = MATLAB-bicubic ``hr`` shrunk by the integer ``scale``.

    Both sides must divide by ``scale`` (``mod_crop`` first); otherwise ``ceil`` would make an
    LR whose pixels no longer line up with ``scale`` x ``scale`` HR blocks.
    """
    if int(scale) != scale or scale < 1:
        raise ValueError(f"SR scale must be a positive integer, got {scale}")
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"HR size {h}x{w} does not divide by scale {int(scale)}; mod_crop it first")
    return imresize(hr, 1.0 / int(scale))


def _support(weights: torch.Tensor, start: int, size: int) -> tuple[int, int]:
    """The input columns that output rows [start, start + size) of ``weights`` read."""
    nonzero = weights[start:start + size].ne(0).any(0).nonzero().flatten()
    return int(nonzero[0]), int(nonzero[-1]) + 1


def bicubic_downscale_window(hr: torch.Tensor, scale: int, top: int, left: int, size: int,
                             hr_shape: tuple[int, int] | None = None) -> torch.Tensor:
    """``bicubic_downscale(hr)[..., top:top+size, left:left+size]`` without resizing the whole image.

    Uses the rows of the whole image's weight matrices and only the HR pixels they touch, so
    a patch of a 480-px sub-image costs a (size x ~4 size) product instead of a full resize.
    The result equals the whole-image LR up to float summation order (~1e-7).
    ``hr`` may be the whole (mod-cropped) image, or a callable ``(y0, y1, x0, x1) -> window``
    with ``hr_shape`` giving the whole image's size, so only the window is ever converted.
    """
    h, w = hr_shape if hr_shape is not None else hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"HR size {h}x{w} does not divide by scale {int(scale)}; mod_crop it first")
    dtype = torch.float32 if callable(hr) else hr.dtype
    device = torch.device("cpu") if callable(hr) else hr.device
    wh = _weights(h, h // scale, 1.0 / scale, dtype, device)
    ww = _weights(w, w // scale, 1.0 / scale, dtype, device)
    y0, y1 = _support(wh, top, size)
    x0, x1 = _support(ww, left, size)
    window = hr(y0, y1, x0, x1) if callable(hr) else hr[..., y0:y1, x0:x1]
    return torch.matmul(torch.matmul(wh[top:top + size, y0:y1], window), ww[left:left + size, x0:x1].transpose(0, 1))


def imresize_uint8(img: np.ndarray, scale: float) -> np.ndarray:
    """Resize an HWC (or HW) uint8 array like MATLAB's ``imresize`` on uint8 input.

    Computed in float64 on the 0..255 values, then clipped and rounded half away from zero,
    which is how MATLAB converts back to uint8 (for non-negative values ``floor(v + 0.5)``).
    """
    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        raise TypeError(f"imresize_uint8 expects a uint8 array, got {arr.dtype}")
    if arr.ndim not in (2, 3):
        raise ValueError(f"imresize_uint8 expects HW or HWC, got shape {arr.shape}")
    chw = torch.from_numpy(np.ascontiguousarray(np.atleast_3d(arr).transpose(2, 0, 1))).double()
    out = imresize(chw, scale).numpy().transpose(1, 2, 0)
    out = np.floor(np.clip(out, 0.0, 255.0) + 0.5).astype(np.uint8)
    return out[..., 0] if arr.ndim == 2 else out
