"""Pruning-coreset baseline: keep the real crops an SRCNN finds hardest, at the distilled budget.

Loss-ranked data pruning for SR keeps the training samples on which a reference SR model
does worst, on the grounds that flat, easy regions teach little. Here every class (source
photo) is cut into ``image_size`` crops on a grid, each crop is scored by the reference
model's SR loss (MSE of model(LR) against the crop, LR = MATLAB-bicubic downscale, the
same loss the distillation matches), and the ``ipc`` highest-loss crops of each class are
kept — after optionally dropping the top ``outlier_pct`` percent, since the very highest
losses tend to be noise or compression artefacts rather than learnable detail.

The grid step defaults to ``image_size`` (non-overlapping crops), so the ``ipc`` picks of a
class never share pixels: with overlap the top picks are often shifted copies of one hard
region, which wastes the budget. With ``step = data.step`` and ``image_size =
data.crop_size`` the candidates are exactly the BasicSR sub-images.

``tiles`` > 1 makes each image a mosaic (RDED-style): a tiles x tiles grid of hard crops of
side image_size / tiles, at native scale. At a fixed pixel budget this trades one large region
for tiles^2 distinct ones: more kinds of local structure, at the price of seams that a judge's
patches straddle (each still an exact HR/LR pair, since the judge downscales the mosaic itself).
The hardest small crops of a photo are usually neighbours in one textured patch, which would
rebuild the plain coreset crop in pieces, so the picks are spread: greedily by loss, skipping
crops within ``min_distance`` px of one already taken (filled up by loss if too few remain).
The default, the set's image side, keeps them out of one another's neighbourhood while still
letting them come from the same textured part of the photo; a sub-image's distance (480) on
the photos suite filled mosaics with flat sky and bokeh.

``thumbnail`` makes the first tile of each mosaic the photo downscaled (as the ``downscaled``
init: the centre square, then random windows for ipc > 1) and the others hard native crops:
hard crops alone carry texture but not the photo's range of content and intensity. Measured
on the photos suite (README), a quarter of the pixels given to the photo does not stop a
larger judge trained on the rest from failing on grey-scale test photos.

The scorer is a pretrained model when one is given (``reference`` or
``distill.reference_path``); otherwise an SRCNN of ``distill.reference``'s shape is trained
briefly on the same data with the project's trainer, and the set's provenance says which.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hf_srdistill.config import DistillJobConfig, TrainConfig, TrainJobConfig
from hf_srdistill.data import imresize
from hf_srdistill.data.subimages import subimage_positions
from hf_srdistill.distill.export import real_set_sizes, write_image_set

log = logging.getLogger(__name__)

SCORE_BATCH = 32  # crops per forward pass while scoring; bounds memory on DIV2K-sized photos
DEFAULT_SCORER_ITERATIONS = 500  # training steps of the scorer when no pretrained one is given
# the scorer's training recipe when none is given (plan times the same steps)
SCORER_BATCH, SCORER_LOSS = 16, "l2"


def scorer_patch(image_size: int) -> int:
    return min(96, image_size)


def class_crops(photo: np.ndarray, size: int, step: int) -> tuple[list[tuple[int, int]], np.ndarray]:
    """Grid positions (top, left) and the (n, size, size, 3) uint8 crops of one photo."""
    tops, lefts = subimage_positions(photo.shape[0], photo.shape[1], size, step, 0)
    positions = [(t, left) for t in tops for left in lefts]
    return positions, np.stack([photo[t:t + size, left:left + size] for t, left in positions])


@torch.no_grad()
def crop_losses(model: torch.nn.Module, crops: np.ndarray, scale: int, device: torch.device | str = "cpu") -> np.ndarray:
    """Per-crop MSE(model(bicubic_down(hr)), hr) for (n, S, S, 3) uint8 crops, as float64."""
    model = model.to(device).eval()
    out = []
    for i in range(0, len(crops), SCORE_BATCH):
        hr = torch.from_numpy(crops[i:i + SCORE_BATCH]).permute(0, 3, 1, 2).float().div_(255.0).to(device)
        sr = model(imresize(hr, 1.0 / scale))
        out.append(F.mse_loss(sr, hr, reduction="none").mean((1, 2, 3)).double().cpu())
    return torch.cat(out).numpy()


def _ranked(losses: np.ndarray, k: int, outlier_pct: float) -> list[int]:
    """Candidate indices by falling loss after dropping the top ``outlier_pct`` % (ties: grid
    order); floor(pct/100 * n) are dropped, capped so that ``k`` remain."""
    n = len(losses)
    if n < k:
        raise ValueError(f"{n} candidate crops but the set needs {k} (ipc x tiles^2): lower distill.image_size, "
                         "the coreset step or the tiles")
    drop = min(int(math.floor(outlier_pct / 100.0 * n)), n - k)
    return [int(i) for i in np.argsort(-np.asarray(losses), kind="stable")[drop:]]


def select_hardest(losses: np.ndarray, k: int, outlier_pct: float = 0.0) -> list[int]:
    """Indices of the ``k`` highest losses after dropping the top ``outlier_pct`` % (ties: grid order)."""
    return _ranked(losses, k, outlier_pct)[:k]


def select_spread(losses: np.ndarray, positions: list[tuple[int, int]], k: int, min_distance: int,
                  outlier_pct: float = 0.0) -> list[int]:
    """Like ``select_hardest``, but each pick at least ``min_distance`` px (Chebyshev, between
    top-left corners) from the earlier ones; when fewer than ``k`` qualify, the rest are the
    hardest of the others. ``min_distance`` 0 is ``select_hardest``."""
    ranked = _ranked(losses, k, outlier_pct)
    chosen: list[int] = []
    for i in ranked:
        y, x = positions[i]
        if all(max(abs(y - positions[j][0]), abs(x - positions[j][1])) >= min_distance for j in chosen):
            chosen.append(i)
            if len(chosen) == k:
                return chosen
    return chosen + [i for i in ranked if i not in chosen][:k - len(chosen)]


CROP_SETS = ("coreset", "mosaic", "mixed")  # the set kinds make_coreset_set writes


def crop_set_layout(kind: str, tiles: int) -> dict:
    """make_coreset_set's ``tiles`` and ``thumbnail`` for a set kind of CROP_SETS."""
    if kind not in CROP_SETS:
        raise ValueError(f"unknown crop set {kind!r}; choose one of {', '.join(CROP_SETS)}")
    return {"tiles": 1 if kind == "coreset" else tiles, "thumbnail": kind == "mixed"}


