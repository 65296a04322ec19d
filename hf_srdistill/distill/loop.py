"""Dataset Condensation's bi-level loop for SR, with classes sharded over processes.

Every iteration draws a reference model (a fresh init seeded by (seed, iteration), a copy
of a fixed pretrained one, or the next member of a pretrained pool, matched at that model's
own scale), then alternates ``outer_loop`` gradient-matching steps on the synthetic pixels
(SGD with momentum, pixels clamped to [0, 1] and to ``max_change`` of their init) with ``inner_loop``
epochs of training the reference model on the current synthetic set (plain SGD, ``lr_net``,
as in DC). No inner training follows the last matching step, again as in DC.

Multi-process (``accelerate launch``): each process owns a contiguous block of classes and
their pixels. Everything random is drawn from generators seeded by (seed, stream, class,
iteration, ...), never from a shared stream, so a class sees the same numbers whichever
process holds it. The reference model is identical on every process (same seed); inner-loop
gradients are summed across processes by hand, because the matching step differentiates
the model with create_graph and DDP does not support double backward. The main process
gathers the set and writes the folder.

``objective=dm`` swaps the gradient-matching step for distribution matching against the same
fresh network (dm.py; outer_loop is 1, so the network is never trained). Class-agnostic
groupings (class_agnostic.py) hand the loop matching units in place of photos; the loop
treats them as classes. ``init=latent`` optimises a generator's codes in place of the pixels
(latent_glue.py; one process only).
"""

from __future__ import annotations

import copy
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from hf_srdistill.accel import make_accelerator, seed_for
from hf_srdistill.config import DistillJobConfig
from hf_srdistill.configio import ConfigError
from hf_srdistill.data import imresize
from hf_srdistill.distill.checkpoint import (DistillState, arithmetic_change, checkpoint_path, load_checkpoint,
                                             save_checkpoint)
from hf_srdistill.distill.class_agnostic import group_store, initial_images, real_store, set_layout
from hf_srdistill.distill.dm import dm_match_and_backward, real_forward_chunk
from hf_srdistill.distill.export import write_image_set
from hf_srdistill.distill.figures import evolution_figure, grid, save_png, thumbnail
from hf_srdistill.distill.latent_glue import latent_synthetic, save_latent_state, write_latent_outputs
from hf_srdistill.distill.matching import auto_chunk, match_and_backward, precision
from hf_srdistill.distill.synthetic import class_generator
from hf_srdistill.history import HISTORY, LOSS_CURVE, History, accelerator_kwargs, end_tracking, log_row, \
    plot_loss_curve, start_tracking
from hf_srdistill.io import check_writable, remove_stale_tmp

REAL_STREAM, NET_STREAM, MODEL_STREAM = 2, 3, 4
PROBE_STREAM = 8  # the classes_per_step=0 probe's real draw (apart from every other stream)
SNAPSHOT_ROWS = 4  # classes shown in the evolution figure
# a class whose pixels are pinned at 0 or 1 this much more than at its start has been blown
# out by too large a step (clamping keeps such pixels finite, so the NaN guard cannot see it);
# checked for unbounded runs, since max_change keeps every pixel near its init anyway
SATURATION_SHARE, SATURATION_RISE = 0.5, 0.25
# history.csv: iteration (done), the total matching loss (sum over classes of the last matching
# step), the pixel lr, wall time; then gm/dm's loss per matching unit and the reference's scale
HISTORY_COLUMNS = ("iteration", "loss", "lr_img", "wall_s", "loss_per_unit", "reference_scale")


class DistillationDiverged(FloatingPointError):
    """A non-finite matching loss or pixel; the last good state has been checkpointed."""


def shard(num_classes: int, world: int, rank: int) -> tuple[int, int]:
    """Contiguous, balanced block of classes [lo, hi) owned by ``rank``."""
    return rank * num_classes // world, (rank + 1) * num_classes // world


