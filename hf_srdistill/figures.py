"""Figures that label themselves: text drawn with matplotlib's Agg canvas.

No pyplot and no global backend or rcParams change: each figure is a ``Figure`` with its own
``FigureCanvasAgg`` (as ``history.plot_loss_curve`` does). Text is DejaVu Sans (shipped with
matplotlib), measured with the Agg renderer, so labels are wrapped to fit their tile instead
of being cut: a name is broken after ``_``, ``-``, ``/``, ``.`` or a space, and a single piece
wider than the tile is broken between characters; joined again, the lines give the full name.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

# a power of two: figsize = pixels / DPI is exact in binary, so the canvas has exactly the pixels asked for
DPI = 64
FONT = "DejaVu Sans"
PAD = 3  # px around text
LINESPACING = 1.2

Fits = Callable[[str], bool]


def _pt(px: float) -> float:
    return px * 72.0 / DPI


@functools.lru_cache(maxsize=1)
def _renderer():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    return FigureCanvasAgg(Figure(dpi=DPI)).get_renderer()


@functools.lru_cache(maxsize=4096)
def text_width(text: str, font_px: float) -> float:
    """Width in pixels of the widest line of ``text`` at ``font_px`` (Agg renderer, DejaVu Sans)."""
    from matplotlib.font_manager import FontProperties

    prop = FontProperties(family=FONT, size=_pt(font_px))
    return max(_renderer().get_text_width_height_descent(line, prop, ismath=False)[0] if line else 0.0
               for line in text.split("\n"))


def fits_width(width_px: float, font_px: float) -> Fits:
    return lambda s: text_width(s, font_px) <= width_px


def line_height(font_px: float) -> float:
    return font_px * LINESPACING * 1.17  # DejaVu's ascent + descent is 1.164 em


def text_height(n_lines: int, font_px: float) -> int:
    """Pixels a block of ``n_lines`` lines takes, padding included."""
    return int(math.ceil(n_lines * line_height(font_px))) + 2 * PAD


def font_px_for(tile: int) -> int:
    """The label font size for a tile ``tile`` pixels wide: 8 to 11 px."""
    return int(max(8, min(11, tile // 10)))


NAME_BREAKS = "_-/. "


def wrap_text(text: str, fits: Fits, breaks: str = NAME_BREAKS) -> list[str]:
    """Greedy wrap of one line so that every piece ``fits``; nothing is dropped.

    Breaks after any character of ``breaks`` (trailing spaces are dropped from a line); a piece
    that does not fit on its own is broken between characters.
    """
    if fits(text):
        return [text]
    pieces: list[str] = []
    for piece in (p for p in re.split(f"(?<=[{re.escape(breaks)}])", text) if p):
        while not fits(piece.rstrip()) and len(piece) > 1:  # hard break a too-long piece
            cut = max(1, max((k for k in range(1, len(piece)) if fits(piece[:k])), default=1))
            pieces.append(piece[:cut])
            piece = piece[cut:]
        pieces.append(piece)
    lines: list[str] = []
    current = ""
    for piece in pieces:
        if current and not fits((current + piece).rstrip()):
            lines.append(current.rstrip())
            current = piece
        else:
            current += piece
    if current.strip() or not lines:
        lines.append(current.rstrip())
    return lines


def format_psnr(psnr: float) -> str:
    return "∞" if math.isinf(psnr) else f"{psnr:.2f}"


def tile_label(name: str, psnr: float | None = None, ssim: float | None = None, fits: Fits | None = None) -> str:
    """The text under a tile: its full name, then ``PSNR 31.20 dB / SSIM 0.9012``.

    With ``fits`` (a width test), the metrics go on two lines when one is too wide and every line
    is wrapped to fit; without it the label is ``name\\nPSNR .. dB / SSIM ..``.
    """
    lines = [name]
    if psnr is not None:
        p = f"PSNR {format_psnr(psnr)} dB"
        s = f"SSIM {ssim:.4f}" if ssim is not None else ""
        both = f"{p} / {s}" if s else p
        lines += [both] if fits is None or fits(both) else [p] + ([s] if s else [])
    if fits is not None:  # names break after _ - / . and spaces, the numbers only at spaces
        lines = [w for k, line in enumerate(lines) for w in wrap_text(line, fits, NAME_BREAKS if k == 0 else " ")]
    return "\n".join(lines)


# ---- drawing ----------------------------------------------------------------------------

def _figure(width: int, height: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    return fig


def _put_text(fig, x_px: float, y_top_px: float, text: str, font_px: float, ha: str = "center") -> None:
    width, height = fig.bbox.width, fig.bbox.height
    fig.text(x_px / width, 1 - y_top_px / height, text, ha=ha, va="top", multialignment=ha,
             fontsize=_pt(font_px), fontfamily=FONT, linespacing=LINESPACING, color="black", parse_math=False)


def render(fig) -> np.ndarray:
    """The figure's pixels, (h, w, 3) uint8, exactly ``figsize * DPI``."""
    fig.canvas.draw()
    arr = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    want = (int(round(fig.bbox.height)), int(round(fig.bbox.width)))
    if arr.shape[:2] != want:  # never seen with DPI a power of two; keep the promised size anyway
        out = np.full((*want, 3), 255, np.uint8)
        h, w = min(want[0], arr.shape[0]), min(want[1], arr.shape[1])
        out[:h, :w] = arr[:h, :w]
        arr = out
    return arr


def labelled_row_figure(tiles: np.ndarray, tile: int, labels: Sequence[str], font_px: float,
                        band: int | None = None):
    """A figure: ``tiles`` (h, n*tile, 3) on top, pixel for pixel, and a band under it with
    ``labels[i]`` centred under tile i. The band is as tall as the longest label needs unless
    given. Returns ``(figure, band_height)``."""
    if band is None:
        band = text_height(max((label.count("\n") + 1 for label in labels), default=1), font_px)
    h, w = tiles.shape[:2]
    fig = _figure(w, h + band)
    fig.figimage(np.ascontiguousarray(tiles), xo=0, yo=band, origin="upper")
    for i, label in enumerate(labels):
        _put_text(fig, (i + 0.5) * tile, h + PAD, label, font_px)
    return fig, band


def text_strip(text: str, width: int, height: int | None = None, font_px: float = 10, ha: str = "left") -> np.ndarray:
    """A white (height, width, 3) strip with ``text`` wrapped to the width (never cut).

    ``height`` is a minimum: the strip grows to hold every wrapped line; text is vertically
    centred in it.
    """
    lines = [w for line in text.split("\n") for w in wrap_text(line, fits_width(width - 2 * PAD, font_px))] if text else []
    need = text_height(max(len(lines), 1), font_px)
    h = max(height or 0, need)
    fig = _figure(width, h)
    if lines:
        x = PAD if ha == "left" else width / 2
        _put_text(fig, x, (h - need) / 2 + PAD, "\n".join(lines), font_px, ha=ha)
    return render(fig)


def save_pdf(fig, path: str | Path) -> Path:
    from hf_srdistill.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), format="pdf", dpi=DPI)
    return path


def save_png(fig, path: str | Path) -> Path:
    from hf_srdistill.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), format="png", dpi=DPI)
    return path
