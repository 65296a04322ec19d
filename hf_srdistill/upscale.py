"""Upscale real images with a saved SR model: ``hf_srdistill.upscale(model, image)`` and
``hf-srdistill upscale IN OUT --model DIR_OR_HUB_ID``.

Images are decoded by :mod:`hf_srdistill.data.images`, so grey, RGBA, 16-bit and palette
inputs become 8-bit RGB exactly as they do for training and evaluation. Large images are
processed in tiles: each LR tile of ``tile`` px is run with ``overlap`` px of real context
on every side and only its centre is kept, so for a model whose receptive field (in LR px,
including SRCNN's bicubic pre-upsampling) is below ``overlap`` the result equals the
untiled one up to float rounding, while memory stays bounded by the tile size.

The module itself is callable (``hf_srdistill.upscale(...)`` calls :func:`upscale`), so both
``import hf_srdistill; hf_srdistill.upscale(...)`` and ``from hf_srdistill.upscale import
upscale_tensor`` work.
"""

from __future__ import annotations

import argparse
import logging
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

if TYPE_CHECKING:
    from hf_srdistill.models import SRModel

__all__ = ["UpscaleArgumentError", "upscale", "upscale_tensor", "load_input", "output_paths", "main"]

log = logging.getLogger(__name__)


class UpscaleArgumentError(ValueError):
    """An input/output/tiling argument that cannot work; the message says why."""

DEFAULT_TILE = 256
DEFAULT_OVERLAP = 16


def _device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _model(model: "SRModel | str | Path") -> "SRModel":
    if isinstance(model, torch.nn.Module):
        return model
    from hf_srdistill.models import load_model

    return load_model(model)


def load_input(image: Any, name: str = "image") -> np.ndarray:
    """A PIL image, a file path or an HW/HWC array -> HWC uint8 RGB (the project's one decoder)."""
    from hf_srdistill.data.images import load_image, to_rgb_uint8

    if isinstance(image, (str, Path)):
        return load_image(image)
    if isinstance(image, Image.Image):
        return to_rgb_uint8(image, name=name)
    if isinstance(image, np.ndarray):
        return to_rgb_uint8(image, name=name)
    raise TypeError(f"{name}: expected a PIL image, a file path or a numpy array, got {type(image).__name__}")