def reference_model(cfg: DistillJobConfig, iteration: int, pretrained: list, device) -> torch.nn.Module:
    """A copy of pretrained[iteration % len(pretrained)], or a fresh init seeded by (seed, iteration).

    Either way it is identical on every process. Cycling through a pool visits every reference
    equally often and keeps a resumed run on the same schedule.
    """
    from hf_srdistill.models import build_model

    if pretrained:
        model = copy.deepcopy(pretrained[iteration % len(pretrained)])
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed_for(cfg.distill.seed, MODEL_STREAM, iteration))
            model = build_model(cfg.distill.reference)
    return model.to(device).train()


def load_references(d) -> list[torch.nn.Module]:
    """The pretrained references (``reference_path`` or ``reference_pool``); [] = fresh random ones."""
    from hf_srdistill.models import load_model

    if d.reference_path:
        model = load_model(d.reference_path)
        if getattr(model, "scale", d.reference.scale) != d.reference.scale:
            raise ConfigError(f"distill.reference_path={d.reference_path} is a x{model.scale} model but "
                              f"distill.reference.scale={d.reference.scale}; set them to the same scale")
        return [model]
    pool = [load_model(path) for path in d.reference_pool]
    for path, model in zip(d.reference_pool, pool):
        if d.image_size % model.scale:
            raise ConfigError(f"distill.reference_pool: {path} is a x{model.scale} model, but "
                              f"distill.image_size={d.image_size} is not divisible by {model.scale}")
    return pool