def tile_mosaic(tiles: np.ndarray, grid: int) -> np.ndarray:
    """(grid^2, t, t, 3) crops -> one (grid*t, grid*t, 3) image, row-major (crop k at row k // grid)."""
    n, t = len(tiles), tiles.shape[1]
    if n != grid * grid:
        raise ValueError(f"a {grid}x{grid} mosaic needs {grid * grid} crops, got {n}")
    return tiles.reshape(grid, grid, t, t, 3).transpose(0, 2, 1, 3, 4).reshape(grid * t, grid * t, 3)


def _thumbnails(photo: np.ndarray, ipc: int, size: int, seed: int, cls: int) -> np.ndarray:
    """(ipc, size, size, 3) uint8: the ``downscaled`` init's images of this class at tile size."""
    from hf_srdistill.distill.synthetic import INIT_STREAM, class_generator, downscaled_images

    small = downscaled_images(photo, ipc, size, class_generator(seed, cls, INIT_STREAM))
    return small.clamp(0, 1).mul(255).round().byte().permute(0, 2, 3, 1).numpy()


def _scorer(cfg: DistillJobConfig, reference: str | None, iterations: int, workdir: Path) -> tuple[torch.nn.Module, dict]:
    """The pretrained model if given, else an SRCNN trained briefly on the data; and how it was made."""
    from hf_srdistill.models import load_model
    from hf_srdistill.train import train_sr

    ref = reference or cfg.distill.reference_path
    if ref:
        print(f"coreset: scoring crops with the pretrained model {ref}")
        return load_model(ref), {"kind": "pretrained", "path": str(ref)}
    d = cfg.distill
    print(f"coreset: no pretrained reference given; training a {d.reference.name} x{d.reference.scale} "
          f"for {iterations} iterations on the data to score crops")
    train = TrainConfig(iterations=iterations, batch_size=SCORER_BATCH, patch_size=scorer_patch(d.image_size), lr=1e-3,
                        loss=SCORER_LOSS,
                        seed=d.seed, output_dir=str(workdir / "scorer"), resume=False,
                        checkpoint_every=max(iterations, 1))
    folder = train_sr(TrainJobConfig(data=cfg.data, model=d.reference, train=train))
    return load_model(folder), {"kind": "trained on the data", "iterations": iterations, "loss": SCORER_LOSS,
                                "model": dataclasses.asdict(d.reference), "seed": d.seed}


