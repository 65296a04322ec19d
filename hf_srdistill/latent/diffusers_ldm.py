"""``ldm`` backend: distil in the DDIM noise space of an unconditional latent-diffusion model.

Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models" (CVPR 2022).
The codes are DDIM noise latents x_T. Init: the images are encoded by the model's autoencoder
(AutoencoderKL posterior mean or VQModel pre-quantisation latents, scaled as the UNet was
trained) and DDIM-inverted over ``ldm_steps`` steps (:mod:`hf_srdistill.latent.ddim`).
Decode: the deterministic DDIM sampler from x_T to x_0, then the autoencoder's decoder, so
the images stay on the paths the diffusion prior generates. Gradients go through every
sampler step; with ``ldm_checkpoint`` each UNet call is recomputed in the backward, so the
activations held are one step's, not ``ldm_steps``'.

Layout (diffusers, e.g. CompVis/ldm-celebahq-256): ``vae/`` or ``vqvae/``, ``unet/``
(UNet2DModel) and ``scheduler/``. The model runs at its training size (UNet sample_size x
the autoencoder's downsampling) unless ``ldm_resolution`` is set, with MATLAB bicubic
resizing between that and the synthetic size, as for StyleGAN-XL.
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hf_srdistill.config import LatentConfig
from hf_srdistill.data.imresize import imresize, output_size
from hf_srdistill.latent import ddim
from hf_srdistill.latent.base import GeneratorNotFoundError, LatentBackend, Latents
from hf_srdistill.latent.diffusers_vae import _folder_digest, _hub_commit

log = logging.getLogger(__name__)

LAYOUT = "vae/ (or vqvae/), unet/ and scheduler/ subfolders (diffusers layout, e.g. CompVis/ldm-celebahq-256)"


def resize(x: Tensor, size: int) -> Tensor:
    """MATLAB bicubic to ``size`` px (the scale is nudged below float error so ceil() lands on it)."""
    side = x.shape[-1]
    if side == size:
        return x
    scale = size / side
    while output_size(side, scale) > size:
        scale = math.nextafter(scale, 0.0)
    return imresize(x, scale)


def latent_scale(vae: nn.Module) -> tuple[float, float]:
    """(scaling, shift): the UNet sees ``(h - shift) * scaling`` of the autoencoder latents h.

    A VQModel config without ``scaling_factor`` gets diffusers' default 0.18215, but CompVis's
    VQ LDMs (ldm-celebahq-256) were trained on unscaled latents (their scale_factor is 1.0;
    diffusers issue #6725), so an unset VQ scale is read as 1.0.
    """
    unset = "scaling_factor" in (vae.config.get("_use_default_values") or [])
    if type(vae).__name__ == "VQModel" and unset:
        return 1.0, 0.0
    return float(vae.config.scaling_factor), float(vae.config.get("shift_factor") or 0.0)


class LDMBackend(LatentBackend):
    """DDIM noise latents of an unconditional LDM; decode = DDIM sampling + autoencoder decode."""

    name = "ldm"

    def __init__(self, cfg: LatentConfig, image_size: int, device: str | torch.device = "cpu",
                 seed: int = 0) -> None:
        super().__init__(cfg, image_size, device, seed)
        self.vae, self.unet, scheduler_config = self._load()
        for m in (self.vae, self.unet):
            m.eval().requires_grad_(False).to(self.device)
        self.schedule = ddim.DDIMSchedule(scheduler_config, cfg.ldm_steps)
        self.is_vq = type(self.vae).__name__ == "VQModel"
        self.scaling, self.shift = latent_scale(self.vae)
        vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        unet_factor = 2 ** (len(self.unet.config.block_out_channels) - 1)
        native = self.unet.config.sample_size
        native = native[0] if isinstance(native, (list, tuple)) else native
        self.resolution = cfg.ldm_resolution or (native * vae_factor if native else image_size)
        if self.resolution % (vae_factor * unet_factor):
            raise ValueError(f"the LDM runs at {self.resolution} px, which must be divisible by the autoencoder's "
                             f"x UNet's downsampling {vae_factor} x {unet_factor}; set latent.ldm_resolution")
        self.class_conditional = bool(self.unet.config.num_class_embeds)
        if self.unet.config.class_embed_type is not None:
            raise ValueError(f"the UNet's class_embed_type={self.unet.config.class_embed_type!r} is not supported: "
                             "the ldm backend feeds class labels only through num_class_embeds")
        if self.class_conditional and cfg.class_index >= self.unet.config.num_class_embeds:
            raise ValueError(f"latent.class_index={cfg.class_index} but the UNet has "
                             f"{self.unet.config.num_class_embeds} classes")
        self._source.update(autoencoder=type(self.vae).__name__, latent_scale=[self.scaling, self.shift],
                            ldm_steps=cfg.ldm_steps, timesteps=self.schedule.timesteps,
                            prediction_type=self.schedule.prediction_type, resolution=self.resolution)

    def _load(self) -> tuple[nn.Module, nn.Module, dict[str, Any]]:
        cfg = self.cfg
        if cfg.generator is None:
            raise GeneratorNotFoundError(f"latent.backend=ldm needs latent.generator: a model folder or Hub id "
                                         f"with {LAYOUT}, downloaded beforehand")
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DModel, VQModel

        local = Path(cfg.generator).expanduser()
        looks_local = local.exists() or cfg.generator.startswith(("/", ".", "~"))
        if looks_local and not local.is_dir():
            raise GeneratorNotFoundError(f"latent.generator={cfg.generator}: no such model folder")
        name = str(local) if looks_local else cfg.generator
        subs = [cfg.subfolder] if cfg.subfolder else ["vae", "vqvae"]
        if looks_local:  # pick the autoencoder folder that exists; the error names both otherwise
            subs = [s for s in subs if (local / s).is_dir()] or subs

        def missing(what: str, sub: str, err: Exception) -> GeneratorNotFoundError:
            return GeneratorNotFoundError(
                f"could not load the {what} of a latent-diffusion model from {cfg.generator!r} "
                f"(subfolder={sub!r}): {str(err).rstrip('.')}. It needs {LAYOUT}. Offline, download it beforehand "
                "(huggingface-cli download <id>) or point latent.generator at a local folder.")

        def load(what: str, sub: str, fn):
            try:
                return fn(name, subfolder=sub, revision=cfg.revision)
            except (OSError, ValueError) as err:
                raise missing(what, sub, err) from err

        vae_sub, vae_config, last = subs[0], None, None
        for sub in subs:
            try:
                vae_config, vae_sub = AutoencoderKL.load_config(name, subfolder=sub, revision=cfg.revision), sub
                break
            except (OSError, ValueError) as err:
                last = err
        if vae_config is None:
            raise missing("autoencoder", " or ".join(subs), last) from last
        classes = {"AutoencoderKL": AutoencoderKL, "VQModel": VQModel}
        if vae_config.get("_class_name") not in classes:
            raise ValueError(f"{cfg.generator}/{vae_sub}: the ldm backend needs an AutoencoderKL or VQModel, "
                             f"found {vae_config.get('_class_name')}")
        unet_class = load("UNet", "unet", UNet2DModel.load_config).get("_class_name")
        if unet_class != "UNet2DModel":
            raise ValueError(f"{cfg.generator}/unet is a {unet_class}: the ldm backend needs an unconditional "
                             "UNet2DModel (for a text-to-image repo's autoencoder use latent.backend=vae with "
                             "latent.subfolder=vae)")
        vae = load("autoencoder", vae_sub, classes[vae_config["_class_name"]].from_pretrained)
        unet = load("UNet", "unet", UNet2DModel.from_pretrained)
        scheduler_config = load("scheduler", "scheduler", DDIMScheduler.load_config)
        digest = None
        if looks_local:
            h = hashlib.sha256()
            for sub in (vae_sub, "unet", "scheduler"):
                h.update(sub.encode())
                h.update(_folder_digest(local / sub).encode())
            digest = h.hexdigest()
        self._source = {"generator": cfg.generator, "revision": cfg.revision, "subfolder": vae_sub,
                        "sha256": digest,
                        "commit": None if looks_local else _hub_commit(cfg.generator, "unet", cfg.revision)}
        return vae, unet, scheduler_config

    def source(self) -> dict[str, Any]:
        return self._source

    def decoder_module(self) -> nn.Module:
        parts = {"unet": self.unet, "decoder": self.vae.decoder}
        if getattr(self.vae, "post_quant_conv", None) is not None:
            parts["post_quant_conv"] = self.vae.post_quant_conv
        if self.is_vq:
            parts["quantize"] = self.vae.quantize  # its codebook is used by every decode
        return nn.ModuleDict(parts)

    def model(self, x: Tensor, t: int) -> Tensor:
        """The UNet's prediction at timestep t (class-conditional UNets get latent.class_index)."""
        labels = None
        if self.class_conditional:
            labels = torch.full((len(x),), self.cfg.class_index, dtype=torch.long, device=x.device)
        return self.unet(x, t, class_labels=labels).sample

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """(n,3,S,S) in [0,1] -> the scaled clean latents x_0 the UNet works on."""
        x = resize(images.to(self.device, torch.float32), self.resolution).clamp(0, 1) * 2 - 1
        h = self.vae.encode(x).latents if self.is_vq else self.vae.encode(x).latent_dist.mean
        return (h - self.shift) * self.scaling

    def to_images(self, z: Tensor) -> Tensor:
        """Scaled clean latents -> (n,3,S,S) images in [0,1] (VQ decoders quantise first, as LDMPipeline)."""
        x = self.vae.decode(z / self.scaling + self.shift).sample
        return resize((x.float() + 1) / 2, self.image_size).clamp(0, 1)

    def init_latents(self, images: Tensor, labels: list[int] | Tensor) -> Latents:
        images = self.check_init_images(images, labels)
        cs, iters = self.chunk_size, self.cfg.ldm_invert_iters
        z0 = torch.cat([self.encode(images[i:i + cs]) for i in range(0, len(images), cs)])
        # contiguous: UNet outputs can be channels-last, and a reloaded (contiguous) copy of the
        # codes would then take other conv kernels and decode ~1e-6 differently
        noise = torch.cat([ddim.invert(self.model, z0[i:i + cs], self.schedule, iters)
                           for i in range(0, len(z0), cs)]).contiguous()
        with torch.no_grad():  # how far sampling lands from the encoded latents: the inversion's error
            back = torch.cat([ddim.sample(self.model, noise[i:i + cs], self.schedule) for i in range(0, len(z0), cs)])
        err = float((back - z0).norm() / z0.norm().clamp_min(1e-12))
        self.init_report.update(ldm_steps=self.cfg.ldm_steps, ldm_invert_iters=iters, latent_rel_error=err)
        log.info("DDIM inversion (%d steps, %d refinements): sampling returns the latents with relative error %.4f",
                 self.cfg.ldm_steps, iters, err)
        return self.set_latents({"noise": noise}, labels)

    def decode(self, latents: Latents) -> Tensor:
        z = ddim.sample(self.model, latents["noise"], self.schedule, checkpoint=self.cfg.ldm_checkpoint)
        return self.to_images(z)
