"""Write an image set (distilled or baseline) in the project's set-folder format.

One parquet shard that ``datasets.load_dataset(folder)`` reads (columns ``hr``, ``label``,
``ipc_index``, ``lr_x2``, ``lr_x4``), the resolved config, the provenance record, a size
report, the manifest (``data.set_folder``) that marks the folder complete, and then the full
dataset card (``hub.dataset_card`` with no repo id: the same card ``push-dataset`` uploads, less
the Hub id). The card is not in the manifest: it is rendered from the listed files and may be
refreshed (after an evaluation, at push time) without changing the set. Every set is written by
this one function, so training and the Hub code treat distilled sets and baselines alike.

The HR pixels are quantised to uint8 (PNG is lossless from there on), and the LR columns
are made from the *quantised* HR with the project's MATLAB bicubic, so a reader that
degrades ``hr`` itself gets exactly ``lr_x2`` / ``lr_x4`` back (up to uint8 rounding).
"""

from __future__ import annotations

import io
import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from hf_srdistill.configio import dump_yaml
from hf_srdistill.data import imresize
from hf_srdistill.data.set_folder import remove_manifest, write_manifest
from hf_srdistill.io import atomic_path, read_json, write_json, write_text

logger = logging.getLogger(__name__)

PARQUET = Path("data") / "train-00000-of-00001.parquet"
LR_SCALES = (2, 4)
# above this many real pixels (~90 DIV2K sub-images) PNG bytes are estimated from a sample
EXACT_PNG_PIXELS = 20_000_000
PNG_SAMPLE = 64


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N,3,H,W) float [0,1] -> (N,H,W,3) uint8, rounding half up as PNG writers expect."""
    x = images.detach().float().cpu().clamp(0, 1)
    return (x * 255.0 + 0.5).floor().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def png_bytes(img: np.ndarray) -> bytes:
    """PNG encoding with PIL's defaults, the encoder ``datasets`` uses for Image columns."""
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _lr_uint8(hr_u8: np.ndarray, scale: int) -> np.ndarray:
    x = torch.from_numpy(hr_u8).permute(0, 3, 1, 2).double() / 255.0
    return to_uint8(imresize(x, 1.0 / scale))


def write_image_set(folder: str | Path, images: torch.Tensor, labels: Sequence[int], class_names: Sequence[str],
                    ipc_index: Sequence[int], cfg: Any, extra: dict | None = None,
                    real_sizes: dict | None = None, source: dict | None = None,
                    wall_time_s: float | None = None) -> Path:
    """Write ``images`` (N,3,S,S) in [0,1] as a set folder; returns the folder.

    extra goes into provenance.json (e.g. the set kind, final matching loss); real_sizes
    (from :func:`real_set_sizes`) makes the size report compare against the real data;
    source describes the data source (``provenance.describe_source``).
    """
    from datasets import ClassLabel, Dataset, Features, Image as ImageFeature, Value

    folder = Path(folder)
    n = images.shape[0]
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (N,3,H,W), got {tuple(images.shape)}")
    if not (len(labels) == len(ipc_index) == n):
        raise ValueError(f"{n} images but {len(labels)} labels and {len(ipc_index)} ipc indices")
    if len(set(class_names)) != len(class_names):
        raise ValueError("class names must be unique (they become the ClassLabel names)")
    if n and not 0 <= min(labels) <= max(labels) < len(class_names):
        raise ValueError(f"labels must lie in [0, {len(class_names)}), got {min(labels)}..{max(labels)}")
    if not torch.isfinite(images).all():
        raise ValueError("images contain NaN or inf; refusing to write a set")
    h, w = images.shape[-2:]
    hr = to_uint8(images)
    hr_png = [png_bytes(im) for im in hr]
    data: dict[str, list] = {"hr": [{"bytes": b, "path": None} for b in hr_png],
                             "label": [int(v) for v in labels], "ipc_index": [int(v) for v in ipc_index]}
    feats: dict[str, Any] = {"hr": ImageFeature(), "label": ClassLabel(names=list(class_names)),
                             "ipc_index": Value("int32")}
    for s in LR_SCALES:
        if h % s == 0 and w % s == 0:  # an LR side that does not divide would misalign the pair
            data[f"lr_x{s}"] = [{"bytes": png_bytes(im), "path": None} for im in _lr_uint8(hr, s)]
            feats[f"lr_x{s}"] = ImageFeature()
    features = Features(feats)
    ds = Dataset.from_dict(data, features=features)

    (folder / "data").mkdir(parents=True, exist_ok=True)
    remove_manifest(folder)  # incomplete from here until the manifest is written again
    for stale in (folder / "data").glob("*.parquet"):
        if stale.name != PARQUET.name:
            stale.unlink()
    with atomic_path(folder / PARQUET) as tmp:
        ds.to_parquet(str(tmp))
    report = size_report(n, int(h) * int(w), sum(map(len, hr_png)), real_sizes)
    write_json(folder / "size_report.json", report)
    print(format_size_report(report))
    write_text(folder / "config.yaml", dump_yaml(cfg))
    _write_provenance(folder, cfg, source, wall_time_s, extra)
    write_manifest(folder, n)
    write_card(folder, card_stub(features, n, os.path.getsize(folder / PARQUET), report, extra))
    return folder


def write_card(folder: str | Path, fallback: str | None = None) -> Path:
    """The full dataset card of a complete set folder (no Hub id, so no Hub URL is claimed).

    Where it cannot be rendered (no provenance module, a hand-edited record), ``fallback``
    (the loader-only stub) is written instead, with a warning; without one the error stands.
    """
    from hf_srdistill.hub.dataset_card import write_dataset_card
    from hf_srdistill.hub.folders import FolderError

    folder = Path(folder)
    try:
        return write_dataset_card(folder, repo_id=None)
    except (FolderError, ValueError, KeyError) as err:
        if fallback is None:
            raise
        logger.warning("%s: full dataset card not rendered (%s); wrote the minimal card", folder, err)
        write_text(folder / "README.md", fallback)
        return folder / "README.md"


