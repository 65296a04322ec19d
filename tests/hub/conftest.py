"""Hand-made artifact folders in the documented formats, built from real photos."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from hf_srdistill import config as C
from hf_srdistill.configio import dump_yaml
from hf_srdistill.data import imresize
from hf_srdistill.data.set_folder import write_manifest
from hf_srdistill.io import write_json, write_text
from hf_srdistill.provenance import collect_provenance, describe_source, write_provenance

SENTINEL_TOKEN = "hf_SENTINELtokenNEVERwritten0123456789"
CLASSES = ["astronaut", "coffee", "chelsea"]


def _png(arr: np.ndarray) -> dict:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return {"bytes": buf.getvalue(), "path": None}


def photo_crops(size: int = 32, ipc: int = 2) -> list[tuple[int, int, np.ndarray]]:
    """(label, ipc_index, HWC uint8) crops of scikit-image photos: real pixels, tiny."""
    from skimage import data

    out = []
    for label, name in enumerate(CLASSES):
        img = getattr(data, name)()
        for k in range(ipc):
            top, left = 40 + 50 * k, 60 + 30 * k
            out.append((label, k, np.ascontiguousarray(img[top:top + size, left:left + size, :3])))
    return out


def lr_of(hr: np.ndarray, scale: int) -> np.ndarray:
    x = torch.from_numpy(hr).permute(2, 0, 1).double()[None] / 255.0
    y = imresize(x, 1.0 / scale)[0].clamp(0, 1)
    return (y * 255 + 0.5).floor().to(torch.uint8).permute(1, 2, 0).numpy()


def make_set_folder(folder, ipc: int = 2, size: int = 32, results: bool = True):
    """A distilled-set folder as distill/ writes it: parquet shard + provenance + reports."""
    from datasets import ClassLabel, Dataset, Features, Image as ImageFeature, Value

    crops = photo_crops(size, ipc)
    features = Features({"hr": ImageFeature(), "label": ClassLabel(names=CLASSES),
                         "ipc_index": Value("int32"), "lr_x2": ImageFeature(), "lr_x4": ImageFeature()})
    ds = Dataset.from_dict({"hr": [_png(c) for _, _, c in crops], "label": [lab for lab, _, _ in crops],
                            "ipc_index": [k for _, k, _ in crops],
                            "lr_x2": [_png(lr_of(c, 2)) for _, _, c in crops],
                            "lr_x4": [_png(lr_of(c, 4)) for _, _, c in crops]}, features=features)
    (folder / "data").mkdir(parents=True)
    ds.to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    cfg = C.DistillJobConfig(distill=C.DistillConfig(ipc=ipc, image_size=size, seed=3))
    write_text(folder / "config.yaml", dump_yaml(cfg))
    write_provenance(folder, collect_provenance(
        cfg, source=describe_source(cfg.data, fingerprint="fp-1234"), wall_time_s=12.0,
        extra={"kind": "distilled"}))
    n = len(crops)
    write_json(folder / "size_report.json", {
        "synthetic": {"images": n, "pixels": n * size * size, "png_bytes": 9000},
        "subimages": {"images": 300, "pixels": 300 * 192 * 192, "png_bytes": 9_000_000},
        "reduction_vs_subimages_pct": {"images": 98.0, "pixels": 99.9, "png_bytes": 99.9}})
    if results:
        write_json(folder / "results.json", {"scale": 2, "results": {
            "bicubic": {"mini": {"psnr": 30.12, "ssim": 0.8811, "lpips": None}},
            "srcnn on distilled": {"mini": {"psnr": 31.5, "ssim": 0.9012, "lpips": 0.1234}}}})
    Image.fromarray(crops[0][2]).save(folder / "samples.png")
    write_manifest(folder, n)
    return folder, crops


def make_model_folder(folder, train_set: str | None = None, evals: bool = True):
    """A trained-model folder: save_pretrained output + provenance (+ eval_results.json)."""
    from hf_srdistill.models import build_model

    cfg = C.TrainJobConfig(model=C.ModelConfig(name="srcnn", scale=2, num_features=4),
                           train=C.TrainConfig(train_set=train_set, iterations=5, seed=1))
    torch.manual_seed(0)
    model = build_model(cfg.model)
    model.save_pretrained(folder)
    write_provenance(folder, collect_provenance(cfg, source={"train_set": train_set, "num_train_images": 6},
                                                wall_time_s=3.0))
    if evals:
        write_json(folder / "eval_results.json", {"scale": 2, "results": {
            "mini": {"psnr": 29.876, "ssim": 0.8543, "lpips": 0.2101},
            "set5": {"psnr": 33.21, "ssim": 0.9156, "lpips": None}}})
    return folder, model


@pytest.fixture
def set_folder(tmp_path):
    return make_set_folder(tmp_path / "set")[0]


@pytest.fixture
def model_folder(tmp_path):
    return make_model_folder(tmp_path / "model")[0]