def _spans(size: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(input start, input end, core start, core end) along one axis; cores partition [0, size)."""
    spans = []
    for start in range(0, size, tile):
        end = min(start + tile, size)
        spans.append((max(0, start - overlap), min(size, end + overlap), start, end))
    return spans


@torch.no_grad()
def upscale_tensor(model: "SRModel", lr: torch.Tensor, tile: int | None = DEFAULT_TILE,
                   overlap: int = DEFAULT_OVERLAP, device: str | torch.device | None = None,
                   progress: bool = False) -> torch.Tensor:
    """LR (1,3,h,w) float in [0,1] -> SR (1,3,h*s,w*s) float (unclamped, on the CPU).

    ``tile`` is the LR side of each tile's kept centre; ``None`` or 0 runs the whole image at
    once. Every tile is run with ``overlap`` LR px of context on each side (less at the border,
    where the untiled run has no more context either).
    """
    from hf_srdistill.evaluate import model_upscaler

    if lr.ndim != 4 or lr.shape[:2] != (1, 3):
        raise ValueError(f"expected an LR tensor of shape (1, 3, h, w), got {tuple(lr.shape)}")
    if (tile is not None and tile < 0) or overlap < 0:
        raise UpscaleArgumentError(f"tile and overlap must be >= 0, got tile={tile}, overlap={overlap}")
    run = model_upscaler(model, _device(device))
    s = int(model.scale)
    h, w = lr.shape[-2:]
    if not tile or (h <= tile and w <= tile):
        return run(lr).float()
    out = torch.empty(1, 3, h * s, w * s)
    tiles = [(ys, xs) for ys in _spans(h, tile, overlap) for xs in _spans(w, tile, overlap)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tiles), desc="tiles", unit="tile", leave=False)
    for (y0, y1, cy0, cy1), (x0, x1, cx0, cx1) in tiles:
        sr = run(lr[..., y0:y1, x0:x1]).float()
        out[..., cy0 * s:cy1 * s, cx0 * s:cx1 * s] = sr[..., (cy0 - y0) * s:(cy1 - y0) * s,
                                                        (cx0 - x0) * s:(cx1 - x0) * s]
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return out


def upscale(model: "SRModel | str | Path", image: Any, *, tile: int | None = DEFAULT_TILE,
            overlap: int = DEFAULT_OVERLAP, device: str | torch.device | None = None) -> Image.Image:
    """Super-resolve one image with ``model`` and return an RGB ``PIL.Image`` ``scale`` x larger.

    ``model``: a loaded SR model, or a saved model folder / Hub repo id (loaded each call; load
    it once with :func:`hf_srdistill.models.load_model` for many images). ``image``: a PIL
    image, a file path, or an HW/HWC array (uint8, uint16, bool, or float in [0, 1]); grey,
    alpha, 16-bit and palette images are converted to 8-bit RGB first. The output is clamped
    to [0, 1] and rounded to 8 bits (BasicSR's ``tensor2img``).
    """
    from hf_srdistill.data.images import to_tensor, to_uint8

    net = _model(model)
    arr = load_input(image)
    sr = upscale_tensor(net, to_tensor(arr).unsqueeze(0), tile=tile, overlap=overlap, device=device)
    return Image.fromarray(to_uint8(sr[0].clamp(0, 1)))


# ---- command line ---------------------------------------------------------------------

def output_paths(src: Path, dst: Path) -> list[tuple[Path, Path]]:
    """(input file, output PNG) pairs: a file -> a .png file (or into a folder); a folder -> the
    same relative paths under ``dst`` with a .png suffix."""
    from hf_srdistill.data.errors import DataNotFoundError
    from hf_srdistill.data.sources import IMAGE_SUFFIXES, list_image_files

    if src.is_file():
        if src.suffix.lower() not in IMAGE_SUFFIXES:
            raise DataNotFoundError(f"{src} is not an image file (expected one of {', '.join(IMAGE_SUFFIXES)})")
        if dst.suffix.lower() == ".png":
            return [(src, dst)]
        if dst.suffix and not dst.is_dir():
            raise UpscaleArgumentError(f"output {dst} must be a .png file or a folder")
        return [(src, dst / f"{src.stem}.png")]
    if not src.is_dir():
        raise DataNotFoundError(f"no image file or folder at {src}")
    if dst.suffix.lower() == ".png" and not dst.is_dir():
        raise UpscaleArgumentError(f"input {src} is a folder, so the output {dst} must be a folder, not a .png file")
    files = list_image_files(src)
    if not files:
        raise DataNotFoundError(f"no {'/'.join(IMAGE_SUFFIXES)} files under {src}")
    pairs = [(f, dst / f.relative_to(src).with_suffix(".png")) for f in files]
    seen: dict[Path, Path] = {}
    for f, out in pairs:
        if out in seen:
            raise UpscaleArgumentError(f"{seen[out].relative_to(src)} and {f.relative_to(src)} would both be written "
                             f"to {out}; rename one of them")
        seen[out] = f
    return pairs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hf-srdistill upscale",
        description="Super-resolve an image file, or every image under a folder (recursively), with a "
                    "saved SR model. Outputs are 8-bit RGB PNGs; a folder's relative paths are mirrored.",
        epilog="Exit status: 0 all written; 1 some inputs could not be decoded (named, skipped); "
               "2 bad arguments or a missing model/input.")
    parser.add_argument("input", type=Path, help="image file or folder (.png .jpg .jpeg .bmp .tif .tiff .webp)")
    parser.add_argument("output", type=Path, help="output .png file, or folder")
    parser.add_argument("--model", required=True, help="save_pretrained folder or Hub repo id of the SR model")
    parser.add_argument("--tile", type=int, default=DEFAULT_TILE,
                        help="LR tile side in px; 0 = whole image at once (default %(default)s)")
    parser.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP,
                        help="LR px of context around each tile, discarded after (default %(default)s)")
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu, cuda, cuda:1 (default: cuda if "
                                                       "available, else cpu)")
    parser.add_argument("--revision", default=None, help="Hub revision of --model")
    return parser


def main(argv: list[str] | None = None) -> int:
    from hf_srdistill.data.images import CorruptImageError, to_tensor, to_uint8
    from hf_srdistill.evaluate import save_png
    from hf_srdistill.models import load_model

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "upscale":
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    prog = "hf-srdistill upscale"
    if args.tile < 0 or args.overlap < 0:
        raise UpscaleArgumentError(f"--tile and --overlap must be >= 0, got {args.tile} and {args.overlap}")
    pairs = output_paths(args.input, args.output)  # errors here are one line, printed by hf_srdistill.cli
    model = load_model(args.model, revision=args.revision)
    device = _device(args.device)
    folder = args.input.is_dir()
    failed: list[tuple[Path, str]] = []
    items = pairs
    if folder:
        from tqdm.auto import tqdm

        items = tqdm(pairs, desc="upscale", unit="image")
    for src, dst in items:
        try:
            arr = load_input(src)
        except CorruptImageError as err:
            failed.append((src, str(err)))
            log.warning("%s", err)
            continue
        sr = upscale_tensor(model, to_tensor(arr).unsqueeze(0), tile=args.tile, overlap=args.overlap,
                            device=device, progress=not folder)
        save_png(Image.fromarray(to_uint8(sr[0].clamp(0, 1))), dst)
    written = len(pairs) - len(failed)
    where = args.output if folder or len(pairs) != 1 else pairs[0][1]
    print(f"{prog}: {written} image{'s' if written != 1 else ''} upscaled x{model.scale} -> {where}"
          + (f"; {len(failed)} skipped (could not be decoded: {', '.join(str(f) for f, _ in failed)})"
             if failed else ""))
    return 1 if failed else 0


class _CallableModule(types.ModuleType):
    """``hf_srdistill.upscale(model, image)`` calls :func:`upscale`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Image.Image:
        return upscale(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
