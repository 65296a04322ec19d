"""LPIPS (Zhang et al., CVPR 2018) with the AlexNet backbone, without ever downloading.

The ``lpips`` package ships its learned linear heads, but the AlexNet backbone comes from
torchvision's ImageNet checkpoint, which torchvision would download on first use. Here the
backbone is built empty and filled only from torch's hub cache
(``torch.hub.get_dir()/checkpoints/alexnet-owt-7be5be79.pth``), after checking the file's
SHA-256 against the prefix torchvision puts in the file name. When the file is absent or
wrong the metric is unavailable: calls return ``None`` and ``missing_reason`` says which
file to put where. A number computed with random backbone weights is never reported.
"""

from __future__ import annotations

import logging
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from hf_srdistill.io import sha256_file

__all__ = ["LPIPSMetric", "ALEXNET_URL", "alexnet_checkpoint_path"]

logger = logging.getLogger(__name__)

# torchvision's AlexNet_Weights.IMAGENET1K_V1; lpips(net="alex") uses its `features`.
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
ALEXNET_FILE = ALEXNET_URL.rsplit("/", 1)[1]
ALEXNET_SHA256_PREFIX = re.search(r"-([0-9a-f]+)\.pth$", ALEXNET_FILE).group(1)  # type: ignore[union-attr]


def alexnet_checkpoint_path() -> Path:
    """Where torchvision caches the AlexNet checkpoint (follows TORCH_HOME / XDG_CACHE_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE



_WARNED: set[str] = set()


class LPIPSMetric:
    """``metric(img, img2)`` -> LPIPS distance (lower is better) or ``None`` when unavailable.

    ``verify_hash=False`` skips the checksum (only for tests that exercise the loading code
    with stand-in weights).
    """

    def __init__(self, device: str | torch.device | None = None, verify_hash: bool = True) -> None:
        self.device = torch.device(device or "cpu")
        self.checkpoint = alexnet_checkpoint_path()
        self.net = None
        self.missing_reason: str | None = None
        try:
            self.net = self._build(verify_hash)
        except (FileNotFoundError, ValueError, RuntimeError, KeyError, ImportError) as e:
            self.missing_reason = str(e)
            if self.missing_reason not in _WARNED:  # once per process, however many metrics are built
                _WARNED.add(self.missing_reason)
                logger.warning("LPIPS reported as absent: %s", e)

    @property
    def available(self) -> bool:
        return self.net is not None

    def _build(self, verify_hash: bool):
        path = self.checkpoint
        if not path.is_file():
            raise FileNotFoundError(
                f"LPIPS needs torchvision's AlexNet ImageNet weights at {path} (file {ALEXNET_FILE}, "
                f"from {ALEXNET_URL}); download it where there is internet and copy it there, or "
                f"set TORCH_HOME to a folder whose hub/checkpoints/ holds it")
        if verify_hash and not (digest := sha256_file(path)).startswith(ALEXNET_SHA256_PREFIX):
            raise ValueError(f"{path} has SHA-256 {digest[:16]}..., expected a digest starting with "
                             f"{ALEXNET_SHA256_PREFIX}: corrupt or not torchvision's {ALEXNET_FILE}; "
                             f"replace it with the file from {ALEXNET_URL}")
        import lpips

        with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=`
            warnings.simplefilter("ignore", UserWarning)
            # pnet_rand=True: build the backbone empty (no download); the linear heads come
            # from the lpips package itself.
            net = lpips.LPIPS(net="alex", version="0.1", pnet_rand=True, verbose=False)
        state = torch.load(path, map_location="cpu", weights_only=True)
        # lpips keeps torchvision's layer indices inside its slices: slice2.3.weight is features.3.weight
        backbone = {name: state[f"features.{name.split('.', 1)[1]}"] for name in net.net.state_dict()}
        net.net.load_state_dict(backbone, strict=True)
        return net.eval().requires_grad_(False).to(self.device)

    @torch.no_grad()
    def batch(self, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor | None:
        """Per-image LPIPS of (N,3,H,W) batches in [0, 1]; ``None`` when unavailable."""
        if self.net is None:
            return None
        if sr.shape != hr.shape or sr.ndim != 4 or sr.shape[1] != 3:
            raise ValueError(f"expected two (N, 3, H, W) batches of equal shape, got {tuple(sr.shape)}, "
                             f"{tuple(hr.shape)}")
        d = self.net(sr.to(self.device, torch.float32), hr.to(self.device, torch.float32), normalize=True)
        return d.flatten().cpu()

    def __call__(self, img: np.ndarray, img2: np.ndarray, crop_border: int = 0) -> float | None:
        """LPIPS of two HWC uint8 RGB images (optionally border-cropped); ``None`` when unavailable."""
        if self.net is None:
            return None
        for name, x in (("img", img), ("img2", img2)):
            if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 3 or x.shape[2] != 3:
                raise ValueError(f"{name} must be an HWC uint8 RGB array, got "
                                 f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}")
        if crop_border:
            img = img[crop_border:-crop_border, crop_border:-crop_border]
            img2 = img2[crop_border:-crop_border, crop_border:-crop_border]

        def to_batch(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float() / 255.0

        return float(self.batch(to_batch(img), to_batch(img2))[0])  # type: ignore[index]
