"""Random paired LR/HR training patches, as EDSR/BasicSR train.

The LR image is made from the *whole* (mod-cropped) HR image and then cropped, because
that is how benchmark LR images are made: resizing a crop would see the crop's edges as
image borders (MATLAB's mirroring) and give different pixels there. The LR crop at
``(y, x)`` pairs with the HR crop at ``(scale*y, scale*x)``. Randomness comes from torch's
global generator only, so ``torch.manual_seed`` (and the DataLoader's per-worker seeding)
make the stream of samples reproducible.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from hf_srdistill.data.images import mod_crop, to_tensor
from hf_srdistill.data.imresize import bicubic_downscale, bicubic_downscale_window

__all__ = ["PairedPatchDataset", "augment_pair"]

# images of more pixels than this are not resized whole: their patches' LR is computed from
# the HR window it depends on (bicubic_downscale_window), e.g. for DIV2K's 480-px sub-images,
# which are too many to keep resized in memory (smaller ones are resized once and cached)
WINDOW_MIN_PIXELS = 256 * 256


def augment_pair(lr: torch.Tensor, hr: torch.Tensor, hflip: bool, vflip: bool, rot90: bool):
    """The same flips / transpose on both (BasicSR's ``augment``: 8 dihedral variants)."""
    if hflip:
        lr, hr = lr.flip(-1), hr.flip(-1)
    if vflip:
        lr, hr = lr.flip(-2), hr.flip(-2)
    if rot90:
        lr, hr = lr.transpose(-2, -1), hr.transpose(-2, -1)
    return lr, hr


def _as_hr_tensor(img, index: int) -> torch.Tensor:
    if isinstance(img, torch.Tensor):
        if img.dim() != 3 or img.shape[0] != 3 or not img.is_floating_point():
            raise ValueError(f"image {index}: expected a (3,H,W) float tensor in [0, 1], got "
                             f"{img.dtype} {tuple(img.shape)}")
        return img.detach().float().cpu()
    return to_tensor(np.asarray(img))


class PairedPatchDataset(Dataset):
    """``(lr (3,p/s,p/s), hr (3,p,p))`` float32 pairs cut at random from ``images``.

    ``images`` is any sequence of HWC uint8 arrays or (3,H,W) float tensors (a list, or the
    lazy ``SubImageStore.all_subimages()``). Sample ``i`` comes from image ``i % len(images)``,
    so ``length`` lets a few images (a distilled set) give many samples per epoch.
    """

    def __init__(self, images: Sequence, patch_size: int, scale: int, augment: bool = True,
                 length: int | None = None, lr_cache_mb: float = 256) -> None:
        if int(scale) != scale or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale}")
        if patch_size <= 0 or patch_size % scale:
            raise ValueError(f"patch_size {patch_size} must be a positive multiple of the scale {scale}")
        if len(images) == 0:
            raise ValueError("PairedPatchDataset needs at least one image")
        if length is not None and length <= 0:
            raise ValueError(f"length must be positive, got {length}")
        self.images, self.patch_size, self.scale = images, int(patch_size), int(scale)
        self.augment, self.length = augment, length
        if isinstance(images, (list, tuple)):  # cheap to check up front when already in memory
            for i, img in enumerate(images):
                self._check_size(tuple(img.shape[-2:] if isinstance(img, torch.Tensor) else img.shape[:2]), i)
        self._lr_cache: OrderedDict[int, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._cache_budget, self._cache_bytes = int(lr_cache_mb * 2**20), 0

    def _check_size(self, hw: tuple[int, int], index: int) -> None:
        h, w = hw
        if min(h - h % self.scale, w - w % self.scale) < self.patch_size:
            raise ValueError(f"image {index} of size {h}x{w} is smaller than the patch size "
                             f"{self.patch_size} (after mod-crop to scale {self.scale})")

    def __len__(self) -> int:
        return self.length if self.length is not None else len(self.images)

    def _pair(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(LR, HR) of the whole image, kept in a small LRU cache (imresize is the costly part)."""
        if index in self._lr_cache:
            self._lr_cache.move_to_end(index)
            return self._lr_cache[index]
        hr = _as_hr_tensor(self.images[index], index)
        self._check_size(tuple(hr.shape[-2:]), index)
        hr = mod_crop(hr, self.scale).contiguous()
        lr = bicubic_downscale(hr, self.scale)
        size = (hr.numel() + lr.numel()) * 4
        if size <= self._cache_budget:
            self._lr_cache[index] = (lr, hr)
            self._cache_bytes += size
            while self._cache_bytes > self._cache_budget:
                old_lr, old_hr = self._lr_cache.popitem(last=False)[1]
                self._cache_bytes -= (old_lr.numel() + old_hr.numel()) * 4
        return lr, hr

    def _window_patch(self, index: int, lp: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The (LR, HR) patch of a large image from its HR window alone; None for small images."""
        img, s = self.images[index], self.scale
        hw = tuple(img.shape[-2:] if isinstance(img, torch.Tensor) else img.shape[:2])
        self._check_size(hw, index)
        h, w = hw[0] - hw[0] % s, hw[1] - hw[1] % s
        if index in self._lr_cache or h * w <= WINDOW_MIN_PIXELS:
            return None
        y = int(torch.randint(h // s - lp + 1, ()))  # the same draws as the whole-image path
        x = int(torch.randint(w // s - lp + 1, ()))

        def window(y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
            part = img[:, y0:y1, x0:x1] if isinstance(img, torch.Tensor) else img[y0:y1, x0:x1]
            return _as_hr_tensor(part if isinstance(part, torch.Tensor) else np.ascontiguousarray(part), index)

        lr_patch = bicubic_downscale_window(window, s, y, x, lp, hr_shape=(h, w))
        return lr_patch, window(s * y, s * (y + lp), s * x, s * (x + lp))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} out of range for {len(self)} samples")
        lp = self.patch_size // self.scale
        s = self.scale
        pair = self._window_patch(i % len(self.images), lp)
        if pair is not None:
            lr_patch, hr_patch = pair
        else:
            lr, hr = self._pair(i % len(self.images))
            y = int(torch.randint(lr.shape[-2] - lp + 1, ()))
            x = int(torch.randint(lr.shape[-1] - lp + 1, ()))
            lr_patch = lr[:, y:y + lp, x:x + lp]
            hr_patch = hr[:, s * y:s * (y + lp), s * x:s * (x + lp)]
        if self.augment:
            hflip, vflip, rot = (torch.rand(3) < 0.5).tolist()
            lr_patch, hr_patch = augment_pair(lr_patch, hr_patch, hflip, vflip, rot)
        return lr_patch.contiguous(), hr_patch.contiguous()
