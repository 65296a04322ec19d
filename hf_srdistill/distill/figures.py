"""Image grids of a synthetic set: the final samples and the evolution over iterations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from hf_srdistill.io import atomic_path

# snapshots are stored as small uint8 thumbnails so that long runs keep them in memory
THUMB = 64
PAD = 2


def thumbnail(images: torch.Tensor, side: int = THUMB) -> torch.Tensor:
    """(N,3,S,S) float [0,1] -> (N,3,t,t) uint8 with t = min(S, side), area-averaged."""
    x = images.detach().float().cpu().clamp(0, 1)
    if x.shape[-1] > side:
        x = torch.nn.functional.interpolate(x, size=(side, side), mode="area")
    return (x * 255 + 0.5).floor().to(torch.uint8)


def grid(images: torch.Tensor, ncol: int) -> np.ndarray:
    """(N,3,h,w) uint8 or float [0,1] -> HWC uint8 grid with white padding, ncol columns."""
    x = images if images.dtype == torch.uint8 else thumbnail(images, side=images.shape[-1])
    n, _, h, w = x.shape
    nrow = max(1, -(-n // ncol))
    out = np.full((nrow * (h + PAD) + PAD, ncol * (w + PAD) + PAD, 3), 255, dtype=np.uint8)
    for i in range(n):
        r, c = divmod(i, ncol)
        y, xx = PAD + r * (h + PAD), PAD + c * (w + PAD)
        out[y:y + h, xx:xx + w] = x[i].permute(1, 2, 0).numpy()
    return out


def save_png(img: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")
    return path


def evolution_figure(snapshots: torch.Tensor, iterations: list[int], max_cols: int = 8) -> np.ndarray:
    """Rows = classes, columns = iterations (at most ``max_cols``, evenly spaced, last kept).

    snapshots: (T, R, 3, t, t) uint8. A strip on top names each column's iteration.
    """
    t = snapshots.shape[0]
    cols = sorted(set(np.linspace(0, t - 1, min(t, max_cols)).round().astype(int).tolist()))
    chosen = snapshots[cols]  # (C, R, 3, h, w)
    body = grid(chosen.transpose(0, 1).reshape(-1, *chosen.shape[2:]), ncol=len(cols))
    side = snapshots.shape[-1]
    header = Image.new("RGB", (body.shape[1], 14), "white")
    draw = ImageDraw.Draw(header)
    for j, k in enumerate(cols):
        draw.text((PAD + j * (side + PAD) + 2, 1), f"it {iterations[k]}", fill="black")
    return np.concatenate([np.asarray(header), body], axis=0)