def make_coreset_set(cfg: DistillJobConfig, reference: str | None = None, *, outlier_pct: float = 0.0,
                     step: int | None = None, scorer_iterations: int = DEFAULT_SCORER_ITERATIONS, store=None,
                     folder: str | Path | None = None, device: str | None = None, tiles: int = 1,
                     min_distance: int | None = None, thumbnail: bool = False) -> Path:
    """Write the coreset of ``cfg``'s budget (ipc images of image_size per class); returns the folder.

    reference: a saved model (folder or Hub id) to score with; default distill.reference_path,
    and when both are None an SRCNN is trained for ``scorer_iterations`` steps. tiles: each
    image is a tiles x tiles mosaic of crops of side image_size / tiles (1 = plain crops).
    min_distance: the spread of a mosaic's picks (default image_size, so no two come from one
    image-sized neighbourhood; plain crops: none). thumbnail: tile 0 of each mosaic is the photo
    downscaled to a tile.
    """
    from hf_srdistill.data.grouped import SubImageStore
    from hf_srdistill.provenance import describe_source

    if not 0.0 <= outlier_pct < 100.0:
        raise ValueError(f"outlier_pct must be in [0, 100), got {outlier_pct}")
    d = cfg.distill
    if tiles < 1 or d.image_size % tiles:
        raise ValueError(f"tiles must be a positive divisor of distill.image_size={d.image_size}, got {tiles}")
    if thumbnail and tiles < 2:
        raise ValueError("a thumbnail tile needs a mosaic: tiles >= 2")
    t0 = time.time()
    size = d.image_size // tiles
    step, per_image = step or size, tiles * tiles
    hard = per_image - int(thumbnail)  # hard crops per image
    if min_distance is None:
        min_distance = d.image_size if tiles > 1 else 0
    store = store if store is not None else SubImageStore.build(cfg.data)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory(prefix="coreset-scorer-") as work:
        model, scorer = _scorer(cfg, reference, scorer_iterations, Path(work))
    scale = int(model.scale)
    images, labels, ipc_index, picks = [], [], [], []
    for c in range(store.num_classes):
        photo = store.source_image(c)
        positions, crops = class_crops(photo, size, step)
        losses = crop_losses(model, crops, scale, device)
        chosen = select_spread(losses, positions, d.ipc * hard, min_distance, outlier_pct)
        thumbs = _thumbnails(photo, d.ipc, size, d.seed, c) if thumbnail else None
        for j in range(d.ipc):
            group = chosen[j * hard:(j + 1) * hard]
            parts = crops[group] if thumbs is None else np.concatenate([thumbs[j:j + 1], crops[group]])
            images.append(torch.from_numpy(tile_mosaic(parts, tiles)).permute(2, 0, 1).float() / 255.0)
            labels.append(c)
            ipc_index.append(j)
            if thumbs is not None:
                picks.append({"class": store.class_names[c], "image": j, "tile": 0, "thumbnail": True})
            picks += [{"class": store.class_names[c], "image": j, "tile": k + int(thumbnail), "top": positions[i][0],
                       "left": positions[i][1], "loss": float(losses[i]), "rank": int(np.sum(losses > losses[i])),
                       "candidates": len(crops)} for k, i in enumerate(group)]
    kind = "coreset" if tiles == 1 else "mixed" if thumbnail else "mosaic"
    extra = {"kind": kind, "scorer": scorer, "scale": scale, "outlier_pct": outlier_pct, "step": step,
             "tiles": tiles, "min_distance": min_distance, "thumbnail": thumbnail, "selected": picks}
    out = Path(folder if folder is not None else d.output_dir)
    write_image_set(out, torch.stack(images), labels, store.class_names, ipc_index, cfg, extra=extra,
                    real_sizes=real_set_sizes(store, cfg.data), source=describe_source(cfg.data, store.fingerprint),
                    wall_time_s=time.time() - t0)
    return out
