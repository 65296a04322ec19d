"""``vae`` backend: distil in a diffusers ``AutoencoderKL``'s latent space.

Any AutoencoderKL: a Hub id or a local ``save_pretrained`` folder; for the VAE of a
Stable-Diffusion repo set ``latent.subfolder=vae``. Codes start as the posterior mean of the
init images (the deterministic choice: a sample would add noise the optimiser then has to
undo) and are stored scaled, ``(mean - shift_factor) * scaling_factor``, the convention
latent-diffusion models use, so their magnitude is about 1 whatever the VAE and one learning
rate fits all. The prior is the VAE decoder's alone; ``ldm`` (:mod:`.diffusers_ldm`) adds a
diffusion UNet on top.
"""

from __future__ import annotations

import hashlib
import math
from functools import reduce
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hf_srdistill.config import LatentConfig
from hf_srdistill.latent.base import GeneratorNotFoundError, LatentBackend, Latents


def untrained_vae(channels: list[int], seed: int) -> nn.Module:
    """A small randomly initialised AutoencoderKL (diffusers' test-style config), seeded."""
    from diffusers import AutoencoderKL

    n = len(channels)
    groups = min(32, reduce(math.gcd, channels))  # GroupNorm groups must divide every width
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderKL(block_out_channels=list(channels), down_block_types=["DownEncoderBlock2D"] * n,
                             up_block_types=["UpDecoderBlock2D"] * n, latent_channels=4,
                             norm_num_groups=groups, layers_per_block=1)


def _folder_digest(folder: Path) -> str:
    """sha256 over the weight files of a local model folder (name + bytes, sorted)."""
    h = hashlib.sha256()
    for f in sorted(folder.glob("*")):
        if f.suffix in (".safetensors", ".bin", ".json"):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def _hub_commit(repo_id: str, subfolder: str | None, revision: str | None) -> str | None:
    """The snapshot commit the Hub cache resolved for this model (what from_pretrained read)."""
    from huggingface_hub import try_to_load_from_cache

    name = f"{subfolder}/config.json" if subfolder else "config.json"
    path = try_to_load_from_cache(repo_id, name, revision=revision)
    parts = Path(path).parts if isinstance(path, str) else ()
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None


class VAEBackend(LatentBackend):
    """Scaled posterior-mean latents of a diffusers AutoencoderKL."""

    name = "vae"

    def __init__(self, cfg: LatentConfig, image_size: int, device: str | torch.device = "cpu",
                 seed: int = 0) -> None:
        super().__init__(cfg, image_size, device, seed)
        self.subfolder = cfg.subfolder
        self.vae = self._load().eval().requires_grad_(False).to(self.device)
        factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        if image_size % factor:
            raise ValueError(f"distill.image_size={image_size} must be divisible by the VAE's "
                             f"downsampling factor {factor}")
        self.scaling = float(self.vae.config.scaling_factor)
        self.shift = float(self.vae.config.get("shift_factor") or 0.0)

    def _load(self) -> nn.Module:
        cfg = self.cfg
        if cfg.generator is None:
            if cfg.vae_channels is None:
                raise GeneratorNotFoundError(
                    f"latent.backend={self.name} needs latent.generator: a diffusers model folder or Hub id "
                    "of an AutoencoderKL (e.g. stabilityai/sd-vae-ft-mse), or latent.vae_channels for an "
                    "untrained VAE (smoke runs only)")
            self._source = {"untrained": True, "vae_channels": list(cfg.vae_channels), "seed": self.seed}
            self.modified_generator.append("untrained")
            return untrained_vae(cfg.vae_channels, self.seed)
        from diffusers import AutoencoderKL

        local = Path(cfg.generator).expanduser()
        looks_local = local.exists() or cfg.generator.startswith(("/", ".", "~"))
        if looks_local and not local.is_dir():
            raise GeneratorNotFoundError(f"latent.generator={cfg.generator}: no such model folder")
        try:
            vae = AutoencoderKL.from_pretrained(str(local) if looks_local else cfg.generator,
                                                subfolder=self.subfolder, revision=cfg.revision)
        except (OSError, ValueError) as err:
            raise GeneratorNotFoundError(
                f"could not load an AutoencoderKL from {cfg.generator!r} (subfolder={self.subfolder!r}): {err}. "
                "Offline, download it beforehand (huggingface-cli download <id>) or point latent.generator "
                "at a local save_pretrained folder.") from err
        folder = local / (self.subfolder or "") if looks_local else None
        self._source = {"generator": cfg.generator, "subfolder": self.subfolder, "revision": cfg.revision,
                        "sha256": _folder_digest(folder) if folder else None,
                        "commit": None if looks_local else _hub_commit(cfg.generator, self.subfolder, cfg.revision)}
        return vae

    def source(self) -> dict[str, Any]:
        return self._source

    def decoder_module(self) -> nn.Module:
        parts = {"decoder": self.vae.decoder}
        if getattr(self.vae, "post_quant_conv", None) is not None:
            parts["post_quant_conv"] = self.vae.post_quant_conv
        return nn.ModuleDict(parts)

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        out = []
        for i in range(0, len(images), self.chunk_size):
            x = images[i:i + self.chunk_size].to(self.device, torch.float32) * 2 - 1
            out.append((self.vae.encode(x).latent_dist.mean - self.shift) * self.scaling)
        return torch.cat(out)

    def init_latents(self, images: Tensor, labels: list[int] | Tensor) -> Latents:
        return self.set_latents({"z": self.encode(self.check_init_images(images, labels))}, labels)

    def decode(self, latents: Latents) -> Tensor:
        x = self.vae.decode(latents["z"] / self.scaling + self.shift).sample
        return ((x.float() + 1) / 2).clamp(0, 1)
