"""Test support shared by the latent tests (a uniquely named module: `conftest` is not importable
reliably when several test folders have one)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

SUPPORT = Path(__file__).parent / "support"


def write_tiny_pickle(path: Path, **kwargs) -> Path:
    """Pickle a tiny generator whose classes live in the bare module ``tiny_stylegan_net``.

    The module is imported from SUPPORT only for pickling and then forgotten, so loading
    must go through ``latent.source_dir`` like an official StyleGAN-XL pickle.
    """
    sys.path.insert(0, str(SUPPORT))
    try:
        importlib.import_module("tiny_stylegan_net").write_pickle(str(path), **kwargs)
    finally:
        sys.path.remove(str(SUPPORT))
        sys.modules.pop("tiny_stylegan_net", None)
    return path


def write_tiny_ldm(folder: Path, seed: int = 0, vq: bool = False, vq_scaling: float | None = None,
                   unet: dict | None = None, **scheduler) -> Path:
    """An untrained latent-diffusion model in the diffusers layout the ldm backend loads.

    vae/ (AutoencoderKL, x2 down) or vqvae/ (VQModel; no scaling_factor in its config, like
    CompVis/ldm-celebahq-256, unless ``vq_scaling``), unet/ (UNet2DModel on 8x8x4 latents, one
    attention block; ``unet`` overriding) and scheduler/ (DDIMScheduler with that repo's betas,
    ``scheduler`` overriding). Seeded, so two calls write the same weights.
    """
    import json

    import torch
    from diffusers import DDIMScheduler, UNet2DModel, VQModel

    from hf_srdistill.latent.diffusers_vae import untrained_vae

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if vq:
            ae = VQModel(block_out_channels=[8, 16], down_block_types=["DownEncoderBlock2D"] * 2,
                         up_block_types=["UpDecoderBlock2D"] * 2, latent_channels=4, norm_num_groups=4,
                         num_vq_embeddings=32, vq_embed_dim=4, layers_per_block=1)
        model = UNet2DModel(**{"sample_size": 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
                               "block_out_channels": [8, 16], "norm_num_groups": 4, "attention_head_dim": 8,
                               "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
                               "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], **(unet or {})})
    if vq:
        ae.save_pretrained(folder / "vqvae")
        config = folder / "vqvae" / "config.json"
        saved = json.loads(config.read_text())
        saved.pop("scaling_factor")
        if vq_scaling is not None:
            saved["scaling_factor"] = vq_scaling
        config.write_text(json.dumps(saved))
    else:
        vae = untrained_vae([8, 16], seed=seed)
        # LDMs scale latents to unit variance (Rombach et al. 2022, sec. 4.3.2); this VAE's photo
        # latents have std ~0.26, so 4 makes the UNet's inputs as large as a trained model's
        vae.register_to_config(scaling_factor=4.0)
        vae.save_pretrained(folder / "vae")
    model.save_pretrained(folder / "unet")
    DDIMScheduler(**{"beta_schedule": "scaled_linear", "beta_start": 0.0015, "beta_end": 0.0195,
                     "clip_sample": False, **scheduler}).save_pretrained(folder / "scheduler")
    return folder
