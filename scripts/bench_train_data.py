"""Training batches from a DIV2K-size sub-image store vs a BasicSR-style loader of PNG files.

    python scripts/bench_train_data.py                 # 10 photos of 2040x1356 -> 480-px sub-images, x4
    python scripts/bench_train_data.py --photos 4 --batches 50 --workers 0

A full-data judge (or a distillation reference) draws every patch from a random 480-px
sub-image. Here the sub-images hold more pixels than the decoded cache (``--cache-mb``), as
DIV2K's 32,592 do for any cache, so most patches start from a PNG decode. Rows, side by side
in one run on the same sub-images:

- ``store``: this project's path, exactly as ``train_sr`` builds it: the sub-image store
  (PNG bytes in parquet, an LRU of decoded sub-images), ``PairedPatchDataset`` (LR made from
  the HR window, MATLAB bicubic), per-sample seeding, a ``DataLoader`` with ``--workers``.
- ``basicsr``: BasicSR's ``PairedImageDataset`` recipe written out: GT and pre-made LQ
  sub-images as PNG files on disk, both read per sample (cv2 when installed, as BasicSR
  does, else PIL), an aligned random crop, flips and a transpose; the same ``DataLoader``.

It prints patches/s and the ratio; whether that feeds a GPU step is the step rate you
measure there (``bench_distill.py --device cuda`` or ``hf-srdistill plan``) times the batch.
"""

from __future__ import annotations

import argparse
import platform
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


def _read_rgb(path: Path) -> np.ndarray:
    try:
        import cv2
    except ImportError:
        from PIL import Image

        return np.asarray(Image.open(path).convert("RGB"))
    return cv2.imread(str(path), cv2.IMREAD_COLOR)[:, :, ::-1]


class PngPairs(Dataset):
    """BasicSR-style paired patches: GT and LQ PNG files, random aligned crop, flip/rot."""

    def __init__(self, gt: list[Path], lq: list[Path], patch: int, scale: int) -> None:
        self.gt, self.lq, self.patch, self.scale = gt, lq, patch, scale

    def __len__(self) -> int:
        return len(self.gt)

    def __getitem__(self, i: int):
        gt, lq = _read_rgb(self.gt[i]), _read_rgb(self.lq[i])
        p = self.patch // self.scale
        y, x = random.randint(0, lq.shape[0] - p), random.randint(0, lq.shape[1] - p)
        lq = lq[y:y + p, x:x + p]
        gt = gt[y * self.scale:(y + p) * self.scale, x * self.scale:(x + p) * self.scale]
        if random.random() < 0.5:
            gt, lq = gt[:, ::-1], lq[:, ::-1]
        if random.random() < 0.5:
            gt, lq = gt[::-1], lq[::-1]
        if random.random() < 0.5:
            gt, lq = gt.transpose(1, 0, 2), lq.transpose(1, 0, 2)
        to = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float() / 255  # noqa: E731
        return to(lq), to(gt)


class RandomIndex(Dataset):
    def __init__(self, base: Dataset, total: int) -> None:
        self.base, self.total = base, total

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, k: int):
        return self.base[random.randrange(len(self.base))]


def patches_per_s(dataset: Dataset, batch: int, batches: int, workers: int) -> float:
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, shuffle=False)
    it = iter(loader)
    next(it)  # worker start-up is not the steady state
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch / (time.perf_counter() - t0)


def build(tmp: Path, photos: int, size: tuple[int, int], scale: int, cache_mb: float):
    from hf_srdistill.config import DataConfig
    from hf_srdistill.data import imresize
    from hf_srdistill.data.grouped import SubImageStore
    from hf_srdistill.plan import stand_in_photo
    from PIL import Image

    (tmp / "photos").mkdir()
    for i in range(photos):
        Image.fromarray(stand_in_photo(*size, seed=i)).save(tmp / "photos" / f"{i:04d}.png")
    data = DataConfig(source="folder", path=str(tmp / "photos"), crop_size=480, step=240,
                      cache_dir=str(tmp / "cache"))
    store = SubImageStore.build(data, decoded_cache_mb=cache_mb)
    gt, lq = [], []
    for d in ("gt", "lq"):
        (tmp / d).mkdir()
    for i, sub in enumerate(store.all_subimages()):
        gt.append(tmp / "gt" / f"{i:05d}.png")
        lq.append(tmp / "lq" / f"{i:05d}.png")
        Image.fromarray(sub).save(gt[-1], compress_level=1)  # BasicSR's extract_subimages level
        hr = torch.from_numpy(np.ascontiguousarray(sub.transpose(2, 0, 1))).float() / 255
        lr = (imresize(hr, 1 / scale).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(lr).save(lq[-1], compress_level=1)
    store = SubImageStore.build(data, decoded_cache_mb=cache_mb)  # a fresh LRU: nothing decoded yet
    return store, gt, lq


def main(argv: list[str] | None = None) -> int:
    from hf_srdistill.data import PairedPatchDataset
    from hf_srdistill.train import SeededSamples

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--photos", type=int, default=10)
    p.add_argument("--photo-size", default="2040x1356", help="WxH of the stand-in photos (DIV2K's scale)")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--patch", type=int, default=192, help="HR patch side (EDSR x4: 48-px LR)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--batches", type=int, default=100)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    p.add_argument("--cache-mb", type=float, default=64.0, help="the store's decoded-sub-image cache")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    size = tuple(int(v) for v in args.photo_size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        store, gt, lq = build(Path(tmp), args.photos, size, args.scale, args.cache_mb)
        try:
            import cv2  # noqa: F401
            reader = "cv2"
        except ImportError:
            reader = "PIL"
        decoded = len(gt) * 480 * 480 * 3 / 2**20
        print(f"machine: {platform.machine()}, {torch.get_num_threads()} torch thread(s) a process, torch "
              f"{torch.__version__}; {len(gt)} sub-images of 480 px from {args.photos} photos of {args.photo_size} "
              f"({decoded:.0f} MiB decoded, cache {args.cache_mb:g} MiB); x{args.scale}, {args.patch}-px HR "
              f"patches, batch {args.batch}, {args.batches} batches a row; basicsr reads with {reader}; "
              f"set-up {time.time() - t0:.0f} s")
        print(f"{'workers':>7} {'loader':>8} {'patches/s':>10} {'vs basicsr':>11}")
        total = (args.batches + 1) * args.batch
        for workers in args.workers:
            ours = SeededSamples(PairedPatchDataset(store.all_subimages(), args.patch, args.scale, augment=True),
                                 seed=0, total=total)
            theirs = RandomIndex(PngPairs(gt, lq, args.patch, args.scale), total)
            rates = {"basicsr": patches_per_s(theirs, args.batch, args.batches, workers),
                     "store": patches_per_s(ours, args.batch, args.batches, workers)}
            for name, r in rates.items():
                ratio = f"{r / rates['basicsr']:.2f}x" if name != "basicsr" else ""
                print(f"{workers:>7} {name:>8} {r:>10.0f} {ratio:>11}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
