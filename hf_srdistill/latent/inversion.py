"""GAN inversion and pivotal tuning: the StyleGAN backend's initialisation.

Roich et al., "Pivotal Tuning for Latent-based Editing of Real Images" (PTI, 2022).
Stage 1 optimises one w per image (shared by every synthesis input, i.e. W, not W+) from
the class-average w, with the StyleGAN projector's noise and learning-rate ramps. Stage 2
fine-tunes the synthesis weights so the pivots reproduce their targets, while the locality
regulariser keeps the generator unchanged at w's a fixed distance from each pivot. One
generator is shared by all images (PTI's multi-image variant), because distillation
decodes every synthetic image with the same weights. Step counts default below PTI's
(450 / 350) and are configurable.
"""

from __future__ import annotations

import copy
import logging
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from hf_srdistill.latent.losses import ReconstructionLoss

log = logging.getLogger(__name__)

NOISE_RAMP = 0.75  # fraction of the steps over which the w noise decays to zero (projector)
LR_RAMPDOWN, LR_RAMPUP = 0.25, 0.05


def _randn(shape: tuple[int, ...], gen: torch.Generator, device: torch.device) -> Tensor:
    return torch.randn(shape, generator=gen).to(device)


@torch.no_grad()
def class_average_w(backend, gen: torch.Generator) -> tuple[Tensor, float]:
    """(1,1,w_dim) mean of mapping(z, c) over ``w_avg_samples`` z, and the spread of w around it."""
    n, z_dim = backend.cfg.w_avg_samples, int(backend.G.z_dim)
    ws = torch.cat([backend.mapping(_randn((min(1024, n - i), z_dim), gen, backend.device))[:, :1].float()
                    for i in range(0, n, 1024)])
    w_avg = ws.mean(0, keepdim=True)
    w_std = float(((ws - w_avg) ** 2).sum(-1).mean().sqrt())
    return w_avg, w_std


def _render(backend, w: Tensor, synthesis=None) -> Tensor:
    """Unclamped [0,1] images at S px for one w per image, broadcast to every synthesis input."""
    syn = synthesis if synthesis is not None else backend.G.synthesis
    return backend.to_images(syn(w.expand(-1, int(backend.G.num_ws), -1)), clamp=False)


@torch.no_grad()
def reconstruction_mse(backend, w: Tensor, images: Tensor) -> float:
    """Mean squared error of the clamped renders of ``w`` against ``images`` (what decode gives)."""
    total = 0.0
    for i in range(0, len(w), backend.chunk_size):
        x = _render(backend, w[i:i + backend.chunk_size]).clamp(0, 1)
        total += float(F.mse_loss(x, images[i:i + backend.chunk_size], reduction="sum"))
    return total / images.numel()


def _lr_at(t: float, base: float) -> float:
    ramp = min(1.0, (1.0 - t) / LR_RAMPDOWN)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return base * ramp * min(1.0, t / LR_RAMPUP)


def invert(backend, images: Tensor) -> Tensor:
    """(N,1,w_dim) pivots reconstructing ``images`` (N,3,S,S); reports MSE before/after."""
    cfg = backend.cfg
    gen = torch.Generator().manual_seed(backend.seed)
    w_avg, w_std = class_average_w(backend, gen)
    loss_fn = ReconstructionLoss(cfg.mse_weight, cfg.lpips_weight, cfg.lpips_net)
    pivots = []
    for i in range(0, len(images), backend.chunk_size):
        target = images[i:i + backend.chunk_size]
        w = w_avg.repeat(len(target), 1, 1).requires_grad_(True)
        opt = torch.optim.Adam([w], lr=cfg.invert_lr, betas=(0.9, 0.999))
        for step in range(cfg.invert_steps):
            t = step / cfg.invert_steps
            for group in opt.param_groups:
                group["lr"] = _lr_at(t, cfg.invert_lr)
            noise = w_std * cfg.invert_noise * max(0.0, 1.0 - t / NOISE_RAMP) ** 2
            loss = loss_fn(_render(backend, w + noise * _randn(tuple(w.shape), gen, backend.device)), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        pivots.append(w.detach())
    w = torch.cat(pivots)
    backend.init_report.update(
        mse_class_average_w=reconstruction_mse(backend, w_avg.expand(len(images), -1, -1), images),
        mse_inverted=reconstruction_mse(backend, w, images), invert_steps=cfg.invert_steps,
        lpips_used=loss_fn.uses_lpips)
    log.info("GAN inversion: MSE %.5f (class-average w) -> %.5f after %d steps",
             backend.init_report["mse_class_average_w"], backend.init_report["mse_inverted"], cfg.invert_steps)
    return w


def pivotal_tune(backend, pivots: Tensor, images: Tensor) -> None:
    """Fine-tune ``backend.G.synthesis`` in place around the (N,1,w_dim) pivots."""
    cfg = backend.cfg
    gen = torch.Generator().manual_seed(backend.seed + 1)
    syn = backend.G.synthesis
    frozen = copy.deepcopy(syn).requires_grad_(False)
    params = [p for p in syn.parameters()]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=cfg.tune_lr)
    loss_fn = ReconstructionLoss(cfg.mse_weight, cfg.lpips_weight, cfg.lpips_net)
    order = torch.randperm(len(pivots), generator=gen)
    for step in range(cfg.tune_steps):
        start = (step * backend.chunk_size) % len(pivots)
        idx = order[start:start + backend.chunk_size].to(pivots.device)
        w_p = pivots[idx]
        loss = loss_fn(_render(backend, w_p), images[idx])
        if cfg.locality_weight > 0:
            with torch.no_grad():
                w_z = backend.mapping(_randn((len(idx), int(backend.G.z_dim)), gen, backend.device))[:, :1]
                d = w_z.float() - w_p
                w_r = w_p + cfg.locality_alpha * d / d.norm(dim=-1, keepdim=True).clamp_min(1e-8)
                ref = _render(backend, w_r, frozen)
            loss = loss + cfg.locality_weight * loss_fn(_render(backend, w_r), ref)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    syn.requires_grad_(False)
    backend.modified_generator.append("pivotal tuning")
    backend.init_report.update(mse_tuned=reconstruction_mse(backend, pivots, images), tune_steps=cfg.tune_steps)
    log.info("pivotal tuning: MSE %.5f -> %.5f after %d steps", backend.init_report["mse_inverted"],
             backend.init_report["mse_tuned"], cfg.tune_steps)
