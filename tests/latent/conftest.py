"""Tiny generators for every latent backend, built from config or pickled (no download)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import skimage.data
import torch

from hf_srdistill.config import LatentConfig
from hf_srdistill.data.imresize import imresize
from latent_support import SUPPORT, write_tiny_ldm, write_tiny_pickle

SIZE = 12  # synthetic side: the 16 px tiny StyleGAN output is bicubic-resized to it


@pytest.fixture(scope="session")
def tiny_pickle(tmp_path_factory) -> Path:
    return write_tiny_pickle(tmp_path_factory.mktemp("stylegan") / "network.pkl", img_resolution=16, channels=8)


@pytest.fixture(scope="session")
def stylegan_cfg(tiny_pickle) -> LatentConfig:
    """Reduced inversion/tuning counts: enough to move the error, quick on 2 cores."""
    return LatentConfig(backend="stylegan_xl", generator=str(tiny_pickle), source_dir=str(SUPPORT),
                        chunk_size=3, invert_steps=20, invert_lr=0.1, w_avg_samples=256,
                        tune_steps=20, tune_lr=1e-2, lpips_weight=0.0)


@pytest.fixture(scope="session")
def vae_folder(tmp_path_factory) -> Path:
    """A tiny AutoencoderKL saved like a Stable-Diffusion repo: <folder>/vae/."""
    from hf_srdistill.latent.diffusers_vae import untrained_vae

    folder = tmp_path_factory.mktemp("sd_repo")
    untrained_vae([8, 16], seed=3).save_pretrained(folder / "vae")
    return folder


@pytest.fixture(scope="session")
def ldm_folder(tmp_path_factory) -> Path:
    """A tiny untrained latent-diffusion model: vae/ (unit-variance latents), unet/, scheduler/."""
    return write_tiny_ldm(tmp_path_factory.mktemp("ldm_repo"))


@pytest.fixture(scope="session")
def backend_cfgs(stylegan_cfg, ldm_folder) -> dict[str, LatentConfig]:
    """One tiny config per registered backend (and GLaD's intermediate-feature codes)."""
    return {
        "stylegan_xl": replace(stylegan_cfg, invert_steps=5, tune_steps=5),
        "stylegan_xl_layer2": replace(stylegan_cfg, invert_steps=5, tune_steps=5, layer=2),
        "vae": LatentConfig(backend="vae", vae_channels=[8, 16], chunk_size=3),
        "ldm": LatentConfig(backend="ldm", generator=str(ldm_folder), chunk_size=3, ldm_steps=4, ldm_invert_iters=2),
    }


@pytest.fixture(scope="session")
def size() -> int:
    return SIZE


@pytest.fixture(scope="session")
def photos() -> torch.Tensor:
    """(4,3,12,12) real photos (scikit-image), centre-cropped and bicubic-downscaled, in [0,1]."""
    out = []
    for img in (skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee(), skimage.data.rocket()):
        h, w = img.shape[:2]
        s = min(h, w)
        x = torch.from_numpy(img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s].copy())
        x = x.permute(2, 0, 1).float() / 255
        scale = SIZE / s
        while math.ceil(s * scale) > SIZE:  # MATLAB's out side is ceil(in * scale): stay below float error
            scale = math.nextafter(scale, 0.0)
        out.append(imresize(x, scale))
    return torch.stack(out).clamp(0, 1)
