"""`hf-srdistill plan`: what a run will cost, measured on this machine before it is started.

    hf-srdistill plan --config configs/distill_div2k_ipc1.yaml [--section.key=value ...]
    hf-srdistill plan --config distill_mini --photos 800 --photo-size 2040x1536

1. **Sizes.** Photos (classes) and sub-images come from the data when it is here (an existing
   sub-image cache, the mini photos, a folder or a DIV2K folder/zip: image headers only);
   otherwise from the known counts (DIV2K: 800 photos, 32,592 sub-images at 480/240/0) or from
   ``--photos N --photo-size WxH``. Absent data is replaced by stand-in photos of that
   resolution (smooth colour fields with noise), so every stage still runs the real code.
2. **Timings**, on this machine's device, at the config's sizes: two photos through the real
   sub-image cache build (``SubImageStore.build``); distillation iterations on a sample of
   classes through the loop's own pieces (``_Run.matching_step`` / ``train_reference`` for
   gm/dm, ``trajectory.unroll`` + backward for tm), a checkpoint and the set writer; training
   steps (Adam, the real patch dataset) of every reference, expert and judge model. Peak memory:
   process RSS on a CPU, ``torch.cuda.max_memory_allocated`` on CUDA.
3. **Projection** per stage and in total for 1/2/4/8 processes (the scaling rule of each stage is
   printed with the table), written with every measurement to ``plan.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from hf_srdistill.peak_memory import PeakMemory, chunk_that_fits, free_memory

# source -> (photos, sub-images at BasicSR's 480/240/0, a typical photo W x H), train split
KNOWN_SIZES = {"div2k": (800, 32592, (2040, 1536)), "photos": (16, 601, (2040, 1360))}
BASICSR_CROP = (480, 240, 0)
PROCESS_COUNTS = (1, 2, 4, 8)
SAMPLE_PHOTOS = 2
TRAIN_STEPS = 3  # timed training steps per model (after one warm-up step)
# distillation iterations timed after a warm-up: at least MIN, then more until TIME_BUDGET_S or MAX
MIN_ITERATIONS, MAX_ITERATIONS, TIME_BUDGET_S = 2, 8, 2.0
AUTO_SAMPLE = 32  # classes timed on a GPU when distill.classes_per_step=0 (auto)
LOOP_DECODED_CACHE_MB = 256  # what loop.distill's SubImageStore.build keeps decoded
MAIN_KEYS = {"model", "train", "eval", "sets", "judge_seeds", "output_dir", "reference_train", "reference_models"}
SCALING = {
    "sub-images": "one process builds the cache (the others wait): time and disk linear in sub-images, "
                  "memory one photo",
    "experts": "train_sr steps x runs, one after another; more processes grow the batch, not fewer steps",
    "references": "train_sr steps x models, one after another; more processes grow the batch, not fewer steps",
    "distill": "classes shard across processes: time/iteration = measured time per class x ceil(classes / P), "
               "with P devices like this one and no communication cost; checkpoints are written by one process",
    "distill-tm": "trajectory matching runs on one process only: the same time at every P",
    "write set": "one process: measured write of the sample + PNG encoding time per extra image",
    "coreset": "one process: scorer training steps (when no reference is trained) + a forward per candidate "
               "crop (image_size, non-overlapping) of every photo",
    "judges": "train_sr steps x sets x judge seeds, one after another",
}


class PlanError(ValueError):
    """The plan cannot size the data (absent data of unknown size); says which flags to pass."""


# ---- measuring ---------------------------------------------------------------------------

def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


# ---- sizes -------------------------------------------------------------------------------

@dataclasses.dataclass
class Sizes:
    photos: int
    subimages: int
    photo_size: tuple[int, int]  # a typical photo, W x H
    origin: str  # where the counts come from
    stand_in: bool  # the timed photos are stand-ins, not the data
    samples: list = dataclasses.field(default_factory=list, repr=False)  # HWC uint8 photos to time

    def as_dict(self) -> dict:
        return {"photos": self.photos, "subimages": self.subimages, "photo_size": list(self.photo_size),
                "origin": self.origin, "stand_in_photos": self.stand_in, "timed_photos": len(self.samples)}


def parse_photo_size(text: str) -> tuple[int, int]:
    """'2040x1536' -> (2040, 1536) (width, height)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise PlanError(f"--photo-size takes WIDTHxHEIGHT, e.g. 2040x1536, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise PlanError(f"--photo-size must be positive, got {text!r}")
    return w, h


def stand_in_photo(width: int, height: int, seed: int = 0) -> np.ndarray:
    """An HWC uint8 photo-like image: a smooth random colour field with sensor-like noise."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    coarse = (rng.random((height // 96 + 2, width // 96 + 2, 3)) * 200 + 28).astype(np.uint8)
    field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.float32)
    return np.clip(field + rng.normal(0, 5, field.shape), 0, 255).astype(np.uint8)


def _header_sizes(files: list[Path]) -> list[tuple[int, int]]:
    """(h, w) of image files from their headers (no decoding)."""
    from PIL import Image

    out = []
    for f in files:
        try:
            with Image.open(f) as img:
                w, h = img.size
        except OSError:
            continue  # the build skips undecodable files too
        out.append((h, w))
    return out


def _present(data) -> tuple[list[tuple[int, int]], list[np.ndarray], str] | None:
    """(photo sizes (h, w), a few decoded photos, origin) when the data is on this machine, else None."""
    from hf_srdistill.data.grouped import SubImageStore, _store_fingerprint
    from hf_srdistill.data.sources import iter_source_images, list_image_files

    try:
        cached = Path(data.cache_dir).expanduser() / "subimages" / _store_fingerprint(data)
    except Exception:  # noqa: BLE001 - a source that cannot even be fingerprinted here is absent
        cached = None
    if cached is not None and (cached / "meta.json").is_file():
        store = SubImageStore(cached)
        sizes = [store.source_size(c) for c in range(store.num_classes)]
        return sizes, [store.source_image(c) for c in range(min(SAMPLE_PHOTOS, store.num_classes))], \
            f"sub-image cache {cached}"
    files = None
    if data.source == "mini":
        photos = [img for _, img in iter_source_images(data)]
        return [p.shape[:2] for p in photos], photos[:SAMPLE_PHOTOS * 4], "data (mini photos)"
    if data.source == "folder" and data.path and Path(data.path).expanduser().is_dir():
        files = list_image_files(Path(data.path).expanduser())
    elif data.source == "div2k" and data.path:
        path = Path(data.path).expanduser()
        if path.is_dir():
            inner = [p for p in path.iterdir() if p.is_dir() and p.name.startswith("DIV2K_")]
            files = list_image_files(inner[0] if len(inner) == 1 else path)
        elif path.is_file():
            return _zip_sizes(path, data)
    elif data.source == "photos":
        from hf_srdistill.data.errors import DataNotFoundError
        from hf_srdistill.data.photos import prepare_photos

        try:
            files = list_image_files(prepare_photos(Path(data.cache_dir).expanduser(), data.split))
        except DataNotFoundError:
            return None
    if not files:
        return None
    files = files[: data.max_images] if data.max_images else files
    sizes = _header_sizes(files)
    cut = dataclasses.replace(data, max_images=SAMPLE_PHOTOS * 4)
    return sizes, [img for _, img in iter_source_images(cut)], f"data ({len(files)} files)"


def _zip_sizes(path: Path, data):
    import zipfile

    from PIL import Image

    sizes, samples = [], []
    with zipfile.ZipFile(path) as zf:
        names = sorted(n for n in zf.namelist() if n.lower().endswith((".png", ".jpg", ".jpeg")))
        names = names[: data.max_images] if data.max_images else names
        for name in names:
            with zf.open(name) as fh, Image.open(fh) as img:
                sizes.append((img.size[1], img.size[0]))
                if len(samples) < SAMPLE_PHOTOS * 4:
                    samples.append(np.asarray(img.convert("RGB")))
    return sizes, samples, f"data ({path.name}: {len(names)} images)"


def data_sizes(data, photos: int | None = None, photo_size: tuple[int, int] | None = None,
               min_side: int = 0) -> Sizes:
    """The run's photos and sub-images (see the module docstring) and the photos to time on.

    ``photos`` / ``photo_size`` (W, H) override what the data says and make stand-in photos.
    ``min_side``: timed photos must be at least this large (the synthetic image size).
    """
    from hf_srdistill.data.subimages import count_subimages

    crop = (data.crop_size, data.step, data.thresh_size)
    found = None if (photos or photo_size) else _present(data)
    if found is not None:
        sizes, decoded, origin = found
        usable = [(h, w) for h, w in sizes if min(h, w) >= data.crop_size]
        if not usable:
            raise PlanError(f"no photo of the data is at least data.crop_size={data.crop_size} px per side")
        subs = sum(count_subimages(h, w, *crop) for h, w in usable)
        h, w = sorted(usable)[len(usable) // 2]
        samples = [p for p in decoded if min(p.shape[:2]) >= max(data.crop_size, min_side)][:SAMPLE_PHOTOS]
        stand_in = not samples
        if stand_in:
            samples = [stand_in_photo(w, h, seed) for seed in range(SAMPLE_PHOTOS)]
        return Sizes(len(usable), subs, (w, h), origin, stand_in, samples)
    known = KNOWN_SIZES.get(data.source) if data.split == "train" else None
    if known is None and not (photos and photo_size):
        raise PlanError(f"the data of data.source={data.source} is not on this machine and its size is not "
                        "known: pass --photos N --photo-size WxH (e.g. --photos 800 --photo-size 2040x1536)")
    n = photos or known[0]
    if data.max_images:
        n = min(n, data.max_images)
    w, h = photo_size or known[2]
    if min(w, h) < data.crop_size:
        raise PlanError(f"--photo-size {w}x{h} is smaller than data.crop_size={data.crop_size}")
    if photo_size is None and photos is None and crop == BASICSR_CROP and n == known[0]:
        subs, origin = known[1], f"known {data.source} counts (data absent)"
    else:
        subs = n * count_subimages(h, w, *crop)
        origin = "--photos/--photo-size" if (photos or photo_size) else f"known {data.source} photo count"
    return Sizes(n, subs, (w, h), origin, True, [stand_in_photo(w, h, seed) for seed in range(SAMPLE_PHOTOS)])


# ---- a store of k classes made from the timed photos ---------------------------------------

class ClassView:
    """``k`` classes whose class c is class ``c % n`` of a small built store (timing only)."""

    def __init__(self, base, k: int) -> None:
        self.base, self.k = base, k
        self.fingerprint = base.fingerprint
        self.class_names = [f"{base.class_names[c % base.num_classes]}#{c}" for c in range(k)]

    @property
    def num_classes(self) -> int:
        return self.k

    def __len__(self) -> int:
        return len(self.base)

    def _b(self, c: int) -> int:
        if not 0 <= c < self.k:
            raise IndexError(f"class {c} out of range: the view has {self.k} classes")
        return c % self.base.num_classes

    def count(self, c):
        return self.base.count(self._b(c))

    def sample_patches(self, c, n, size, generator):
        return self.base.sample_patches(self._b(c), n, size, generator)

    def source_image(self, c):
        return self.base.source_image(self._b(c))

    def source_size(self, c):
        return self.base.source_size(self._b(c))

    def subimages(self, c):
        return self.base.subimages(self._b(c))

    def all_subimages(self):
        return self.base.all_subimages()


# ---- stages ------------------------------------------------------------------------------

def time_extraction(data, samples: list[np.ndarray], tmp: Path):
    """Build a sub-image cache of the timed photos with the real code; returns (store, measurement)."""
    from PIL import Image

    from hf_srdistill.config import DataConfig
    from hf_srdistill.data.grouped import SubImageStore

    folder = tmp / "photos"
    folder.mkdir(parents=True)
    for i, photo in enumerate(samples):
        Image.fromarray(photo).save(folder / f"photo_{i}.png", compress_level=1)
    cfg = DataConfig(source="folder", path=str(folder), crop_size=data.crop_size, step=data.step,
                     thresh_size=data.thresh_size, cache_dir=str(tmp / "cache"))
    with PeakMemory("cpu") as mem:
        t0 = time.perf_counter()
        store = SubImageStore.build(cfg)
        seconds = time.perf_counter() - t0
    return store, {"photos": len(samples), "subimages": len(store), "seconds": seconds,
                   "bytes": _folder_bytes(store.path), "peak_rss": mem.peak}


def reopen(store, decoded_cache_mb: float, total_subimages: int, crop: int):
    """The sample store as the real run reads it: with its decode cache only when the real data fits it
    (DIV2K's sub-images do not: nearly every patch is a PNG decode there). Returns (store, fits)."""
    from hf_srdistill.data.grouped import SubImageStore

    fits = total_subimages * crop * crop * 3 <= decoded_cache_mb * 2**20
    return SubImageStore(store.path, decoded_cache_mb=decoded_cache_mb if fits else 0), fits


def _train_images(store, decoded_cache_mb: float, total_subimages: int, crop: int):
    opened, fits = reopen(store, decoded_cache_mb, total_subimages, crop)
    return opened.all_subimages(), fits


def time_train_steps(model_cfg, batch: int, patch: int, loss: str, images, device, lr_cache: bool = True,
                     steps: int = TRAIN_STEPS) -> dict:
    """Seconds per train_sr step (patch sampling, forward, backward, Adam) and the peak memory."""
    import torch

    from hf_srdistill.data import PairedPatchDataset
    from hf_srdistill.models import build_model

    torch.manual_seed(0)
    model = build_model(model_cfg).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    ds = PairedPatchDataset(images, patch, model_cfg.scale, augment=True, lr_cache_mb=256 if lr_cache else 0)
    loss_fn = torch.nn.L1Loss() if loss == "l1" else torch.nn.MSELoss()
    rng = np.random.default_rng(0)

    def step():
        pairs = [ds[int(i)] for i in rng.integers(0, len(images), batch)]
        lr, hr = (torch.stack(t).to(device) for t in zip(*pairs))
        out = loss_fn(model(lr), hr)
        opt.zero_grad(set_to_none=True)
        out.backward()
        opt.step()

    step()
    _sync(device)
    with PeakMemory(device) as mem:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(device)
        seconds = (time.perf_counter() - t0) / steps
    params = sum(p.numel() for p in model.parameters())
    return {"model": f"{model_cfg.name} x{model_cfg.scale}", "batch": batch, "patch": patch, "seconds_per_step": seconds,
            "peak_memory": mem.peak, "parameters": params}


def time_coreset(cfg, sizes, images, device) -> dict:
    """The coreset set's cost: training its scorer when the job trains no reference
    (coreset.make_coreset_set's defaults), and scoring every candidate crop of every photo."""
    from hf_srdistill.data.subimages import count_subimages
    from hf_srdistill.distill.coreset import (DEFAULT_SCORER_ITERATIONS, SCORER_BATCH, SCORER_LOSS, class_crops,
                                              crop_losses, scorer_patch)
    from hf_srdistill.models import build_model
    from hf_srdistill.pipeline import scorer_config

    d = cfg.distill
    model_cfg, is_reference = scorer_config(cfg)
    train = None if is_reference else time_train_steps(model_cfg, SCORER_BATCH, scorer_patch(d.image_size),
                                                        SCORER_LOSS, images, device)
    _, crops = class_crops(sizes.samples[0], d.image_size, d.image_size)
    model = build_model(model_cfg).to(device)
    crop_losses(model, crops[:8], model_cfg.scale, device)  # warm-up
    _sync(device)
    with PeakMemory(device) as mem:
        t0 = time.perf_counter()
        crop_losses(model, crops, model_cfg.scale, device)
        _sync(device)
        per_crop = (time.perf_counter() - t0) / len(crops)
    w, h = sizes.photo_size
    candidates = sizes.photos * count_subimages(h, w, d.image_size, d.image_size, 0)  # class_crops' grid
    seconds = per_crop * candidates + (train["seconds_per_step"] * DEFAULT_SCORER_ITERATIONS if train else 0.0)
    peak = max(mem.peak, train["peak_memory"] if train else 0)
    return {"seconds": seconds, "seconds_per_crop": per_crop, "candidates": candidates, "peak_memory": peak,
            "scorer": f"{model_cfg.name} x{model_cfg.scale}", "scorer_training": train}


def _iteration(run, cfg, pretrained, device) -> None:
    """One iteration of loop.distill's body: reference, matching steps, inner training."""
    from hf_srdistill.distill.loop import reference_model

    model = reference_model(cfg, run.iteration, pretrained, device)
    for outer in range(cfg.distill.outer_loop):
        run.matching_step(model, outer)
        if outer < cfg.distill.outer_loop - 1:
            run.train_reference(model, outer)
    run.iteration += 1


def time_gm_dm(cfg, store, acc, pretrained, sample: int, tmp: Path) -> dict:
    """Iterations, a checkpoint and the set write of ``sample`` classes through the loop's own pieces."""
    from hf_srdistill.distill.checkpoint import save_checkpoint
    from hf_srdistill.distill.export import png_bytes
    from hf_srdistill.distill.loop import _Run, write_set
    from hf_srdistill.provenance import describe_source

    d = cfg.distill
    warm = _Run(cfg, acc, ClassView(store, 1), None, pretrained)  # first calls pay for kernel selection and allocation
    t0 = time.perf_counter()
    _iteration(warm, cfg, pretrained, acc.device)
    _sync(acc.device)
    slow = time.perf_counter() - t0 > TIME_BUDGET_S  # then one timed iteration (per pool member) is enough
    del warm
    run = _Run(cfg, acc, ClassView(store, sample), None, pretrained)
    times, cycle = [], max(1, len(pretrained))  # whole cycles of a reference pool
    with PeakMemory(acc.device) as mem:
        while len(times) < (1 if slow else MIN_ITERATIONS) or len(times) % cycle or \
                (sum(times) < TIME_BUDGET_S and len(times) < MAX_ITERATIONS):
            _sync(acc.device)
            t0 = time.perf_counter()
            _iteration(run, cfg, pretrained, acc.device)
            _sync(acc.device)
            times.append(time.perf_counter() - t0)
    run.snapshot()
    ckpt = tmp / "set" / "checkpoint" / "state.pt"
    t0 = time.perf_counter()
    state = run.state(run.images, run.momentum())
    save_checkpoint(ckpt, state, cfg, store.fingerprint)
    ckpt_s = time.perf_counter() - t0
    ckpt_bytes = _folder_bytes(ckpt.parent)
    shutil.rmtree(ckpt.parent)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the writer prints its size report
        write_set(cfg, ClassView(store, sample), state, tmp / "set", describe_source(cfg.data, store.fingerprint), 1)
    write_s = time.perf_counter() - t0
    # PNG encoding per further image (hr, lr_x2, lr_x4), what the writer spends per image
    from hf_srdistill.data import imresize

    img = state.images[:1]
    t0 = time.perf_counter()
    for x in (img, imresize(img, 0.5), imresize(img, 0.25)):
        png_bytes((x[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())
    png_s = time.perf_counter() - t0
    per_image = _folder_bytes(tmp / "set") / (sample * d.ipc)
    state_bytes = run.images.numel() * run.images.element_size()
    return {"sample_classes": sample, "iterations_timed": len(times), "seconds_per_iteration": statistics.mean(times),
            "seconds_per_class_iteration": statistics.mean(times) / sample, "peak_memory": mem.peak,
            "memory_before": mem.base, "memory_delta": mem.delta, "state_bytes_per_class": state_bytes / sample,
            "checkpoint_seconds": ckpt_s, "checkpoint_bytes": ckpt_bytes, "write_set_seconds": write_s,
            "png_seconds_per_image": png_s, "set_bytes_per_image": per_image, "classes_per_step": run.classes_per_step}


def time_tm(cfg, store, acc, classes: int) -> dict:
    """One trajectory-matching iteration (unroll + loss + backward) over the whole set, per expert model."""
    import torch

    from hf_srdistill.distill.trajectory import _flat, adam_preconditioner, expert_models, trajectory_loss, unroll
    from hf_srdistill.models import build_model

    d, tm, dev = cfg.distill, cfg.distill.tm, acc.device
    n = classes * d.ipc
    out = []
    for m in expert_models(cfg):
        torch.manual_seed(0)
        net = build_model(m).to(dev)
        net.requires_grad_(False)
        start = _flat(net).to(dev)
        target = start + 1e-3 * torch.randn_like(start)
        gen = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        precond = adam_preconditioner(net, start, store, tm.precond_batches, tm.expert_batch, tm.expert_patch, gen) \
            if tm.student == "adam" else None
        _sync(dev)
        precond_s = time.perf_counter() - t0
        images = torch.rand(n, 3, d.image_size, d.image_size, device=dev).requires_grad_(True)
        log_lr = torch.full((), math.log(1e-3), device=dev, requires_grad=True)
        unroll(net, start, images.detach(), log_lr.detach(), 1, tm.batch_syn, tm.patch_size, gen, precond)  # warm-up
        with PeakMemory(dev) as mem:
            t0 = time.perf_counter()
            end, _ = unroll(net, start, images, log_lr, tm.syn_steps, tm.batch_syn, tm.patch_size, gen, precond)
            trajectory_loss(end, start, target).backward()
            _sync(dev)
            seconds = time.perf_counter() - t0
        out.append({"model": f"{m.name} x{m.scale}", "seconds_per_iteration": seconds, "precond_seconds": precond_s,
                    "peak_memory": mem.peak, "parameters": int(start.numel())})
        del images, end
    return {"experts": out, "seconds_per_iteration": statistics.mean(o["seconds_per_iteration"] for o in out),
            "peak_memory": max(o["peak_memory"] for o in out), "state_bytes": n * 3 * d.image_size ** 2 * 4}


def _references(cfg, main_job: bool) -> tuple[list, str]:
    """The models distillation matches against (pretrained, or [] = fresh ones), and a note."""
    from hf_srdistill.distill.loop import load_references
    from hf_srdistill.models import build_model
    from hf_srdistill.pipeline import reference_models

    d = cfg.distill
    if main_job and cfg.reference_train is not None:
        models = [build_model(m) for m in reference_models(cfg)]
        return models, "references trained by the job: timed with fresh weights"
    if not (d.reference_path or d.reference_pool):
        return [], "a fresh reference per iteration"
    try:
        return load_references(d), "the configured pretrained references"
    except Exception as err:  # noqa: BLE001 - absent models are timed as distill.reference, said so
        n = len(d.reference_pool) or 1
        return [build_model(d.reference) for _ in range(n)], (f"references not loadable here ({err}); timed as "
                                                               f"{n} x distill.reference")


# ---- the plan ----------------------------------------------------------------------------

def _stage(name: str, seconds: dict, memory: dict, disk: int, scaling: str, note: str = "") -> dict:
    return {"stage": name, "time_s": {str(p): float(seconds[p]) for p in PROCESS_COUNTS},
            "memory_bytes": {str(p): int(memory[p]) for p in PROCESS_COUNTS}, "disk_bytes": int(disk),
            "scaling": scaling, "note": note}


def _same(value) -> dict:
    return {p: value for p in PROCESS_COUNTS}


def make_plan(cfg, photos: int | None = None, photo_size: tuple[int, int] | None = None,
              sample_classes: int | None = None) -> dict:
    """Measure and project a DistillJobConfig or MainJobConfig run; returns the plan (plan.json's content)."""
    import torch

    from hf_srdistill.accel import make_accelerator
    from hf_srdistill.config import DataConfig, MainJobConfig
    from hf_srdistill.configio import to_dict

    main_job = isinstance(cfg, MainJobConfig)
    d = cfg.distill
    notes = []
    if d.init == "latent":
        notes.append(f"init=latent: timed as pixel distillation from {d.latent.init_from}; the generator's "
                     "decode and backward are not included")
        d = dataclasses.replace(d, init=d.latent.init_from)
    if d.grouping != "class":
        notes.append(f"grouping={d.grouping}: {d.num_images // d.ipc} matching units timed as classes"
                     + ("; k-means clustering of the sub-images not timed" if d.grouping == "kmeans" else ""))
    sizes = data_sizes(cfg.data, photos, photo_size, min_side=d.image_size)
    classes = sizes.photos if d.grouping == "class" else d.num_images // d.ipc
    acc = make_accelerator()
    device = acc.device
    tmp = Path(tempfile.mkdtemp(prefix="hf_srdistill_plan_"))
    started = time.perf_counter()
    try:
        store, extraction = time_extraction(cfg.data, sizes.samples, tmp)
        plan_data = DataConfig(source="folder", path=str(tmp / "photos"), crop_size=cfg.data.crop_size,
                               step=cfg.data.step, thresh_size=cfg.data.thresh_size, cache_dir=str(tmp / "cache"))
        d = dataclasses.replace(d, grouping="class", num_images=None, output_dir=str(tmp / "set"), log_with=[],
                                resume=False)
        from hf_srdistill.config import DistillJobConfig

        run_cfg = DistillJobConfig(data=plan_data, distill=d)
        stages, measured = [], {"extraction": extraction}
        per_sub = extraction["seconds"] / extraction["subimages"]
        stages.append(_stage("sub-images", _same(per_sub * sizes.subimages), _same(extraction["peak_rss"]),
                             extraction["bytes"] / extraction["subimages"] * sizes.subimages, SCALING["sub-images"],
                             f"{extraction['photos']} {'stand-in' if sizes.stand_in else 'real'} photos timed"))
        crop = cfg.data.crop_size
        loop_store, _ = reopen(store, LOOP_DECODED_CACHE_MB, sizes.subimages, crop)
        from hf_srdistill.pipeline import reference_models, trains_references

        if main_job and trains_references(cfg):
            rt = cfg.reference_train
            images, fits = _train_images(store, rt.decoded_cache_mb, sizes.subimages, crop)
            runs = [time_train_steps(m, rt.batch_size, rt.patch_size, rt.loss, images, device, fits)
                    for m in reference_models(cfg)]
            measured["references"] = runs
            seconds = sum(r["seconds_per_step"] for r in runs) * rt.iterations
            disk = sum(r["parameters"] * 4 * 4 for r in runs)  # weights + Adam state + a checkpoint copy
            stages.append(_stage("references", _same(seconds), _same(max(r["peak_memory"] for r in runs)), disk,
                                 SCALING["references"], f"{len(runs)} model(s) x {rt.iterations} steps"))
        if d.objective == "tm":
            tm = d.tm
            images, fits = _train_images(store, 1024, sizes.subimages, crop)
            runs = [time_train_steps(m, tm.expert_batch, tm.expert_patch, "l1", images, device, fits)
                    for m in (tm.models or [d.reference])]
            measured["experts"] = runs
            n_ckpt = tm.expert_steps // tm.expert_every
            seconds = sum(r["seconds_per_step"] for r in runs) * tm.expert_steps * tm.num_experts
            disk = sum(r["parameters"] * 4 * (2 * n_ckpt + 4) for r in runs) * tm.num_experts
            stages.append(_stage("experts", _same(seconds), _same(max(r["peak_memory"] for r in runs)), disk,
                                 SCALING["experts"], f"{len(runs)} model(s) x {tm.num_experts} run(s) x "
                                                     f"{tm.expert_steps} steps"))
        if not main_job or "distilled" in cfg.sets:
            if d.objective == "tm":
                m = time_tm(run_cfg, ClassView(loop_store, classes), acc, classes)
                measured["distill"] = m
                keys = min(d.iterations, len(m["experts"]) * d.tm.num_experts * (d.tm.max_start - d.tm.min_start))
                precond = statistics.mean(e["precond_seconds"] for e in m["experts"]) * keys \
                    if d.tm.student == "adam" else 0.0
                ckpts = d.iterations // d.checkpoint_every + (1 if d.iterations % d.checkpoint_every else 0)
                ckpt_bytes = m["state_bytes"] * 2
                seconds = m["seconds_per_iteration"] * d.iterations + precond
                stages.append(_stage("distill", _same(seconds), _same(m["peak_memory"]), ckpt_bytes,
                                     SCALING["distill-tm"], f"tm, {d.tm.syn_steps} student steps, {classes * d.ipc} "
                                                            f"images; {ckpts} checkpoints"))
                write = {"seconds": 0.0, "bytes": 0}
            else:
                sample = sample_classes or min(classes, (d.classes_per_step or AUTO_SAMPLE) if device.type == "cuda"
                                               else 2)
                sample = max(1, min(sample, classes))
                pretrained = _references(cfg if main_job else run_cfg, main_job)
                notes.append(f"reference: {pretrained[1]}")
                m = time_gm_dm(run_cfg, loop_store, acc, pretrained[0], sample, tmp)
                measured["distill"] = m
                ckpts = d.iterations // d.checkpoint_every + (1 if d.iterations % d.checkpoint_every else 0)
                ckpt_scale = max(1.0, classes / sample)
                ckpt_s = m["checkpoint_seconds"] * ckpt_scale * ckpts
                seconds, memory = {}, {}
                for p in PROCESS_COUNTS:
                    per_process = math.ceil(classes / p)
                    seconds[p] = m["seconds_per_class_iteration"] * per_process * d.iterations + ckpt_s
                    # working memory grows with the chunk on a GPU (vmap over it); state with the classes held
                    work = m["memory_delta"] - m["state_bytes_per_class"] * sample
                    if device.type == "cuda":
                        per_class = work / min(sample, m["classes_per_step"])
                        chunk = min(per_process, d.classes_per_step) if d.classes_per_step else \
                            chunk_that_fits(per_class, free_memory(device), per_process)  # what auto will choose
                        work = per_class * chunk
                    gathered = m["state_bytes_per_class"] * classes * 2 if p > 1 else 0  # main gathers the set
                    memory[p] = m["memory_before"] + max(work, 0) + 6 * m["state_bytes_per_class"] * per_process \
                        + gathered
                ckpt_bytes = m["checkpoint_bytes"] * ckpt_scale
                stages.append(_stage("distill", seconds, memory, ckpt_bytes, SCALING["distill"],
                                     f"{d.objective}, {sample} of {classes} classes timed, {d.iterations} iterations, "
                                     f"{ckpts} checkpoints"))
                write = {"seconds": m["write_set_seconds"] + m["png_seconds_per_image"] * (classes - sample) * d.ipc,
                         "bytes": m["set_bytes_per_image"] * classes * d.ipc}
            if write["seconds"]:
                stages.append(_stage("write set", _same(write["seconds"]), _same(measured["distill"]["peak_memory"]),
                                     write["bytes"], SCALING["write set"], f"{classes * d.ipc} images"))
        if main_job:
            tc = cfg.train
            judges = []
            for kind in cfg.sets:
                if kind == "full":
                    images, fits = _train_images(store, tc.decoded_cache_mb, sizes.subimages, crop)
                else:
                    rng = np.random.default_rng(0)
                    images = [rng.integers(0, 256, (d.image_size, d.image_size, 3), dtype=np.uint8)
                              for _ in range(min(classes * d.ipc, 64))]
                    fits = True
                r = time_train_steps(cfg.model, tc.batch_size, tc.patch_size, tc.loss, images, device, fits)
                r["set"] = kind
                judges.append(r)
            measured["judges"] = judges
            if "coreset" in cfg.sets:
                m = time_coreset(cfg, sizes, _train_images(store, tc.decoded_cache_mb, sizes.subimages, crop)[0],
                                 device)
                measured["coreset"] = m
                trained = "trained reference" if m["scorer_training"] is None else "scorer trained by the coreset"
                stages.append(_stage("coreset", _same(m["seconds"]), _same(m["peak_memory"]), 0, SCALING["coreset"],
                                     f"{m['candidates']} crops scored by the {trained} ({m['scorer']})"))
            n_seeds = len(cfg.judge_seeds)
            seconds = sum(r["seconds_per_step"] for r in judges) * tc.iterations * n_seeds
            disk = sum(r["parameters"] * 4 for r in judges) * n_seeds
            stages.append(_stage("judges", _same(seconds), _same(max(r["peak_memory"] for r in judges)), disk,
                                 SCALING["judges"], f"{len(cfg.sets)} sets x {n_seeds} seeds x {tc.iterations} steps"
                                                    "; evaluation not timed"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = _stage("total", {p: sum(s["time_s"][str(p)] for s in stages) for p in PROCESS_COUNTS},
                   {p: max(s["memory_bytes"][str(p)] for s in stages) for p in PROCESS_COUNTS},
                   sum(s["disk_bytes"] for s in stages), "sum of the stages; memory = the largest stage's")
    return {"job": "main" if main_job else "distill", "config": to_dict(cfg), "device": describe_device(device),
            "memory_kind": "CUDA max_memory_allocated per process" if device.type == "cuda"
            else "process RSS per process",
            "sizes": {**sizes.as_dict(), "classes": classes}, "measurements": measured, "stages": stages,
            "total": total, "notes": notes, "planning_seconds": time.perf_counter() - started,
            "assumptions": [f"{st['stage']}: {st['scaling']}" for st in stages]}


def describe_device(device) -> dict:
    import torch

    if device.type == "cuda":
        return {"type": "cuda", "name": torch.cuda.get_device_name(device),
                "memory_bytes": torch.cuda.get_device_properties(device).total_memory}
    return {"type": "cpu", "name": platform.processor() or platform.machine(), "logical_cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg()[0]}


# ---- printing ----------------------------------------------------------------------------

def fmt_time(s: float) -> str:
    if s < 90:
        return f"{s:.1f} s"
    if s < 90 * 60:
        return f"{s / 60:.1f} min"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def fmt_bytes(b: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if b >= size:
            return f"{b / size:.1f} {unit}"
    return f"{int(b)} B"


def format_plan(plan: dict) -> str:
    s, dev = plan["sizes"], plan["device"]
    where = dev["name"] + (f", {dev['torch_threads']} torch threads, load {dev['load_average']:.1f}"
                           if dev["type"] == "cpu" else "")
    lines = [f"plan ({plan['job']} job) on {dev['type']}: {where}",
             f"data: {s['photos']} photos, {s['subimages']} sub-images, {s['classes']} classes "
             f"({s['origin']}; typical photo {s['photo_size'][0]}x{s['photo_size'][1]}"
             f"{', stand-in photos timed' if s['stand_in_photos'] else ''})"]
    head = f"{'stage':<11}" + "".join(f"{'P=' + str(p):>10}" for p in PROCESS_COUNTS) + \
        f"{'peak mem P=1':>14}{'P=8':>11}{'disk':>11}"
    lines += ["", head, "-" * len(head)]
    for st in plan["stages"] + [plan["total"]]:
        if st["stage"] == "total":
            lines.append("-" * len(head))
        lines.append(f"{st['stage']:<11}" + "".join(f"{fmt_time(st['time_s'][str(p)]):>10}" for p in PROCESS_COUNTS)
                     + f"{fmt_bytes(st['memory_bytes']['1']):>14}{fmt_bytes(st['memory_bytes']['8']):>11}"
                     + f"{fmt_bytes(st['disk_bytes']):>11}")
    lines += ["", f"memory: {plan['memory_kind']}. Scaling assumptions:"]
    lines += [f"  {st['stage']}: {st['scaling']}" + (f" [{st['note']}]" if st["note"] else "") for st in plan["stages"]]
    lines += [f"note: {n}" for n in plan["notes"]]
    m = plan["measurements"].get("distill")
    if m and "seconds_per_class_iteration" in m:
        lines.append(f"measured: {m['seconds_per_iteration']:.3f} s per iteration of {m['sample_classes']} classes "
                     f"({m['seconds_per_class_iteration']:.3f} s per class-iteration), checkpoint "
                     f"{m['checkpoint_seconds']:.3f} s, set write {m['write_set_seconds']:.2f} s")
    elif m:
        lines.append(f"measured: {m['seconds_per_iteration']:.3f} s per tm iteration")
    e = plan["measurements"]["extraction"]
    lines.append(f"measured: sub-images {e['seconds'] / e['subimages'] * 1e3:.1f} ms and "
                 f"{fmt_bytes(e['bytes'] / e['subimages'])} each ({e['subimages']} from {e['photos']} photos); "
                 f"planning took {plan['planning_seconds']:.1f} s")
    return "\n".join(lines)


# ---- command line ------------------------------------------------------------------------

def choose_job(path: Path | None, overrides: list[str]):
    """MainJobConfig when the YAML or an override names a main-job key, else DistillJobConfig."""
    from hf_srdistill import config as C
    from hf_srdistill.configio import read_config_file

    keys = set()
    if path is not None and path.is_file():
        keys |= set(read_config_file(path))
    keys |= {o.lstrip("-").split("=")[0].split(".")[0] for o in overrides}
    return C.MainJobConfig if keys & MAIN_KEYS else C.DistillJobConfig


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hf-srdistill plan", description=__doc__.split("\n")[0].split(": ", 1)[1],
                                epilog="Any other --section.key=value is a config override (as for distill/main).")
    p.add_argument("--config", help="a distill or main YAML file, or the NAME of a bundled config")
    p.add_argument("--photos", type=int, default=None, help="plan for N source photos (stand-ins; overrides the data)")
    p.add_argument("--photo-size", default=None, metavar="WxH", help="stand-in photo resolution, e.g. 2040x1536")
    p.add_argument("--sample-classes", type=int, default=None,
                   help="classes timed per distillation iteration (default 2 on a CPU, classes_per_step on CUDA)")
    p.add_argument("--job", choices=["auto", "distill", "main"], default="auto")
    p.add_argument("--out", default=None, help="where plan.json goes (default outputs/plan/<config name>/plan.json)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return p


def main(argv: list[str] | None = None) -> int:
    from hf_srdistill import config as C
    from hf_srdistill.cli import check_model_names, known_errors, resolve_config
    from hf_srdistill.configio import ConfigError, load_config

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "plan":
        argv = argv[1:]
    args, rest = parser().parse_known_args(argv)
    if args.verbose or args.quiet:
        import logging

        logging.getLogger("hf_srdistill").setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    try:
        path = resolve_config(args.config)
        cls = {"distill": C.DistillJobConfig, "main": C.MainJobConfig}.get(args.job) or choose_job(path, rest)
        cfg = load_config(cls, path, rest)
        check_model_names(cfg)
        size = parse_photo_size(args.photo_size) if args.photo_size else None
        if args.photos is not None and args.photos <= 0:
            raise PlanError(f"--photos must be positive, got {args.photos}")
    except (ConfigError, ValueError) as err:
        print(f"hf-srdistill plan: config error: {err}", file=sys.stderr)
        return 2
    try:
        plan = make_plan(cfg, args.photos, size, args.sample_classes)
    except (PlanError, *known_errors()) as err:
        print(f"hf-srdistill plan: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("outputs/plan") / (path.stem if path else "default") / "plan.json"
    from hf_srdistill.io import write_json

    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, plan)
    print(format_plan(plan))
    print(f"\nhf-srdistill plan: written {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
