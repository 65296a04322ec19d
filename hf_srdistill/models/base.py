"""What every SR model here shares: the Hub mixin, the saved ``arch`` name, strict loading.

``PyTorchModelHubMixin`` records the constructor arguments in ``config.json``; we add the
registry name (``arch``) so :func:`hf_srdistill.models.load_model` can rebuild the right
class from a folder or Hub repo alone. The mixin loads weights with ``strict=False`` by
default, which would silently leave layers at their random init when a checkpoint does
not fit; SR checkpoints here always fit exactly, so loading is strict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import nn

SCALES = (2, 3, 4)


class SRModel(
    nn.Module,
    PyTorchModelHubMixin,
    library_name="hf_srdistill",
    pipeline_tag="image-to-image",
    # a bare save_pretrained knows nothing of the training data: "other", the rule the full card
    # (hub.model_card.model_license, written when training ends and at push) applies
    license="other",
    tags=["super-resolution", "image-to-image", "hf_srdistill"],
):
    """Base class: LR (N,3,h,w) in [0,1] -> SR (N,3,h*scale,w*scale), unclamped."""

    arch: ClassVar[str]  # registry name, written to config.json
    scale: int

    @staticmethod
    def check_scale(name: str, scale: int) -> int:
        if isinstance(scale, bool) or scale not in SCALES:
            raise ValueError(f"{name}: scale must be one of {SCALES}, got {scale!r}")
        return int(scale)

    @staticmethod
    def check_input(x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected an LR batch of shape (N, 3, h, w), got {tuple(x.shape)}")

    def save_pretrained(self, save_directory: str | Path, *, config: dict | None = None,
                        **kwargs: Any) -> str | None:
        config = dict(self._hub_mixin_config or {}) if config is None else dict(config)
        config["arch"] = self.arch
        return super().save_pretrained(save_directory, config=config, **kwargs)

    @classmethod
    def _from_pretrained(cls, *, strict: bool = True, **kwargs: Any):  # type: ignore[override]
        return super()._from_pretrained(strict=strict, **kwargs)