class _Run:
    """State of one process: its classes' pixels, their optimiser, the snapshot thumbnails."""

    def __init__(self, cfg: DistillJobConfig, acc, store, state: DistillState | None, pretrained: list):
        d = self.d = cfg.distill
        self.cfg, self.acc, self.store = cfg, acc, store
        self.k = store.num_classes
        self.bounds = [shard(self.k, acc.num_processes, r) for r in range(acc.num_processes)]
        self.lo, self.hi = self.bounds[acc.process_index]
        self.rows = sorted({round(x) for x in torch.linspace(0, self.k - 1, min(SNAPSHOT_ROWS, self.k)).tolist()})
        own = slice(self.lo * d.ipc, self.hi * d.ipc)
        self.latent = latent_synthetic(cfg, acc, store, self.lo, self.hi, state is not None) \
            if d.init == "latent" else None
        if self.latent is not None:  # the codes are optimised; self.images is their decode, refreshed per step
            self.images, self.opt = self.latent.images(), None
        else:
            # a resumed unbounded run needs no init; unbounded runs keep no bounds either (at
            # DIV2K scale each would be another copy of the set)
            need_init = state is None or d.max_change is not None
            init = initial_images(d, store, list(range(self.lo, self.hi))).to(acc.device, torch.float32) \
                if need_init else None
            start = state.images[own].to(acc.device, torch.float32) if state else init
            self.images = start.clone(memory_format=torch.contiguous_format).requires_grad_(True)
            self.floor = self.ceil = None
            if d.max_change is not None:
                self.floor, self.ceil = (init - d.max_change).clamp(0, 1), (init + d.max_change).clamp(0, 1)
            self.opt = torch.optim.SGD([self.images], lr=d.lr_img, momentum=d.momentum)
            self.start_saturation = self._saturation()
        if state is not None and state.momentum is not None and self.opt is not None:
            self.opt.state[self.images]["momentum_buffer"] = state.momentum[own].to(acc.device).clone()
        self.iteration = state.iteration if state else 0
        self.snapshots = list(state.snapshots) if state else []
        self.snapshot_iters = list(state.snapshot_iters) if state else []
        self.wall0 = (state.wall_time_s if state else 0.0) - time.time()
        self.real_chunk = d.real_chunk or (real_forward_chunk(d.batch_real, acc.device) if d.objective == "dm"
                                           else auto_chunk(acc.device))
        self.syn_chunk = d.syn_chunk or auto_chunk(acc.device)
        self.classes_per_step = d.classes_per_step or self._classes_that_fit(pretrained)
        self.matcher = torch.compile(self._match) if d.compile else self._match
        self.arithmetic = {"device": acc.device.type, "batched": d.batched, "classes_per_step": self.classes_per_step,
                           "real_chunk": self.real_chunk, "syn_chunk": self.syn_chunk}
        if d.compile:  # recorded only when on, so checkpoints from before the field resume silently
            self.arithmetic["compile"] = True
        change = arithmetic_change(state.arithmetic, self.arithmetic) if state is not None else None
        if change and acc.is_main_process:
            print(f"distill: warning: {change}", file=sys.stderr)

    def _match(self, model, syn: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        d, chunk = self.d, syn.shape[0]  # matching_step hands over one chunk of classes at a time
        if d.objective == "dm":
            return dm_match_and_backward(model, syn, real, model.scale, d.dm, chunk, d.batched, self.real_chunk)
        return match_and_backward(model, syn, real, model.scale, d.distance, chunk, d.batched,
                                  self.real_chunk, self.syn_chunk)

    def _classes_that_fit(self, pretrained: list) -> int:
        """classes_per_step=0: the chunk that half the free memory holds, from one probed class.

        The probe is one class's matching step against each reference (a copy of the first
        class's pixels, so the set is untouched; its own real draw and RNG, so the run's streams
        are too). Its peak includes the step's fixed costs, so the estimate errs on the safe side.
        """
        from hf_srdistill.peak_memory import PeakMemory, chunk_that_fits, free_memory

        d, s, dev = self.d, self.d.image_size, self.acc.device
        held = self.hi - self.lo
        if held <= 1:
            return 1
        real = self.store.sample_patches(self.lo, d.batch_real, s, class_generator(d.seed, self.lo, PROBE_STREAM))
        real = real[None].to(dev).contiguous()
        per_class = 0
        for i in range(max(1, len(pretrained))):
            model = reference_model(self.cfg, i, pretrained, dev)
            syn = self.images.detach()[: d.ipc].clone().view(1, d.ipc, 3, s, s).requires_grad_(True)
            with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []), PeakMemory(dev) as mem, \
                    precision(d.precision, dev):
                self._match(model, syn, real)
            per_class = max(per_class, mem.delta)
            del model, syn
        return chunk_that_fits(per_class, free_memory(dev), held)

    # ---- collectives ------------------------------------------------------------------
    def gather_rows(self, t: torch.Tensor) -> torch.Tensor:
        """Concatenate every process's class block (rows = classes*ipc) in class order."""
        if self.acc.num_processes == 1:
            return t.detach()
        padded = self.acc.pad_across_processes(t.detach().contiguous(), dim=0)
        full, m = self.acc.gather(padded), padded.shape[0]
        return torch.cat([full[r * m: r * m + (hi - lo) * self.d.ipc] for r, (lo, hi) in enumerate(self.bounds)])

    def momentum(self) -> torch.Tensor | None:
        return None if self.opt is None else self.opt.state.get(self.images, {}).get("momentum_buffer")

    def state(self, images: torch.Tensor, momentum: torch.Tensor | None) -> DistillState:
        has_m = bool(self.acc.gather(torch.tensor([int(momentum is not None)], device=self.acc.device)).max())
        if momentum is None and has_m:  # a process with no classes has no buffer yet
            momentum = torch.zeros_like(images)
        snaps = torch.stack(self.snapshots) if self.snapshots else torch.zeros(0, len(self.rows), 3, 1, 1,
                                                                               dtype=torch.uint8)
        return DistillState(iteration=self.iteration, images=self.gather_rows(images).cpu(),
                            momentum=self.gather_rows(momentum).cpu() if has_m else None,
                            snapshots=snaps, snapshot_iters=list(self.snapshot_iters),
                            wall_time_s=self.wall0 + time.time(), arithmetic=self.arithmetic)

    def save(self, state: DistillState) -> None:
        if self.acc.is_main_process:
            if self.latent is not None:  # codes first: a checkpoint never points at missing codes
                save_latent_state(self.latent, self.d.output_dir)
            save_checkpoint(checkpoint_path(self.d.output_dir), state, self.cfg, self.store.fingerprint)
        self.acc.wait_for_everyone()

    def snapshot(self) -> None:
        """Thumbnails of image 0 of a few classes, gathered from whichever process holds them."""
        if self.snapshot_iters and self.snapshot_iters[-1] == self.iteration:
            return
        own = [(r, thumbnail(self.images[(r - self.lo) * self.d.ipc:(r - self.lo) * self.d.ipc + 1])[0])
               for r in self.rows if self.lo <= r < self.hi]
        found = dict(gather_object(own) if self.acc.num_processes > 1 else own)
        self.snapshot_iters.append(self.iteration)  # on every process: the early return above must agree
        if self.acc.is_main_process:
            self.snapshots.append(torch.stack([found[r] for r in self.rows]))

    # ---- one iteration ----------------------------------------------------------------
    def matching_step(self, model, outer: int) -> float:
        d, s = self.d, self.d.image_size
        if self.latent is not None:
            self.images = self.latent.images()  # a leaf decoded without a graph: its .grad collects dL/dx
        else:
            self.opt.zero_grad(set_to_none=True)
        syn = self.images.view(-1, d.ipc, 3, s, s)
        losses = []
        for c0 in range(self.lo, self.hi, self.classes_per_step):
            c1 = min(c0 + self.classes_per_step, self.hi)
            real = torch.stack([self.store.sample_patches(
                c, d.batch_real, s, class_generator(d.seed, c, REAL_STREAM, self.iteration, outer))
                for c in range(c0, c1)]).to(self.acc.device).contiguous()
            with precision(d.precision, self.acc.device):
                losses.append(self.matcher(model, syn[c0 - self.lo:c1 - self.lo], real))
        loss = torch.cat(losses) if losses else torch.zeros(0, device=self.acc.device)
        bad = self._first_bad(loss, "matching loss")
        if bad is None:
            if self.latent is not None:
                self.latent.step(self.images)  # dL/dx back through the decoder, chunk by chunk
                self.images = self.latent.images()
            else:
                with torch.no_grad():
                    self.opt.step()
                    if self.floor is None:
                        self.images.clamp_(0, 1)
                    else:
                        self.images.clamp_(self.floor, self.ceil)
            per_class = self.images.detach().view(self.hi - self.lo, d.ipc * 3 * s * s).sum(1)
            bad = self._first_bad(per_class, "pixels")
            if bad is None and self.latent is None and self.floor is None:  # max_change bounds the damage
                sat = self._saturation()
                blown = (sat > SATURATION_SHARE) & (sat > self.start_saturation + SATURATION_RISE)
                bad = self._first_bad(torch.where(blown, math.inf, 0.0), "saturated pixels (over "
                                      f"{SATURATION_SHARE:.0%} of the class pinned at 0 or 1)")
        if bad is not None:
            what = bad[1] if bad[1].startswith("saturated") else f"non-finite {bad[1]}"
            raise DistillationDiverged(f"{what} at iteration {self.iteration}, class {bad[0]} "
                                       f"({self.store.class_names[bad[0]]!r}), matching step {outer}")
        return float(loss.sum())

    def _saturation(self) -> torch.Tensor:
        """Share of each class's pixels at 0 or 1."""
        x = self.images.detach().view(self.hi - self.lo, -1)
        return ((x <= 0) | (x >= 1)).float().mean(1)

    def _first_bad(self, per_class: torch.Tensor, what: str) -> tuple[int, str] | None:
        """Lowest class index, over all processes, whose value is NaN/inf (collective)."""
        idx = torch.nonzero(~torch.isfinite(per_class.detach())).flatten()
        local = float(self.lo + int(idx[0])) if len(idx) else math.inf
        worst = float(self.acc.gather(torch.tensor([local], device=self.acc.device, dtype=torch.float64)).min())
        return None if math.isinf(worst) else (int(worst), what)

    def train_reference(self, model, outer: int) -> None:
        """``inner_loop`` epochs of SGD on the synthetic set; minibatches drawn globally."""
        d = self.d
        hr = self.images.detach()
        lr = imresize(hr, 1.0 / model.scale)
        n_total, base = self.k * d.ipc, self.lo * d.ipc
        params = [p for p in model.parameters()]
        opt = torch.optim.SGD(params, lr=d.lr_net)
        for epoch in range(d.inner_loop):
            gen = torch.Generator().manual_seed(seed_for(d.seed, NET_STREAM, self.iteration, outer, epoch))
            for batch in torch.randperm(n_total, generator=gen).split(d.batch_net):
                mine = batch[(batch >= base) & (batch < base + hr.shape[0])] - base
                opt.zero_grad(set_to_none=False)
                if len(mine):
                    err = F.mse_loss(model(lr[mine]), hr[mine], reduction="none")
                    (err.mean((1, 2, 3)).sum() / len(batch)).backward()
                self._sum_grads(params)
                opt.step()

    def _sum_grads(self, params) -> None:
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        if self.acc.num_processes > 1:
            flat = torch.cat([p.grad.reshape(-1) for p in params])
            flat = self.acc.reduce(flat, reduction="sum")
            for p, g in zip(params, flat.split([p.numel() for p in params])):
                p.grad.copy_(g.view_as(p))