def size_report(n: int, pixels_per_image: int, png: int, real: dict | None) -> dict:
    """Images, pixels and PNG bytes of the set, and reductions (%) against the real data."""
    synthetic = {"images": n, "pixels": n * pixels_per_image, "png_bytes": png}
    report: dict[str, Any] = {"synthetic": synthetic}
    for key in ("subimages", "originals"):
        if real and key in real:
            ref = real[key]
            report[key] = ref
            report[f"reduction_vs_{key}_pct"] = {
                m: (100.0 * (1 - synthetic[m] / ref[m]) if ref[m] else None) for m in ("images", "pixels", "png_bytes")}
    return report


def format_size_report(report: dict) -> str:
    lines = ["set size          images        pixels     PNG bytes"]
    for key in ("synthetic", "subimages", "originals"):
        if key in report:
            r = report[key]
            est = " (PNG estimated)" if r.get("png_estimated") else ""
            lines.append(f"{key:<12}{r['images']:>12,}{r['pixels']:>14,}{r['png_bytes']:>14,}{est}")
    for key in ("subimages", "originals"):
        red = report.get(f"reduction_vs_{key}_pct")
        if red:
            lines.append(f"reduction vs {key}: " + ", ".join(
                f"{m} {v:.2f}%" for m, v in red.items() if v is not None))
    return "\n".join(lines)


def _sizes(n: int, get, pixels_of, seed: int) -> dict:
    """Images, pixels and PNG bytes of ``n`` HWC uint8 images (``get(i)`` decodes one).

    PNG bytes are exact for small sets; above EXACT_PNG_PIXELS they are estimated from a
    seeded sample (bytes per pixel x all pixels) and flagged, because encoding tens of
    thousands of 480-px crops would take longer than the distillation.
    """
    pixels = sum(pixels_of(i) for i in range(n))
    if pixels <= EXACT_PNG_PIXELS:
        return {"images": n, "pixels": pixels, "png_bytes": sum(len(png_bytes(get(i))) for i in range(n)),
                "png_estimated": False}
    idx = np.random.default_rng(seed).choice(n, min(n, PNG_SAMPLE), replace=False)
    b = sum(len(png_bytes(get(int(i)))) for i in idx)
    p = sum(pixels_of(int(i)) for i in idx)
    return {"images": n, "pixels": pixels, "png_bytes": int(round(b / p * pixels)), "png_estimated": True,
            "png_sample": len(idx)}


def real_set_sizes(store, data_cfg) -> dict:
    """Size of the real training data: all sub-images, and the original photos.

    Sub-images are crop_size squares (BasicSR's grid shifts the last crop inside the
    border), so their pixels need no decoding; the photos are decoded once each. The result
    is cached next to the sub-image cache, keyed by the store's fingerprint, because every
    set written from the same data (distilled and baselines) reports against it.
    """
    cache = Path(data_cfg.cache_dir).expanduser() / "size_stats" / f"{store.fingerprint}.json"
    if cache.is_file():
        return read_json(cache)
    subs = store.all_subimages()
    crop = data_cfg.crop_size
    size_of = getattr(store, "source_size", None) or (lambda c: store.source_image(c).shape[:2])
    shapes = [tuple(size_of(c)) for c in range(store.num_classes)]
    sizes = {"subimages": _sizes(len(subs), subs.__getitem__, lambda i: crop * crop, seed=0),
             "originals": _sizes(store.num_classes, store.source_image, lambda c: shapes[c][0] * shapes[c][1],
                                 seed=0)}
    write_json(cache, sizes)
    return sizes


def _write_provenance(folder: Path, cfg: Any, source: dict | None, wall_time_s: float | None,
                      extra: dict | None) -> None:
    try:
        from hf_srdistill.provenance import collect_provenance, write_provenance
    except ImportError:  # keep the set usable if the provenance module is unavailable
        write_json(folder / "provenance.json", {"config": dump_yaml(cfg), "source": source,
                                                 "wall_time_s": wall_time_s, "extra": extra,
                                                 "created_unix": time.time()})
        return
    write_provenance(folder, collect_provenance(cfg, source=source, wall_time_s=wall_time_s, extra=extra))


def card_stub(features, n: int, num_bytes: int, report: dict, extra: dict | None) -> str:
    """A minimal dataset card: the YAML header makes the folder loadable and viewable."""
    from huggingface_hub import DatasetCardData

    data = DatasetCardData(
        configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*.parquet"}]}],
        dataset_info={"features": features._to_yaml_list(),
                      "splits": [{"name": "train", "num_bytes": num_bytes, "num_examples": n}]},
        task_categories=["image-to-image"], tags=["super-resolution", "dataset-distillation", "hf_srdistill"],
    )
    kind = (extra or {}).get("kind", "image set")
    body = (f"# hf_srdistill {kind} set\n\n{n} HR images (`hr`) with class labels (`label`: the source photo) "
            "and their MATLAB-bicubic LR versions (`lr_x2`, `lr_x4` where the side divides).\n\n"
            "```python\nfrom datasets import load_dataset\nds = load_dataset(\"<this folder or repo>\", "
            "split=\"train\")\n```\n\n## Size\n\n```\n" + format_size_report(report) + "\n```\n\n"
            "Run configuration: `config.yaml`; provenance: `provenance.json`.\n")
    return f"---\n{data.to_yaml()}\n---\n\n{body}"
