"""Sub-images exactly as BasicSR's DIV2K preparation (``scripts/data_preparation``).

Each photo is cut into ``crop_size`` squares every ``step`` pixels, row-major. The grid
``0, step, 2*step, ...`` stops where a crop would run past the border; when the strip left
over is wider than ``thresh_size`` one extra crop flush with the far border is added, so
the border is never lost. With 480/240/0 the 800 DIV2K training photos give 32,592 crops.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["subimage_positions", "count_subimages", "extract_subimages"]


def _axis_positions(length: int, crop_size: int, step: int, thresh_size: int) -> list[int]:
    positions = list(range(0, length - crop_size + 1, step))
    if length - (positions[-1] + crop_size) > thresh_size:
        positions.append(length - crop_size)
    return positions


def subimage_positions(h: int, w: int, crop_size: int = 480, step: int = 240,
                       thresh_size: int = 0) -> tuple[list[int], list[int]]:
    """Top and left offsets of the crops of an ``h`` x ``w`` image."""
    if crop_size <= 0 or step <= 0 or thresh_size < 0:
        raise ValueError(f"need crop_size > 0, step > 0, thresh_size >= 0; got "
                         f"crop_size={crop_size}, step={step}, thresh_size={thresh_size}")
    if h < crop_size or w < crop_size:
        raise ValueError(f"image of size {h}x{w} (HxW) is smaller than the crop size "
                         f"{crop_size}; lower data.crop_size or drop the image")
    return (_axis_positions(h, crop_size, step, thresh_size),
            _axis_positions(w, crop_size, step, thresh_size))


def count_subimages(h: int, w: int, crop_size: int = 480, step: int = 240,
                    thresh_size: int = 0) -> int:
    """Number of crops ``extract_subimages`` returns for an ``h`` x ``w`` image."""
    tops, lefts = subimage_positions(h, w, crop_size, step, thresh_size)
    return len(tops) * len(lefts)


def extract_subimages(img: np.ndarray | Image.Image, crop_size: int = 480, step: int = 240,
                      thresh_size: int = 0) -> list[np.ndarray]:
    """Crops of an HWC (or HW) array or PIL image, row-major, each a contiguous copy.

    Copies rather than views, so holding a few crops does not pin the whole photo in memory.
    A PIL image is first converted to HWC uint8 RGB (``to_rgb_uint8``), so palette images
    are cropped as colours, not as palette indices.
    """
    if isinstance(img, Image.Image):
        from hf_srdistill.data.images import to_rgb_uint8

        img = to_rgb_uint8(img)
    arr = np.asarray(img)
    if arr.ndim not in (2, 3):
        raise ValueError(f"extract_subimages expects an HW or HWC image, got shape {arr.shape}")
    tops, lefts = subimage_positions(arr.shape[0], arr.shape[1], crop_size, step, thresh_size)
    return [np.ascontiguousarray(arr[t:t + crop_size, l:l + crop_size]) for t in tops for l in lefts]