def distill(cfg: DistillJobConfig) -> Path:
    """Distil ``cfg.data`` into ``cfg.distill.ipc`` synthetic HR images per class.

    Writes the set folder at ``cfg.distill.output_dir`` (resume state under its
    ``checkpoint/``, one ``history.csv`` row per iteration, ``loss_curve.png``) and returns it,
    on every process.
    """
    from hf_srdistill.data.grouped import SubImageStore
    from hf_srdistill.provenance import describe_source

    d = cfg.distill
    acc = make_accelerator(**accelerator_kwargs(d.log_with, d.output_dir, "distill.log_with"))
    if acc.is_main_process:
        check_writable(d.output_dir, "distill.output_dir")
        remove_stale_tmp(d.output_dir)
        remove_stale_tmp(checkpoint_path(d.output_dir).parent)
    acc.wait_for_everyone()
    if d.objective == "tm":
        from hf_srdistill.distill.trajectory import distill_tm

        return distill_tm(cfg)
    with acc.main_process_first():  # one process builds the sub-image cache, the others reuse it
        store = group_store(SubImageStore.build(cfg.data), cfg)  # classes, or class-agnostic matching units
    path = checkpoint_path(d.output_dir)
    state = load_checkpoint(path, cfg, store.fingerprint) if d.resume and path.is_file() else None
    if state is not None and state.images.shape[0] != store.num_classes * d.ipc:
        raise ValueError(f"checkpoint {path} holds {state.images.shape[0]} images, expected "
                         f"{store.num_classes} classes x ipc {d.ipc}")
    pretrained = load_references(d)
    run = _Run(cfg, acc, store, state, pretrained)
    columns = HISTORY_COLUMNS + (("lr_latent",) if run.latent is not None else ())
    history = History.resume(Path(d.output_dir) / HISTORY, columns, run.iteration) if acc.is_main_process else None
    tracking = start_tracking(acc, d.log_with, cfg)
    bar = tqdm(total=d.iterations, initial=run.iteration, desc="distill", disable=not acc.is_main_process)
    while run.iteration < d.iterations:
        if run.iteration % d.snapshot_every == 0:
            run.snapshot()
        good = (run.images.detach().clone(), None if run.momentum() is None else run.momentum().clone())
        model = reference_model(cfg, run.iteration, pretrained, acc.device)
        try:
            for outer in range(d.outer_loop):
                loss = run.matching_step(model, outer)
                if outer < d.outer_loop - 1:
                    run.train_reference(model, outer)
        except DistillationDiverged as err:
            if run.latent is not None:  # the codes may already hold this iteration's steps: keep the last checkpoint
                raise DistillationDiverged(f"{err}; resume from the last checkpoint in {path}: lower "
                                           "distill.latent.lr_latent or change the distance") from None
            if history is not None:
                history.save()
            run.save(run.state(*good))
            raise DistillationDiverged(f"{err}; the last good state (iteration {run.iteration}) is saved in "
                                       f"{path}: lower distill.lr_img or change the distance") from None
        total = float(acc.reduce(torch.tensor([loss], device=acc.device, dtype=torch.float64), "sum"))
        run.iteration += 1
        row = {"iteration": run.iteration, "loss": total, "wall_s": run.wall0 + time.time(),
               "lr_img": run.opt.param_groups[0]["lr"] if run.opt is not None else None,
               "loss_per_unit": total / run.k, "reference_scale": int(model.scale)}
        if run.latent is not None:
            row["lr_latent"] = d.latent.lr_latent
        if history is not None:
            history.append(**row)
        log_row(acc, tracking, {k: v for k, v in row.items() if k != "iteration"}, run.iteration)
        bar.update(1)
        bar.set_postfix(match=f"{total / run.k:.5f}")
        if run.iteration % d.checkpoint_every == 0 or run.iteration == d.iterations:
            if history is not None:  # first: rows past the checkpoint are dropped on resume anyway
                history.save()
            run.save(run.state(run.images, run.momentum()))
    bar.close()
    run.snapshot()
    final = run.state(run.images, run.momentum())
    out = Path(d.output_dir)
    if acc.is_main_process:
        source = describe_source(cfg.data, store.fingerprint)
        history.save()
        write_set(cfg, store, final, out, source, acc.num_processes, history)
        if run.latent is not None:
            write_latent_outputs(cfg, store, run.latent, out, source)
    end_tracking(acc, tracking)
    acc.wait_for_everyone()
    return out


