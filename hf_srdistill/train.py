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
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from hf_srdistill.accel import make_accelerator, seed_for
from hf_srdistill.config import TrainJobConfig
from hf_srdistill.configio import ConfigError, flatten, to_dict
from hf_srdistill.data import PairedPatchDataset, SubImageStore
from hf_srdistill.data.set_folder import read_set_images, set_digest
from hf_srdistill.history import HISTORY, LOSS_CURVE, History, accelerator_kwargs, end_tracking, log_row, \
    plot_loss_curve, start_tracking
from hf_srdistill.io import check_writable, read_json_file, remove_stale_tmp, write_json
from hf_srdistill.models import build_model

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
# train fields that may change between an interrupted run and its resume without changing
# the result; any other change is refused (the run would silently continue the old one)
RESUMABLE = {"resume", "checkpoint_every", "num_workers", "output_dir", "decoded_cache_mb", "log_with"}
HISTORY_COLUMNS = ("step", "loss", "lr", "wall_s")


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
            # the CPU generator only (what the patch code draws from): torch.manual_seed also
            # queues a CUDA seed with a captured stack trace, ~1 ms a call, a third of a small step
            torch.default_generator.manual_seed(int(torch.randint(2**62, (1,), generator=g)))
            return self.base[index]


def load_image_set(path: str, revision: str | None = None) -> list[np.ndarray]:
    """HR images of a distilled/baseline set: a local folder (read from its verified bytes) or a Hub id."""
    from datasets import load_dataset

    if Path(path).expanduser().is_dir():
        return read_set_images(Path(path).expanduser())
    ds = load_dataset(path, split="train", revision=revision)
    if "hr" not in ds.column_names:
        raise ValueError(f"{path}: a training set needs an 'hr' image column, found {ds.column_names}")
    return [np.asarray(img.convert("RGB")) for img in ds["hr"]]


def training_images(cfg: TrainJobConfig) -> Sequence[np.ndarray]:
    if cfg.train.train_set:
        return load_image_set(cfg.train.train_set)
    return SubImageStore.build(cfg.data, decoded_cache_mb=cfg.train.decoded_cache_mb).all_subimages()


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


def train_sr(cfg: TrainJobConfig, callback: Callable[[int, torch.nn.Module], None] | None = None,
             callback_every: int = 0) -> Path:
    """Train cfg.model on cfg.train.train_set (or the data source); returns the model folder.

    ``callback(step, model)`` runs on the main process every ``callback_every`` steps and at
    the last step, with the unwrapped model in eval mode (e.g. to score checkpoints on a
    validation split); it is not called for steps a resumed run had already done.

    Besides the model: ``history.csv`` (step, loss = that step's batch loss averaged over
    processes, lr = the lr the step was taken with, wall_s; every ``log_every`` steps and the
    last), ``loss_curve.png``, the full model card (``README.md``), and tracker logs when
    ``train.log_with`` names any.
    """
    t0 = time.time()
    tc = cfg.train
    out = Path(tc.output_dir)
    accelerator = make_accelerator(**accelerator_kwargs(tc.log_with, out, "train.log_with"))
    if accelerator.is_main_process:
        check_writable(out, "train.output_dir")
        remove_stale_tmp(out)
        recover_checkpoint(out / CHECKPOINT_DIR)
    accelerator.wait_for_everyone()
    torch.manual_seed(tc.seed)
    model = build_model(cfg.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=tc.lr)
    # not prepared: Accelerate's prepared scheduler steps once per process per call, which
    # would run the schedule num_processes times faster. Every process steps its own copy
    # once per optimizer step; it is still saved and restored with the checkpoint.
    scheduler = make_scheduler(optimizer, cfg)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)

    start, wall_before = 0, 0.0
    ckpt = out / CHECKPOINT_DIR
    identity = run_identity(cfg)
    if tc.resume and (ckpt / "trainer_state.json").is_file():
        state = read_json_file(ckpt / "trainer_state.json", "train.resume=false")
        check_resumable(state.get("identity"), identity, ckpt)
        accelerator.load_state(str(ckpt))
        start, wall_before = state["step"], float(state.get("wall_s") or 0.0)
        logger.info("resuming %s from step %d", out, start)
    if start >= tc.iterations and (out / "model.safetensors").is_file():
        return out
    history = History.resume(out / HISTORY, HISTORY_COLUMNS, start) if accelerator.is_main_process else None
    tracking = start_tracking(accelerator, tc.log_with, cfg)

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
        step_lr = scheduler.get_last_lr()[0]  # the lr this step was taken with
        scheduler.step()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss is {loss.item()} at step {step}; last good "
                                     f"checkpoint kept in {ckpt}")
        if step % tc.log_every == 0 or step == tc.iterations:  # a collective: every process logs
            mean = float(accelerator.reduce(loss.detach().reshape(1), "mean")) \
                if accelerator.num_processes > 1 else float(loss.detach())
            row = {"step": step, "loss": mean, "lr": float(step_lr), "wall_s": wall_before + time.time() - t0}
            if history is not None:
                history.append(**row)
            log_row(accelerator, tracking, {k: v for k, v in row.items() if k != "step"}, step)
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        if callback is not None and accelerator.is_main_process and callback_every > 0 \
                and (step % callback_every == 0 or step == tc.iterations):
            inner = accelerator.unwrap_model(model)
            inner.eval()
            with torch.no_grad():
                callback(step, inner)
            inner.train()
        if step % tc.checkpoint_every == 0 and step < tc.iterations:
            if history is not None:  # first: rows past the checkpoint are dropped on resume anyway
                history.save()
            save_checkpoint(accelerator, ckpt, step, identity, wall_before + time.time() - t0)
    bar.close()

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        history.save()
        stale = out / "eval_results.json"  # measured on the weights this run replaces
        if stale.is_file():
            logger.warning("removing %s: it scored the previous model in %s", stale, out)
            stale.unlink()
        accelerator.unwrap_model(model).save_pretrained(out)
        _write_provenance(out, cfg, len(images), time.time() - t0,
                          {"final_lr": scheduler.get_last_lr()[0], "scheduler_steps": scheduler.last_epoch,
                           "processes": accelerator.num_processes})
        plot_loss_curve(history, out / LOSS_CURVE, f"train {cfg.model.name} x{cfg.model.scale}", second="lr")
        _write_model_card(out)
        shutil.rmtree(ckpt, ignore_errors=True)
    end_tracking(accelerator, tracking)
    accelerator.wait_for_everyone()
    return out


