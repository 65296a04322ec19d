"""Evaluate SR models (and the bicubic floor) on test sets: tables and image grids.

Protocol (BasicSR / the SR literature): HR mod-cropped to the scale, LR = MATLAB bicubic
downscale quantised to uint8 (as the LR PNGs of the benchmark sets are), PSNR/SSIM on the
Y channel with crop_border = scale, LPIPS (AlexNet) on RGB when its weights are present.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from hf_srdistill.config import EvalJobConfig
from hf_srdistill.data import imresize, load_test_set
from hf_srdistill.data.images import mod_crop, to_tensor, to_uint8
from hf_srdistill.io import write_json, write_text
from hf_srdistill.metrics import LPIPSMetric, psnr, ssim

logger = logging.getLogger(__name__)

Upscaler = Callable[[torch.Tensor], torch.Tensor]  # LR (1,3,h,w) -> SR (1,3,h*s,w*s)


def make_lr(hr: np.ndarray, scale: int) -> torch.Tensor:
    """(1,3,h,w) float LR of a mod-cropped HR uint8 image, quantised like a saved LR PNG."""
    lr = imresize(to_tensor(hr).unsqueeze(0), 1 / scale)
    return torch.round(lr.clamp(0, 1) * 255) / 255


def bicubic_upscaler(scale: int) -> Upscaler:
    return lambda lr: imresize(lr, scale)


def model_upscaler(model: torch.nn.Module, device: torch.device | str = "cpu") -> Upscaler:
    model = model.to(device).eval()

    @torch.no_grad()
    def run(lr: torch.Tensor) -> torch.Tensor:
        return model(lr.to(device)).cpu()

    return run


def evaluate_upscaler(upscale: Upscaler, images: list[tuple[str, np.ndarray]], scale: int,
                      lpips_metric: LPIPSMetric | None = None) -> dict[str, float | None]:
    """Mean PSNR/SSIM (Y, crop=scale) and LPIPS over one test set."""
    scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "lpips": []}
    for _, hr in images:
        hr = mod_crop(hr, scale)
        sr = to_uint8(upscale(make_lr(hr, scale))[0].clamp(0, 1))
        scores["psnr"].append(psnr(sr, hr, crop_border=scale, test_y_channel=True))
        scores["ssim"].append(ssim(sr, hr, crop_border=scale, test_y_channel=True))
        if lpips_metric is not None and lpips_metric.available:
            scores["lpips"].append(float(lpips_metric(sr, hr)))
    return {k: (float(np.mean(v)) if v else None) for k, v in scores.items()}


def evaluate_many(upscalers: dict[str, Upscaler], test_sets: list[str], scale: int,
                  test_root: str | None = None, use_lpips: bool = True) -> dict:
    """results[method][test_set] = {psnr, ssim, lpips}; bicubic is always the first row."""
    lpips_metric = LPIPSMetric() if use_lpips else None
    data = {name: load_test_set(name, root=test_root) for name in test_sets}
    rows = {"bicubic": bicubic_upscaler(scale), **upscalers}
    return {method: {name: evaluate_upscaler(up, images, scale, lpips_metric)
                     for name, images in data.items()}
            for method, up in rows.items()}


def format_table(results: dict, title: str = "") -> str:
    """Markdown table in the study's layout: PSNR/SSIM/LPIPS per test set, one row per method."""
    sets = list(next(iter(results.values())))
    head = "| method | " + " | ".join(f"{s} PSNR↑ | {s} SSIM↑ | {s} LPIPS↓" for s in sets) + " |"
    sep = "|---" * (1 + 3 * len(sets)) + "|"
    lines = [f"### {title}\n" if title else "", head, sep]
    for method, per_set in results.items():
        cells = []
        for s in sets:
            r = per_set[s]
            lp = "absent" if r["lpips"] is None else f"{r['lpips']:.4f}"
            cells += [f"{r['psnr']:.2f}", f"{r['ssim']:.4f}", lp]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(line for line in lines if line) + "\n"


@dataclass
class ComparisonGrid:
    """One row of same-position crops (HR, bicubic, each method), each labelled underneath.

    ``names[i]`` is tile i's method name ("HR", "bicubic", then the upscalers' keys, in full),
    ``scores[i]`` its (PSNR, SSIM) against the HR crop (Y channel, border = scale; None for HR
    and for a method with no model), ``labels[i]`` the text drawn under it. ``tiles`` is the
    unlabelled row, ``image`` the labelled one: the tiles pixel for pixel on top of a white
    band of ``band`` rows.
    """

    tiles: np.ndarray
    tile: int
    names: list[str]
    scores: list[tuple[float, float] | None]
    labels: list[str]
    band: int
    font_px: int

    def figure(self):
        from hf_srdistill.figures import labelled_row_figure

        return labelled_row_figure(self.tiles, self.tile, self.labels, self.font_px, self.band)[0]

    @property
    def image(self) -> Image.Image:
        from hf_srdistill.figures import render

        return Image.fromarray(render(self.figure()))

    @property
    def size(self) -> tuple[int, int]:
        return self.tiles.shape[1], self.tiles.shape[0] + self.band

    def pnginfo(self):
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("tile", str(self.tile))
        info.add_text("label_band", str(self.band))
        info.add_itxt("labels", json.dumps(self.labels, ensure_ascii=False))
        return info

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """``path`` (PNG, with tile / label_band / labels as text chunks) and the same figure as PDF
        next to it (vector text)."""
        from hf_srdistill.figures import render, save_pdf

        path = Path(path)
        fig = self.figure()
        save_png(Image.fromarray(render(fig)), path, pnginfo=self.pnginfo())
        return path, save_pdf(fig, path.with_suffix(".pdf"))