def write_set(cfg: DistillJobConfig, store, final: DistillState, out: Path, source: dict, world: int,
              history: History | None = None) -> None:
    from hf_srdistill.distill.export import real_set_sizes

    d = cfg.distill
    labels, ipc_index, names, grouping = set_layout(store, d.ipc)
    extra = {"kind": "distilled", "iterations": final.iteration, "processes": world, "grouping": grouping}
    if final.arithmetic:  # what ran (classes_per_step as resolved, chunks, device), not only what was asked
        extra["arithmetic"] = final.arithmetic
    write_image_set(out, final.images, labels, names, ipc_index, cfg, extra=extra,
                    real_sizes=real_set_sizes(real_store(store), cfg.data), source=source,
                    wall_time_s=final.wall_time_s)
    # one row per class when ipc > 1, else up to 8 classes per row; at most 64 classes shown
    ncol = d.ipc if d.ipc > 1 else min(8, store.num_classes)
    save_png(grid(final.images[: 64 * d.ipc], ncol=ncol), out / "samples.png")
    if len(final.snapshot_iters) > 1:
        save_png(evolution_figure(final.snapshots, final.snapshot_iters), out / "evolution.png")
    if history is not None:
        plot_loss_curve(history, out / LOSS_CURVE, f"distill ({d.objective}), {store.num_classes} units x "
                        f"ipc {d.ipc}", second="student_lr" if d.objective == "tm" else None)
    refresh_card(out)  # again, now that the figures it shows exist


def refresh_card(out: Path) -> None:
    from hf_srdistill.distill.export import write_card

    write_card(out)
