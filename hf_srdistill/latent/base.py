"""The latent-backend interface and the chunked decode/backward that the engine relies on.

A backend turns a dict of named code tensors (every tensor's first dim indexes the images)
into images in [0, 1] at the synthetic size. Distillation keeps its pixel-space objective:
the engine decodes all images without a graph, computes dL/dx in pixel space, and
:func:`backward_through_decoder` re-decodes chunk by chunk calling ``backward(dL/dx_chunk)``.
Because each image depends only on its own codes (and the shared generator weights), the
accumulated gradients equal those of one full backward, while activation memory is bounded
by ``chunk_size`` instead of IPC x classes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from hf_srdistill.config import LatentConfig

Latents = dict[str, Tensor]


class GeneratorNotFoundError(FileNotFoundError):
    """The generator weights (or the code needed to load them) are not on this machine."""


class LatentBackend(ABC):
    """A generator whose codes are optimised; subclasses load it in ``__init__``."""

    name: ClassVar[str]

    def __init__(self, cfg: LatentConfig, image_size: int, device: str | torch.device = "cpu",
                 seed: int = 0) -> None:
        self.cfg = cfg
        self.image_size = image_size
        self.chunk_size = cfg.chunk_size
        self.device = torch.device(device)
        self.seed = seed
        self.latents: Latents = {}
        self.labels: list[int] = []
        # why the decoder weights differ from their source ("pivotal tuning", "untrained");
        # train_generator adds "trained with the latents" when saved. Empty = they don't.
        self.modified_generator: list[str] = []
        self.init_report: dict[str, Any] = {}

    # ---- what a backend implements ------------------------------------------------------

    @abstractmethod
    def init_latents(self, images: Tensor, labels: list[int] | Tensor) -> Latents:
        """Invert/encode (N,3,S,S) images in [0,1] into codes; sets and returns ``self.latents``."""

    @abstractmethod
    def decode(self, latents: Latents) -> Tensor:
        """Differentiable: codes of n images -> (n,3,S,S) images in [0,1]."""

    @abstractmethod
    def decoder_module(self) -> nn.Module:
        """The weights that decode codes: optimised when ``train_generator``, saved when modified."""

    @abstractmethod
    def source(self) -> dict[str, Any]:
        """Where the generator came from (id, revision, checksum): recorded in latent_meta.json."""

    # ---- shared behaviour ---------------------------------------------------------------

    @property
    def num_images(self) -> int:
        return len(next(iter(self.latents.values()))) if self.latents else 0

    def set_latents(self, latents: Latents, labels: list[int] | Tensor) -> Latents:
        """Store codes as leaf tensors on the device that require grad (what the optimiser steps)."""
        sizes = {k: len(v) for k, v in latents.items()}
        labels = [int(x) for x in labels]
        if len(set(sizes.values())) != 1 or len(labels) != next(iter(sizes.values())):
            raise ValueError(f"latent tensors and labels must have one length, got {sizes} and "
                             f"{len(labels)} labels")
        self.latents = {k: v.detach().to(self.device, torch.float32).clone().requires_grad_(True)
                        for k, v in latents.items()}
        self.labels = labels
        return self.latents

    def check_init_images(self, images: Tensor, labels: list[int] | Tensor) -> Tensor:
        """The images to invert/encode, on the device, after checking shape, range and labels."""
        _check_images(images, len(images), self.image_size, f"{self.name}.init_latents images")
        if len(labels) != len(images):
            raise ValueError(f"{self.name}.init_latents: {len(images)} images but {len(labels)} labels")
        if not torch.isfinite(images).all() or images.min() < 0 or images.max() > 1:
            raise ValueError(f"{self.name}.init_latents: images must be finite and in [0, 1], got "
                             f"[{float(images.min()):.4g}, {float(images.max()):.4g}]")
        return images.to(self.device, torch.float32)

    def latent_tensors(self) -> list[Tensor]:
        return list(self.latents.values())

    def generator_parameters(self) -> list[nn.Parameter]:
        """Generator weights optimised with the codes (empty unless ``train_generator``)."""
        if not self.cfg.train_generator:
            return []
        params = [p for p in self.decoder_module().parameters()]
        for p in params:
            p.requires_grad_(True)
        return params


def slice_latents(latents: Latents, start: int, stop: int) -> Latents:
    return {k: v[start:stop] for k, v in latents.items()}


def _check_images(images: Tensor, n: int, size: int, what: str) -> None:
    if images.dim() != 4 or images.shape[0] != n or images.shape[1] != 3 or images.shape[-2:] != (size, size):
        raise ValueError(f"{what}: expected ({n},3,{size},{size}), got {tuple(images.shape)}")


@torch.no_grad()
def decode_all(backend: LatentBackend, latents: Latents | None = None) -> Tensor:
    """All images (N,3,S,S) in [0,1], decoded chunk by chunk without a graph."""
    latents = backend.latents if latents is None else latents
    n = len(next(iter(latents.values())))
    out = [backend.decode(slice_latents(latents, i, i + backend.chunk_size)).float()
           for i in range(0, n, backend.chunk_size)]
    # contiguous: decoders may return channels-last tensors, and the engine views the set as (K,ipc,...)
    images = torch.cat(out).contiguous() if out else torch.zeros(0, 3, backend.image_size, backend.image_size)
    _check_images(images, n, backend.image_size, f"{backend.name}.decode")
    return images


def backward_through_decoder(backend: LatentBackend, grad_images: Tensor,
                             latents: Latents | None = None) -> None:
    """Accumulate d(sum <grad_images, decode(latents)>) into the codes' and weights' ``.grad``.

    ``grad_images`` is dL/dx for all N images, as the pixel engine computed it. Chunks are
    independent, so the result equals one full backward up to float summation order.
    """
    latents = backend.latents if latents is None else latents
    n = len(next(iter(latents.values())))
    _check_images(grad_images, n, backend.image_size, "backward_through_decoder grad")
    grad_images = grad_images.to(backend.device)
    for i in range(0, n, backend.chunk_size):
        g = grad_images[i:i + backend.chunk_size]
        if not torch.any(g):  # nothing flows back (e.g. a class skipped this step)
            continue
        with torch.enable_grad():
            x = backend.decode(slice_latents(latents, i, i + backend.chunk_size))
            x.backward(g.to(x.dtype))