def crop_scores(sr: np.ndarray, hr: np.ndarray, scale: int) -> tuple[float, float]:
    """PSNR and SSIM of one crop: Y channel, border = scale (the evaluation's protocol)."""
    return (psnr(sr, hr, crop_border=scale, test_y_channel=True),
            ssim(sr, hr, crop_border=scale, test_y_channel=True))


def comparison_grid(upscalers: dict[str, Upscaler | None], hr: np.ndarray, scale: int, crop: int = 96) -> ComparisonGrid:
    """One row: HR crop, then bicubic and each model's SR of the same crop, side by side, each
    tile labelled with its full name and that crop's PSNR/SSIM. An upscaler given as None is a
    grey tile labelled "no model"."""
    from hf_srdistill.figures import fits_width, font_px_for, text_height, tile_label, PAD

    hr = mod_crop(hr, scale)
    h, w = hr.shape[:2]
    crop = min(crop, h, w) // scale * scale
    top, left = (h - crop) // 2 // scale * scale, (w - crop) // 2 // scale * scale
    lr = make_lr(hr, scale)
    hr_tile = hr[top:top + crop, left:left + crop]
    font_px = font_px_for(crop)
    fits = fits_width(crop - 2 * PAD, font_px)
    tiles, names, scores, labels = [hr_tile], ["HR"], [None], [tile_label("HR", fits=fits)]
    for name, up in {"bicubic": bicubic_upscaler(scale), **upscalers}.items():
        if up is None:
            tiles.append(np.full_like(hr_tile, 128))
            scores.append(None)
            labels.append(tile_label(name, fits=fits) + "\n" + tile_label("no model", fits=fits))
        else:
            sr = to_uint8(up(lr)[0].clamp(0, 1))[top:top + crop, left:left + crop]
            tiles.append(sr)
            scores.append(crop_scores(sr, hr_tile, scale))
            labels.append(tile_label(name, *scores[-1], fits=fits))
        names.append(name)
    band = text_height(max(label.count("\n") + 1 for label in labels), font_px)
    return ComparisonGrid(np.concatenate(tiles, axis=1), crop, names, scores, labels, band, font_px)


def evaluate(cfg: EvalJobConfig) -> dict:
    """Evaluate one saved model (folder or Hub id); writes table.md, results.json, grid.png/.pdf."""
    from hf_srdistill.models import load_model
    from hf_srdistill.provenance import collect_provenance, write_provenance

    t0 = time.time()
    model = load_model(cfg.model_path)
    scale = int(model.scale)
    up = {Path(cfg.model_path).name or cfg.model_path: model_upscaler(model)}
    ec = cfg.eval
    results = evaluate_many(up, ec.test_sets, scale, ec.test_root, ec.lpips)
    write_results(Path(ec.output_dir), results, scale, title=f"x{scale}")
    if ec.grid:
        hr = load_test_set(ec.test_sets[0], root=ec.test_root)[0][1]
        comparison_grid(up, hr, scale).save(Path(ec.output_dir) / "grid.png")
    write_provenance(Path(ec.output_dir), collect_provenance(cfg, wall_time_s=time.time() - t0))
    if Path(cfg.model_path).is_dir():  # the model card is refreshed from these numbers
        from hf_srdistill.hub.cards import write_model_card
        from hf_srdistill.hub.folders import FolderError

        write_json(Path(cfg.model_path) / "eval_results.json", {"scale": scale, "results": results[next(iter(up))]})
        try:
            write_model_card(cfg.model_path)
        except FolderError as err:  # e.g. a bare save_pretrained folder with no provenance
            logger.warning("model card not written: %s", err)
    return results


def write_results(out: Path, results: dict, scale: int, title: str = "") -> str:
    table = format_table(results, title)
    write_text(out / "table.md", table)
    write_json(out / "results.json", {"scale": scale, "results": results})
    print(table)
    return table


def save_png(image: Image.Image, path: Path, pnginfo=None) -> None:
    from hf_srdistill.io import atomic_path

    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", pnginfo=pnginfo)