def _write_model_card(out: Path) -> None:
    """The full card (what push-model uploads, without a repo id), replacing the mixin's stub."""
    from hf_srdistill.hub.cards import write_model_card
    from hf_srdistill.hub.folders import FolderError

    try:
        write_model_card(out)
    except (FolderError, ValueError) as err:
        logger.warning("model card not written: %s", err)


def run_identity(cfg: TrainJobConfig) -> dict:
    """What a checkpoint must have been trained with for a resume to continue the same run."""
    ident = to_dict(cfg)
    ident["train"] = {k: v for k, v in ident["train"].items() if k not in RESUMABLE}
    ident["data"].pop("num_proc", None)  # how the sub-image cache is built, not what it holds
    if cfg.train.train_set and Path(cfg.train.train_set).is_dir():
        ident["train_set_digest"] = set_digest(Path(cfg.train.train_set))
    return json.loads(json.dumps(ident, default=str))


def check_resumable(saved: dict | None, now: dict, ckpt: Path) -> None:
    if saved == now:
        return
    if saved is None:
        diff = ["(checkpoint has no config record)"]
    else:
        flat_saved, flat_now = flatten(saved), flatten(now)
        diff = sorted(k for k in set(flat_saved) | set(flat_now) if flat_saved.get(k) != flat_now.get(k))
    raise ConfigError(f"checkpoint {ckpt} was written with a different config ({', '.join(diff)}); "
                      "use another train.output_dir or set train.resume=false to start over")


def recover_checkpoint(ckpt: Path) -> None:
    """Finish or undo a checkpoint swap that a kill interrupted (see ``save_checkpoint``)."""
    old, tmp = ckpt.with_name(ckpt.name + ".old"), ckpt.with_name(ckpt.name + ".tmp")
    if old.exists():
        if ckpt.exists():  # killed after the swap: the new checkpoint is complete
            shutil.rmtree(old)
        else:  # killed between the two renames: the old one is the last complete state
            old.rename(ckpt)
            logger.warning("restored %s from an interrupted checkpoint swap", ckpt)
    if tmp.exists():  # a half-written state that never became the checkpoint
        shutil.rmtree(tmp)


def save_checkpoint(accelerator, ckpt: Path, step: int, identity: dict | None = None,
                    wall_s: float | None = None) -> None:
    """Write the full training state to a temp folder, then swap it in (a kill never corrupts it)."""
    tmp = ckpt.with_name(ckpt.name + ".tmp")
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        write_json(tmp / "trainer_state.json", {"step": step, "identity": identity, "wall_s": wall_s})
        old = ckpt.with_name(ckpt.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if ckpt.exists():
            ckpt.rename(old)
        tmp.rename(ckpt)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _write_provenance(out: Path, cfg: TrainJobConfig, n_images: int, wall: float, extra: dict) -> None:
    from hf_srdistill.provenance import collect_provenance, describe_source, write_provenance

    source = {"train_set": cfg.train.train_set, "num_train_images": n_images}
    if not cfg.train.train_set:  # the data's licence is the model's (hub.model_card)
        known = describe_source(cfg.data)
        source.update(source=cfg.data.source, hub_id=cfg.data.hub_id, revision=cfg.data.revision,
                      id=known["id"], license=known["license"], license_note=known["license_note"])
    write_provenance(out, collect_provenance(cfg, source=source, wall_time_s=wall, extra=extra))
