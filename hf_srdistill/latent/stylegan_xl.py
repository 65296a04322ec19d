"""StyleGAN-XL backend: GLaD-style distillation in a pretrained GAN's latent space.

Sauer et al., "StyleGAN-XL: Scaling StyleGAN to Large Diverse Datasets" (SIGGRAPH 2022);
Cazenavette et al., "Generalizing Dataset Distillation via Deep Generative Prior" (GLaD,
CVPR 2023). Codes are either W+ (one w per synthesis input, ``layer=None``) or GLaD's
intermediate codes: with ``layer=L`` (GLaD's ``f_layer``; it uses 16 for gradient
matching on ImageNet-512), the feature map after the first L synthesis layers (L=0: the
Fourier-feature input) plus the w's of the remaining layers. The generator output (512 px for ImageNet-512) is brought to the synthetic size
with the project's MATLAB bicubic, so the SR degradation sees the same kernel everywhere.
Loading the pickle lives in :mod:`hf_srdistill.latent.network_pickle`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hf_srdistill.config import LatentConfig
from hf_srdistill.data.imresize import imresize, output_size
from hf_srdistill.latent.base import LatentBackend, Latents
from hf_srdistill.latent.network_pickle import load_network


class StyleGANXLBackend(LatentBackend):
    """W+ or layer-L codes of a StyleGAN(-XL) generator; init by inversion + pivotal tuning."""

    name = "stylegan_xl"

    def __init__(self, cfg: LatentConfig, image_size: int, device: str | torch.device = "cpu",
                 seed: int = 0) -> None:
        super().__init__(cfg, image_size, device, seed)
        G, self._source = load_network(cfg)
        self.G = G.eval().requires_grad_(False).to(self.device)
        self.resolution = int(G.img_resolution)
        if output_size(self.resolution, image_size / self.resolution) != image_size:
            raise ValueError(f"cannot bicubic-resize {self.resolution} px to exactly {image_size} px")
        syn = G.synthesis
        if cfg.layer is not None:
            names = getattr(syn, "layer_names", None)
            if names is None or not hasattr(syn, "input"):
                raise ValueError("latent.layer needs a StyleGAN3-style synthesis network "
                                 "(synthesis.input and synthesis.layer_names); use layer=None for W+ codes")
            if cfg.layer >= len(names):
                raise ValueError(f"latent.layer={cfg.layer} must be below the number of synthesis "
                                 f"layers, {len(names)}")
        self.c = torch.zeros(1, int(G.c_dim), device=self.device)
        if G.c_dim:
            if cfg.class_index >= G.c_dim:
                raise ValueError(f"latent.class_index={cfg.class_index} but the generator has {G.c_dim} classes")
            self.c[0, cfg.class_index] = 1

    def source(self) -> dict[str, Any]:
        return self._source

    def decoder_module(self) -> nn.Module:
        return self.G.synthesis

    def generator_parameters(self) -> list[nn.Parameter]:
        """With layer-L codes only layers L.. decode them; earlier weights are not optimised."""
        params = super().generator_parameters()
        if not params or self.cfg.layer is None:
            return params
        syn = self.G.synthesis
        keep = [p for name in syn.layer_names[self.cfg.layer:] for p in getattr(syn, name).parameters()]
        keep_ids = {id(p) for p in keep}
        for p in params:
            p.requires_grad_(id(p) in keep_ids)
        return keep

    def mapping(self, z: Tensor) -> Tensor:
        return self.G.mapping(z, self.c.expand(len(z), -1))

    def to_images(self, raw: Tensor, clamp: bool = True) -> Tensor:
        """Generator output in [-1,1] at R px -> [0,1] at S px (unclamped for inversion losses)."""
        x = (raw.float() + 1) / 2
        if self.resolution != self.image_size:
            x = imresize(x, self.image_size / self.resolution)
        return x.clamp(0, 1) if clamp else x

    def _run_layers(self, x: Tensor, ws: Tensor, start: int, stop: int | None = None) -> Tensor:
        """Synthesis layers start..stop-1 on features x, one w per layer (StyleGAN3 contract)."""
        syn = self.G.synthesis
        for name, w in zip(syn.layer_names[start:stop], ws.float().unbind(1)):
            x = getattr(syn, name)(x, w)
        return x

    def codes_from_ws(self, ws: Tensor) -> Latents:
        """W+ codes, or GLaD's (features after the first L layers, w's of layers L..) for ``ws``."""
        n = self.cfg.layer
        if n is None:
            return {"ws": ws}
        ws = ws.float()
        feats = self._run_layers(self.G.synthesis.input(ws[:, 0]), ws[:, 1:], 0, n)
        return {"features": feats.float(), "ws": ws[:, n + 1:]}

    def synthesize(self, latents: Latents) -> Tensor:
        """Raw generator output in [-1, 1] at the generator's resolution."""
        if self.cfg.layer is None:
            return self.G.synthesis(latents["ws"])
        x = self._run_layers(latents["features"], latents["ws"], self.cfg.layer)
        scale = getattr(self.G.synthesis, "output_scale", 1)
        return (x * scale if scale != 1 else x).float()

    def decode(self, latents: Latents) -> Tensor:
        return self.to_images(self.synthesize(latents))

    def init_latents(self, images: Tensor, labels: list[int] | Tensor) -> Latents:
        from hf_srdistill.latent.inversion import invert, pivotal_tune

        images = self.check_init_images(images, labels)
        w = invert(self, images)
        if self.cfg.tune_steps:
            pivotal_tune(self, w, images)
        ws = w.expand(-1, int(self.G.num_ws), -1)
        with torch.no_grad():
            parts = [self.codes_from_ws(ws[i:i + self.chunk_size]) for i in range(0, len(ws), self.chunk_size)]
        return self.set_latents({k: torch.cat([p[k] for p in parts]) for k in parts[0]}, labels)
