"""Deterministic DDIM (eta = 0) sampling and its inversion, written against ``alphas_cumprod``.

Song et al., "Denoising Diffusion Implicit Models" (ICLR 2021). One DDIM step moves a latent
from noise level ``a`` (alpha_cumprod) to level ``b`` using the model's output at timestep t:
``x_b = sqrt(b) * x0 + sqrt(1 - b) * eps`` with (x0, eps) read off the output at level ``a``.
Sampling walks diffusers' ``DDIMScheduler`` timesteps down (a = abar[t], b = abar[t - T/n]);
inversion walks the same pairs up (a and b swapped), which is what ``DDIMInverseScheduler``
does. Writing the step here instead of calling the schedulers keeps sampling and inversion
on one list of (t, levels), holds no scheduler state between calls, and never clips x0
(``clip_sample`` is a pixel-space heuristic that would make the map non-invertible).

Plain inversion evaluates the model at the current, less noisy latent instead of the one it
is solving for, so sampling does not retrace it exactly. ``invert(iters=k)`` refines each
inversion step by fixed-point iteration until the sampling step from it lands back on its
start (Pan et al., "Effective Real Image Editing with Accelerated Iterative Diffusion
Inversion", ICCV 2023), keeping per image the iterate with the smallest miss.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

Model = Callable[[Tensor, int], Tensor]  # (latent, timestep) -> the UNet's prediction


class DDIMSchedule:
    """The sampling timesteps of ``steps``-step DDIM and the two noise levels of each step."""

    def __init__(self, scheduler_config: dict[str, Any], steps: int) -> None:
        from diffusers import DDIMScheduler

        sched = DDIMScheduler.from_config(scheduler_config)  # our own copy: set_timesteps mutates it
        sched.set_timesteps(steps)
        ratio = sched.config.num_train_timesteps // steps  # DDIMScheduler.step's previous timestep
        abar = sched.alphas_cumprod
        final = float(sched.final_alpha_cumprod)
        self.prediction_type: str = sched.config.prediction_type
        if self.prediction_type not in ("epsilon", "v_prediction"):
            # "sample" (x0) models give no noise estimate at the clean level inversion starts from
            raise ValueError(f"DDIM inversion needs an epsilon or v_prediction model, not {self.prediction_type!r}")
        self.timesteps = [int(t) for t in sched.timesteps]  # descending: noise -> clean
        # (abar at t, abar at the previous timestep) for each sampling step
        self.levels = [(float(abar[t]), float(abar[t - ratio]) if t - ratio >= 0 else final)
                       for t in self.timesteps]

    def move(self, out: Tensor | float, x: Tensor | float, a: float, b: float) -> Tensor | float:
        """One DDIM step from level ``a`` to ``b``, given the model output ``out`` at ``x``."""
        sa, sb = a ** 0.5, (1 - a) ** 0.5
        if self.prediction_type == "epsilon":
            x0, eps = (x - sb * out) / sa, out
        else:  # v_prediction
            x0, eps = sa * x - sb * out, sa * out + sb * x
        return b ** 0.5 * x0 + (1 - b) ** 0.5 * eps


def sample(model: Model, x: Tensor, schedule: DDIMSchedule, checkpoint: bool = False) -> Tensor:
    """x_T -> x_0 by deterministic DDIM; differentiable, one checkpointed segment per step if asked."""
    from torch.utils.checkpoint import checkpoint as ckpt

    def step(x: Tensor, t: int, a: float, b: float) -> Tensor:
        return schedule.move(model(x, t), x, a, b)

    for t, (a, b) in zip(schedule.timesteps, schedule.levels):
        if checkpoint and torch.is_grad_enabled():
            x = ckpt(step, x, t, a, b, use_reentrant=False)
        else:
            x = step(x, t, a, b)
    return x


@torch.no_grad()
def invert(model: Model, x: Tensor, schedule: DDIMSchedule, iters: int = 0) -> Tensor:
    """x_0 -> x_T, the noise from which :func:`sample` returns (approximately) ``x``."""
    for t, (a, b) in reversed(list(zip(schedule.timesteps, schedule.levels))):
        x_t = schedule.move(model(x, t), x, b, a)  # plain DDIM inversion (DDIMInverseScheduler)
        if iters:
            x_t = _refine(model, x, x_t, t, a, b, schedule, iters)
        x = x_t
    return x


def _refine(model: Model, target: Tensor, x_t: Tensor, t: int, a: float, b: float,
            schedule: DDIMSchedule, iters: int) -> Tensor:
    """Fixed-point iterations on x_t so that the sampling step from it reaches ``target``."""
    # the step is linear in (out, x): its x-coefficient with the model output held fixed
    gain = schedule.move(0.0, 1.0, a, b)
    best, best_miss = x_t, torch.full((len(x_t),), float("inf"), device=x_t.device)
    for k in range(iters + 1):
        miss = schedule.move(model(x_t, t), x_t, a, b) - target
        norm = miss.flatten(1).norm(dim=1)
        better = norm < best_miss  # per image: chunks of images stay independent
        best = torch.where(better.view(-1, *[1] * (x_t.dim() - 1)), x_t, best)
        best_miss = torch.where(better, norm, best_miss)  # a diverging NaN iterate is never kept
        if k < iters:
            x_t = x_t - miss / gain
    return best
