"""Latent distillation: synthetic images decoded from a generator's codes.

Backends are chosen by ``LatentConfig.backend``: ``stylegan_xl`` (GLaD's W+/feature codes of
a GAN), ``vae`` (an AutoencoderKL's latents) and ``ldm`` (DDIM noise latents of a latent
diffusion model, decoded by a few differentiable DDIM steps). Their heavy dependencies
(diffusers, huggingface_hub, lpips, the StyleGAN-XL source tree) load only when a backend is built.
"""

from __future__ import annotations

import torch

from hf_srdistill.config import LatentConfig
from hf_srdistill.latent.base import (GeneratorNotFoundError, LatentBackend, Latents, backward_through_decoder,
                                      decode_all)
from hf_srdistill.latent.diffusers_ldm import LDMBackend
from hf_srdistill.latent.diffusers_vae import VAEBackend
from hf_srdistill.latent.state import load_latents, save_latents
from hf_srdistill.latent.stylegan_xl import StyleGANXLBackend
from hf_srdistill.latent.synthetic import LatentSynthetic, gan_inversion_images

BACKENDS: dict[str, type[LatentBackend]] = {
    "stylegan_xl": StyleGANXLBackend,
    "vae": VAEBackend,
    "ldm": LDMBackend,
}


def build_backend(cfg: LatentConfig, image_size: int, device: str | torch.device = "cpu",
                  seed: int = 0) -> LatentBackend:
    """Load the configured generator (no codes yet: call ``init_latents`` or ``set_latents``)."""
    if cfg.backend not in BACKENDS:
        raise ValueError(f"latent.backend must be one of {sorted(BACKENDS)}, got {cfg.backend!r}")
    return BACKENDS[cfg.backend](cfg, image_size, device=device, seed=seed)


__all__ = ["BACKENDS", "GeneratorNotFoundError", "LatentBackend", "LatentSynthetic", "Latents",
           "backward_through_decoder", "build_backend", "decode_all", "gan_inversion_images",
           "load_latents", "save_latents"]
