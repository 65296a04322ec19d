"""SR training on any image set (real sub-images or a distilled folder), with Accelerate.

Sample k of a run is a pure function of (seed, k), so a resumed run replays exactly the
batches an uninterrupted run would have drawn, on any number of processes.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from hf_srdistill.accel import make_accelerator, seed_for
from hf_srdistill.config import TrainJobConfig
from hf_srdistill.data import PairedPatchDataset, SubImageStore
from hf_srdistill.io import write_json
from hf_srdistill.models import build_model

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"


class SeededSamples(Dataset):
    """Wraps a patch dataset so that sample k depends only on (seed, k)."""

    def __init__(self, base: Dataset, seed: int, total: int):
        self.base, self.seed, self.total = base, seed, total

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, k: int):
        g = torch.Generator().manual_seed(seed_for(self.seed, k))
        index = int(torch.randint(len(self.base), (1,), generator=g))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(2**62, (1,), generator=g)))
            return self.base[index]


def load_image_set(path: str, revision: str | None = None) -> list[np.ndarray]:
    """HR images of a distilled/baseline set: a local folder or a Hub dataset id."""
    from datasets import load_dataset

    ds = load_dataset(path, split="train", revision=revision)
    if "hr" not in ds.column_names:
        raise ValueError(f"{path}: a training set needs an 'hr' image column, found {ds.column_names}")
    return [np.asarray(img.convert("RGB")) for img in ds["hr"]]


def training_images(cfg: TrainJobConfig) -> Sequence[np.ndarray]:
    if cfg.train.train_set:
        return load_image_set(cfg.train.train_set)
    return SubImageStore.build(cfg.data).all_subimages()


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainJobConfig):
    n = cfg.train.iterations
    if cfg.train.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=n, eta_min=cfg.train.lr * 0.01)
    if cfg.train.scheduler == "step":  # EDSR-style halving, at fixed fractions of the run
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, [n // 2, 3 * n // 4], gamma=0.5)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def _batch_indices(start: int, iterations: int, batch: int, rank: int, world: int):
    """Global sample numbers for this rank, from step `start` on."""
    for step in range(start, iterations):
        base = (step * world + rank) * batch
        yield list(range(base, base + batch))


def train_sr(cfg: TrainJobConfig) -> Path:
    """Train cfg.model on cfg.train.train_set (or the data source); returns the model folder."""
    t0 = time.time()
    tc = cfg.train
    out = Path(tc.output_dir)
    accelerator = make_accelerator()
    torch.manual_seed(tc.seed)
    model = build_model(cfg.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr)
    scheduler = make_scheduler(optimizer, cfg)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    start = 0
    ckpt = out / CHECKPOINT_DIR
    if tc.resume and (ckpt / "trainer_state.json").is_file():
        accelerator.load_state(str(ckpt))
        start = json.loads((ckpt / "trainer_state.json").read_text())["step"]
        logger.info("resuming %s from step %d", out, start)
    if start >= tc.iterations and (out / "model.safetensors").is_file():
        return out

    images = training_images(cfg)
    patches = PairedPatchDataset(images, tc.patch_size, cfg.model.scale, augment=tc.augment)
    total = tc.iterations * tc.batch_size * accelerator.num_processes
    loader = DataLoader(SeededSamples(patches, tc.seed, total), num_workers=tc.num_workers,
                        batch_sampler=list(_batch_indices(start, tc.iterations, tc.batch_size,
                                                          accelerator.process_index,
                                                          accelerator.num_processes)))
    loss_fn = torch.nn.L1Loss() if tc.loss == "l1" else torch.nn.MSELoss()
    model.train()
    bar = tqdm(total=tc.iterations, initial=start, desc=f"train {cfg.model.name}",
               disable=not accelerator.is_local_main_process)
    for step, (lr_img, hr_img) in enumerate(loader, start=start + 1):
        lr_img, hr_img = lr_img.to(accelerator.device), hr_img.to(accelerator.device)
        loss = loss_fn(model(lr_img), hr_img)
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss is {loss.item()} at step {step}; last good "
                                     f"checkpoint kept in {ckpt}")
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if step % tc.checkpoint_every == 0 and step < tc.iterations:
            save_checkpoint(accelerator, ckpt, step)
    bar.close()

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        accelerator.unwrap_model(model).save_pretrained(out)
        _write_provenance(out, cfg, len(images), time.time() - t0)
        shutil.rmtree(ckpt, ignore_errors=True)
    accelerator.wait_for_everyone()
    return out


def save_checkpoint(accelerator, ckpt: Path, step: int) -> None:
    """Write the full training state to a temp folder, then swap it in (a kill never corrupts it)."""
    tmp = ckpt.with_name(ckpt.name + ".tmp")
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        write_json(tmp / "trainer_state.json", {"step": step})
        old = ckpt.with_name(ckpt.name + ".old")
        if ckpt.exists():
            ckpt.rename(old)
        tmp.rename(ckpt)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _write_provenance(out: Path, cfg: TrainJobConfig, n_images: int, wall: float) -> None:
    from hf_srdistill.provenance import collect_provenance, write_provenance

    source = {"train_set": cfg.train.train_set, "num_train_images": n_images}
    if not cfg.train.train_set:
        source.update(source=cfg.data.source, hub_id=cfg.data.hub_id, revision=cfg.data.revision)
    write_provenance(out, collect_provenance(cfg, source=source, wall_time_s=wall))
