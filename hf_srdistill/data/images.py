"""Image decoding and normalisation: every photo becomes HWC uint8 RGB, or a clear error.

SR metrics and the MATLAB degradation are defined on 8-bit RGB, so anything else is
converted explicitly here, once:
- grey (HW, HW1) -> the grey value copied to R, G and B; grey+alpha -> grey;
- RGBA -> alpha dropped. A fully opaque alpha is dropped silently (nothing is lost); any
  transparency is logged as a warning naming the image, because the stored colours are
  kept rather than composited onto an invented background;
- uint16 -> ``round(v / 257)`` (65535 -> 255), MATLAB's ``im2uint8``;
- bool -> 0 / 255; float -> ``round(v * 255)`` only when every value lies in [0, 1].
Other dtypes or channel counts raise ``ValueError`` naming the image.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["CorruptImageError", "to_rgb_uint8", "pil_to_array", "decode_image_bytes", "load_image",
           "mod_crop", "to_tensor", "to_uint8"]

log = logging.getLogger(__name__)


class CorruptImageError(ValueError):
    """A file that cannot be decoded as an image."""


def _to_uint8_values(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * 255
    if arr.dtype == np.uint16:
        return np.floor(arr.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
            raise ValueError(f"{name}: float image must hold finite values in [0, 1], got range "
                             f"[{np.nanmin(arr)}, {np.nanmax(arr)}]; scale it or pass uint8")
        return np.floor(arr.astype(np.float64) * 255.0 + 0.5).astype(np.uint8)
    raise ValueError(f"{name}: unsupported image dtype {arr.dtype} (expected uint8, uint16, bool "
                     "or float in [0, 1])")


def to_rgb_uint8(arr: np.ndarray | Image.Image, name: str = "image") -> np.ndarray:
    """Any supported image array (or PIL image) -> contiguous HWC uint8 RGB."""
    if isinstance(arr, Image.Image):  # palette / CMYK / 16-bit modes need their own conversion
        arr = pil_to_array(arr, name)
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ValueError(f"{name}: expected an HW or HWC image with 1-4 channels, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name}: empty image of shape {arr.shape}")
    if arr.shape[2] in (2, 4):
        alpha = arr[:, :, -1]
        if alpha.dtype == np.bool_ or np.issubdtype(alpha.dtype, np.floating):
            opaque = 1
        elif np.issubdtype(alpha.dtype, np.integer):
            opaque = np.iinfo(alpha.dtype).max
        else:
            raise ValueError(f"{name}: unsupported image dtype {alpha.dtype}")
        transparent = float(np.mean(alpha != opaque))
        if transparent > 0:
            log.warning("%s: dropping an alpha channel that is not fully opaque (%.1f%% of pixels); "
                        "the stored colours are kept as they are", name, 100 * transparent)
        arr = arr[:, :, :-1]
    arr = _to_uint8_values(arr, name)
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr)


def pil_to_array(img: Image.Image, name: str = "image") -> np.ndarray:
    """A decoded PIL image -> HW/HWC array in a dtype ``to_rgb_uint8`` understands."""
    img = ImageOps.exif_transpose(img)  # what a viewer shows (camera JPEGs are often rotated)
    if img.mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(img).astype(np.uint16)
    if img.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
        img = img.convert("RGBA" if "A" in img.mode or "transparency" in img.info else "RGB")
    arr = np.asarray(img)
    if img.mode == "I" and img.format == "PNG" and arr.min() >= 0 and arr.max() <= 65535:
        return arr.astype(np.uint16)  # some Pillow versions open 16-bit grey PNGs as "I"
    if img.mode in ("I", "F"):
        raise ValueError(f"{name}: 32-bit {img.mode!r} images are not supported; save as 8/16-bit")
    return arr


def _warn_if_16bit_colour_png(head: bytes, name: str) -> None:
    # PNG signature (8) + IHDR length/type (8) + width/height (8), then bit depth and colour type
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 26 and head[24] == 16 and head[25] in (2, 6):
        log.warning("%s: 16-bit colour PNG; Pillow keeps the high byte of each sample, which "
                    "can differ from round(v / 257) by one level", name)


def decode_image_bytes(data: bytes, name: str = "image") -> np.ndarray:
    """Encoded image bytes (PNG, JPEG, ...) -> HWC uint8 RGB, or ``CorruptImageError``."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()  # force decoding now so truncated files fail here, not later
            _warn_if_16bit_colour_png(data[:26], name)
            arr = pil_to_array(img, name)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError,
            Image.DecompressionBombError) as err:  # a bomb header is a bad file like any other
        raise CorruptImageError(f"cannot decode image {name}: {err}") from err
    return to_rgb_uint8(arr, name=name)


def load_image(path: str | Path) -> np.ndarray:
    """Decode a PNG/JPEG/BMP/TIFF file into HWC uint8 RGB.

    Raises ``FileNotFoundError`` for a missing path and ``CorruptImageError`` (naming the
    file) for anything that cannot be decoded, so callers can count and skip bad files.
    Note: Pillow reduces 16-bit colour PNGs to 8 bits by keeping the high byte, which can
    differ from ``round(v / 257)`` by one level (logged); 16-bit grey PNGs and TIFFs are exact.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image file at {path}")
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile  # keeps 16-bit colour TIFFs exact (Pillow cannot hold them)

        try:
            arr = tifffile.imread(path)
        except Exception as err:  # tifffile raises several unrelated types on bad files
            raise CorruptImageError(f"cannot decode image {path}: {err}") from err
        return to_rgb_uint8(arr, name=str(path))
    return decode_image_bytes(path.read_bytes(), name=str(path))


def mod_crop(img, scale: int):
    """Crop the bottom/right so both sides divide by ``scale`` (BasicSR's ``mod_crop``).

    Works on HW/HWC arrays and on (..., H, W) tensors. Needed so that HR = scale x LR exactly.
    """
    if int(scale) != scale or scale < 1:
        raise ValueError(f"mod_crop scale must be a positive integer, got {scale}")
    scale = int(scale)
    if isinstance(img, torch.Tensor):
        h, w = img.shape[-2:]
        if h < scale or w < scale:
            raise ValueError(f"image of size {h}x{w} is smaller than the scale {scale}")
        return img[..., : h - h % scale, : w - w % scale]
    arr = np.asarray(img)
    h, w = arr.shape[:2]
    if h < scale or w < scale:
        raise ValueError(f"image of size {h}x{w} is smaller than the scale {scale}")
    return arr[: h - h % scale, : w - w % scale]


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HWC uint8 -> (C,H,W) float32 in [0, 1]."""
    arr = np.asarray(img)
    if arr.dtype != np.uint8 or arr.ndim != 3:
        raise ValueError(f"to_tensor expects an HWC uint8 array, got {arr.dtype} {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float().div_(255.0)


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """(C,H,W) or (N,C,H,W) float in [0, 1] -> HWC (or NHWC) uint8.

    Clamp to [0, 1], scale by 255 and round half to even, as BasicSR's ``tensor2img``;
    metrics computed on these arrays then match BasicSR's.
    """
    if not isinstance(t, torch.Tensor) or t.dim() not in (3, 4):
        raise ValueError(f"to_uint8 expects a (C,H,W) or (N,C,H,W) tensor, got "
                         f"{getattr(t, 'shape', type(t).__name__)}")
    t = t.detach().float().cpu()
    if not torch.isfinite(t).all():
        raise ValueError("to_uint8: tensor holds NaN or inf values")
    arr = (t.clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()
    return np.ascontiguousarray(np.moveaxis(arr, -3, -1))
