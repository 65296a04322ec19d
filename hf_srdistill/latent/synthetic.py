"""What the distillation engine holds instead of a pixel tensor when ``distill.init=latent``.

The engine's objective is unchanged: each outer step it takes ``images()`` (a leaf pixel
tensor decoded without a graph), backpropagates its gradient-matching loss into
``images.grad`` exactly as for pixel distillation, then calls ``step(images)``, which
pushes that pixel gradient through the generator chunk by chunk and steps SGD on the
codes (and, if configured, the generator weights).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from hf_srdistill.config import LatentConfig
from hf_srdistill.latent.base import LatentBackend, backward_through_decoder, decode_all
from hf_srdistill.latent.state import save_latents


def _copy(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in tensors.items()}


class LatentSynthetic:
    """Synthetic images parameterised by a backend's codes, with their optimiser."""

    def __init__(self, backend: LatentBackend, momentum: float = 0.5) -> None:
        if not backend.latents:
            raise ValueError("the backend has no latents: call init_latents or load_latents first")
        self.backend = backend
        groups = [{"params": backend.latent_tensors(), "lr": backend.cfg.lr_latent}]
        gen_params = backend.generator_parameters()
        if gen_params:
            groups.append({"params": gen_params, "lr": backend.cfg.lr_generator})
        self.optimizer = torch.optim.SGD(groups, momentum=momentum)
        self._images: Tensor | None = None
        # the decoded initialisation: the "GAN inversion" baseline set for stylegan_xl
        self.initial_images = self.images().detach().cpu().clone()

    @classmethod
    def build(cls, cfg: LatentConfig, init_images: Tensor, labels: list[int] | Tensor,
              device: str | torch.device = "cpu", seed: int = 0, momentum: float = 0.5) -> "LatentSynthetic":
        """Load the generator, invert/encode ``init_images`` (N,3,S,S) in [0,1], set up SGD."""
        from hf_srdistill.latent import build_backend

        backend = build_backend(cfg, int(init_images.shape[-1]), device=device, seed=seed)
        backend.init_latents(init_images, labels)
        return cls(backend, momentum)

    def images(self) -> Tensor:
        """(N,3,S,S) current images: a leaf that requires grad, for the pixel objective."""
        if self._images is None:
            self._images = decode_all(self.backend).requires_grad_(True)
        return self._images

    def step(self, images: Tensor) -> None:
        """Apply ``images.grad`` (dL/dx) to the codes: chunked backward, one SGD step."""
        if images is not self._images:
            raise ValueError("step() needs the tensor returned by images() in this step")
        if images.grad is None:
            raise ValueError("images.grad is empty: backpropagate the distillation loss first")
        self.optimizer.zero_grad(set_to_none=True)
        backward_through_decoder(self.backend, images.grad)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._images = None

    def state_dict(self) -> dict[str, Any]:
        """For engine checkpoints: codes, optimiser state and (if changed) decoder weights.

        A snapshot (copies), so later steps do not alter a checkpoint that is still being written.
        """
        b = self.backend
        state = {"latents": _copy(b.latents), "labels": list(b.labels),
                 "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                 "modified_generator": list(b.modified_generator), "init_report": dict(b.init_report),
                 "initial_images": self.initial_images.clone()}
        if b.modified_generator or b.cfg.train_generator:
            state["generator"] = _copy(b.decoder_module().state_dict())
        return state

    @classmethod
    def from_state_dict(cls, cfg: LatentConfig, image_size: int, state: dict[str, Any],
                        device: str | torch.device = "cpu", seed: int = 0,
                        momentum: float = 0.5) -> "LatentSynthetic":
        """Resume from :meth:`state_dict` without repeating the inversion/tuning."""
        from hf_srdistill.latent import build_backend

        backend = build_backend(cfg, image_size, device=device, seed=seed)
        if "generator" in state:
            backend.decoder_module().load_state_dict(state["generator"])
        backend.modified_generator = list(state["modified_generator"])
        backend.init_report = dict(state["init_report"])
        backend.set_latents(state["latents"], state["labels"])
        synthetic = cls(backend, momentum)
        synthetic.optimizer.load_state_dict(state["optimizer"])
        synthetic.initial_images = state["initial_images"]
        return synthetic

    def save(self, folder: str | Path) -> dict[str, Any]:
        """latents.safetensors + latent_meta.json (+ generator.safetensors) in ``folder``."""
        return save_latents(self.backend, folder)


def gan_inversion_images(cfg: LatentConfig, images: Tensor, labels: list[int] | Tensor,
                         device: str | torch.device = "cpu", seed: int = 0) -> Tensor:
    """The inversion baseline: (N,3,S,S) decoded initial codes, with no distillation step."""
    from hf_srdistill.latent import build_backend

    backend = build_backend(cfg, int(images.shape[-1]), device=device, seed=seed)
    backend.init_latents(images, labels)
    return decode_all(backend).cpu()
