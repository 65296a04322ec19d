"""Initial synthetic HR images, one random stream per class.

Each class draws from its own generator seeded by (seed, class), so a class gets the same
start whether it is initialised alone, with all others, or on another process.

- ``noise``: uniform noise in [0, 1].
- ``downscaled``: the whole source photo, centre-cropped to a square and bicubic-downscaled
  to S x S. Cropping rather than stretching keeps the downscale isotropic, so textures keep
  natural proportions (an SR model learns per-axis frequency statistics); the cost is the
  strip lost on the long side. With ipc > 1, image 0 is the whole square and images 1..ipc-1
  downscale random square windows whose side is drawn between S and the short side, so the
  images of a class differ (identical images would receive identical updates forever).
- ``real``: random real S x S crops of the class's sub-images.
- ``latent``: images decoded by a latent backend (see the latent-distillation issue).
- ``set``: the images of another set folder (``init_set``), e.g. a coreset to refine.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from hf_srdistill.accel import seed_for
from hf_srdistill.config import DistillConfig
from hf_srdistill.configio import ConfigError
from hf_srdistill.data import imresize

# stream ids keep the init streams apart from the per-iteration ones in the loop
INIT_STREAM = 1


def class_generator(seed: int, cls: int, *parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed_for(seed, cls, *parts))


def resize_square(img: Tensor, size: int) -> Tensor:
    """Bicubic (MATLAB) resize of a square (C,L,L) or (N,C,L,L) tensor to exactly size x size."""
    side = img.shape[-1]
    if img.shape[-2] != side:
        raise ValueError(f"resize_square expects a square image, got {tuple(img.shape)}")
    if side == size:
        return img.clone()
    scale = size / side
    # MATLAB's output side is ceil(side * scale); step below the float rounding if it overshoots
    while math.ceil(side * scale) > size:
        scale = math.nextafter(scale, 0.0)
    return imresize(img, scale)


def _to_chw(img: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float() / 255.0


def downscaled_images(photo: np.ndarray, ipc: int, size: int, generator: torch.Generator) -> Tensor:
    """(ipc,3,size,size): the centre square of ``photo`` (HWC uint8) and random windows, downscaled."""
    h, w = photo.shape[:2]
    short = min(h, w)
    if short < size:
        raise ValueError(f"source photo {h}x{w} is smaller than the synthetic size {size}: "
                         "choose a smaller distill.image_size")
    top, left = (h - short) // 2, (w - short) // 2
    windows = [(top, left, short)]
    for _ in range(ipc - 1):
        side = int(torch.randint(size, short + 1, (1,), generator=generator))
        y = int(torch.randint(0, h - side + 1, (1,), generator=generator))
        x = int(torch.randint(0, w - side + 1, (1,), generator=generator))
        windows.append((y, x, side))
    return torch.stack([resize_square(_to_chw(photo[y:y + s, x:x + s]), size) for y, x, s in windows])


def set_images(cfg: DistillConfig, class_names: list[str]) -> Tensor:
    """(len(class_names)*ipc,3,S,S): those classes' images in the set folder ``cfg.init_set``."""
    from hf_srdistill.data.set_folder import read_labelled_set

    rows = read_labelled_set(cfg.init_set)
    out = []
    for name in class_names:
        found = rows.get(name, {})
        if sorted(found) != list(range(cfg.ipc)):
            raise ConfigError(f"distill.init_set {cfg.init_set}: class {name!r} has ipc indices "
                              f"{sorted(found)}, this run needs 0..{cfg.ipc - 1}")
        out += [_to_chw(found[j]) for j in range(cfg.ipc)]
    if out[0].shape[-2:] != (cfg.image_size, cfg.image_size):
        raise ConfigError(f"distill.init_set {cfg.init_set}: images are {out[0].shape[-1]}x{out[0].shape[-2]} "
                          f"px, this run needs distill.image_size={cfg.image_size}")
    return torch.stack(out)


def init_class_images(cfg: DistillConfig, store, cls: int) -> Tensor:
    """(ipc,3,S,S) float32 in [0,1]: the starting images of class ``cls``."""
    gen = class_generator(cfg.seed, cls, INIT_STREAM)
    s = cfg.image_size
    if cfg.init == "noise":
        return torch.rand(cfg.ipc, 3, s, s, generator=gen)
    if cfg.init == "downscaled":
        return downscaled_images(store.source_image(cls), cfg.ipc, s, gen).clamp_(0, 1)
    if cfg.init == "real":
        return store.sample_patches(cls, cfg.ipc, s, gen).float()
    if cfg.init == "set":
        return set_images(cfg, [store.class_names[cls]])
    if cfg.init == "latent":
        # the loop builds latent sets itself (distill/latent_glue.py), from the pixel init
        # named by distill.latent.init_from; a latent init never reaches this function
        raise ConfigError("distill.init=latent is decoded by the latent backend: ask for the pixel "
                          "start with distill.latent.init_from (noise, downscaled or real)")
    raise ConfigError(f"distill.init: unknown {cfg.init!r}")


def init_images(cfg: DistillConfig, store, classes: list[int]) -> Tensor:
    """(len(classes)*ipc,3,S,S): class-major, images of one class contiguous."""
    if not classes:
        return torch.zeros(0, 3, cfg.image_size, cfg.image_size)
    if cfg.init == "set":  # one read of the folder for all classes
        return set_images(cfg, [store.class_names[c] for c in classes])
    return torch.cat([init_class_images(cfg, store, c) for c in classes])
