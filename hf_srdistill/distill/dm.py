"""Distribution matching (DM) for SR: feature statistics of real and synthetic images under
a randomly initialised SR network.

Zhao & Bilen, "Dataset Condensation with Distribution Matching" (WACV 2023): per class,
match the mean embedding of the real and the synthetic images under a network drawn afresh
every iteration. There is no bi-level loop and no gradient of a gradient, so a step costs a
forward pass of the real batch (no graph) and a forward/backward of the synthetic images.

What changes for SR:
- the network is the reference SR model from the registry (``distill.reference``) and the
  "embedding" is every activation map it computes (its ReLU outputs, in forward order), so
  both edge-like early features and deeper texture features are matched;
- maps are averaged over images *and positions* per channel: an SR training set has no
  fixed layout (patches are cropped anywhere), so only translation-invariant statistics
  make sense;
- the network sees the LR image (an SR model's input) and/or the HR image fed as if it
  were LR, i.e. its fine detail at full resolution (``DMConfig.inputs``);
- ``moments=2`` also matches each layer's channel second-moment matrix E[f f^T] (a Gram
  matrix: the texture statistic of neural style transfer).

Distance per class: DM's squared Euclidean distance between the statistics, divided per
statistic (one layer's means, or its Gram matrix, for one input) by the squared norm of the
real one, then summed. A random network's activations shrink or grow with depth and width;
the relative form weighs every layer alike and keeps ``lr_img`` meaningful across reference
networks. Weights enter detached (``torch.func.functional_call``), so the backward computes
pixel gradients only.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from hf_srdistill.config import DMConfig
from hf_srdistill.data import imresize
from hf_srdistill.distill.matching import model_state

# modules whose outputs are the features; SR models here use ReLU (EDSR, VDSR, SRCNN)
ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.GELU, nn.SiLU)
# keeps the relative distance finite for an all-zero real statistic (a dead ReLU channel set)
EPS = 1e-8


class _Enough(Exception):
    """Raised by the last wanted hook: the rest of the forward pass is not needed."""


def activations(model: nn.Module, x: Tensor, params: dict[str, Tensor] | None = None,
                buffers: dict[str, Tensor] | None = None, max_layers: int | None = None,
                reduce: Callable[[Tensor], Tensor] | None = None) -> list[Tensor]:
    """Outputs of ``model``'s activation modules on ``x``, in forward order.

    A module called twice (SRCNN reuses one ReLU) contributes twice. ``reduce`` is applied
    inside the hook, so a full map is never kept when only its statistics are wanted; the
    forward stops after ``max_layers`` maps. ``params``/``buffers`` run the model
    functionally (e.g. with detached weights).
    """
    acts: list[Tensor] = []

    def hook(_module, _inputs, out):
        acts.append(reduce(out) if reduce is not None else out)
        if max_layers is not None and len(acts) >= max_layers:
            raise _Enough

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, ACTIVATIONS)]
    if not handles:
        raise ValueError(f"{type(model).__name__} has no activation module ({', '.join(a.__name__ for a in ACTIVATIONS)}): "
                         "distribution matching has no features to match")
    try:
        if params is None:
            model(x)
        else:
            functional_call(model, (params, buffers or {}), (x,))
    except _Enough:
        pass
    finally:
        for h in handles:
            h.remove()
    return acts


def moments(f: Tensor, k: int, order: int) -> list[Tensor]:
    """Per-class statistics of a map f (K*n, C, h, w): the channel mean (K, C) and, for
    ``order`` 2, the channel second-moment matrix (K, C, C), over images and positions."""
    c = f.shape[1]
    per_class = f.reshape(k, -1, c, f.shape[2] * f.shape[3]).transpose(1, 2).reshape(k, c, -1)  # (K, C, n*h*w)
    out = [per_class.mean(-1)]
    if order == 2:
        out.append(per_class @ per_class.transpose(1, 2) / per_class.shape[-1])
    return out


def class_statistics(model: nn.Module, hr: Tensor, scale: int, cfg: DMConfig,
                     params: dict[str, Tensor] | None = None, buffers: dict[str, Tensor] | None = None) -> list[Tensor]:
    """DM statistics of K classes, hr (K, n, 3, S, S) -> list of (K, ...) tensors.

    Differentiable w.r.t. ``hr`` (through the bicubic degradation for the LR input).
    """
    if params is None:
        params, buffers = model_state(model)
    k = hr.shape[0]
    flat = hr.reshape(-1, *hr.shape[2:])
    stats: list[Tensor] = []
    for name in cfg.inputs:
        x = imresize(flat, 1.0 / scale) if name == "lr" else flat
        for s in activations(model, x, params, buffers, cfg.layers, reduce=lambda f: moments(f, k, cfg.moments)):
            stats += s
    return stats


def dm_distance(s_syn: list[Tensor], s_real: list[Tensor]) -> Tensor:
    """Sum over statistics of ||syn - real||^2 / (||real||^2 + EPS), one value per class (K,)."""
    if len(s_syn) != len(s_real) or not s_syn:
        raise ValueError(f"statistic lists must be non-empty and of equal length, got {len(s_syn)} and {len(s_real)}")
    k = s_syn[0].shape[0]
    total = s_syn[0].new_zeros(k)
    for a, b in zip(s_syn, s_real):
        if a.shape != b.shape or a.shape[0] != k:
            raise ValueError(f"statistic shapes differ or lack the class dimension: {tuple(a.shape)} vs {tuple(b.shape)}")
        total = total + ((a - b) ** 2).reshape(k, -1).sum(1) / ((b ** 2).reshape(k, -1).sum(1) + EPS)
    return total


# on a CPU, one class's batch of at least this many images keeps the cores busy by itself
CPU_BATCH_FILLS_CORES = 8


def real_forward_chunk(images_per_class: int, device) -> int | None:
    """Classes per no-grad forward of the real images: all on a GPU; on a CPU one class once
    its own batch fills the cores, which bounds memory at no cost in speed."""
    if torch.device(device).type != "cpu":
        return None
    return 1 if images_per_class >= CPU_BATCH_FILLS_CORES else None


def dm_match_and_backward(model: nn.Module, syn: Tensor, real: Tensor, scale: int, cfg: DMConfig,
                          classes_per_step: int = 32, batched: bool = True,
                          real_chunk: int | None = None) -> Tensor:
    """DM distances of K classes; their sum is backpropagated into ``syn``.

    Same contract as :func:`hf_srdistill.distill.matching.match_and_backward`: syn
    (K, ipc, 3, S, S) is a view of a leaf that requires grad, real (K, B, 3, S, S); returns
    the detached (K,) distances. batched: one forward pass for all synthetic images of a
    chunk of ``classes_per_step`` classes (False: one pass per class, the reference form).
    real_chunk: classes per no-grad forward of the real images (None = the whole chunk).
    """
    if syn.dim() != 5 or real.dim() != 5 or syn.shape[0] != real.shape[0]:
        raise ValueError(f"expected syn (K,ipc,3,S,S) and real (K,B,3,S,S), got {tuple(syn.shape)} and "
                         f"{tuple(real.shape)}")
    params, buffers = model_state(model)
    k, out = syn.shape[0], []
    for c0 in range(0, k, classes_per_step):
        c1 = min(c0 + classes_per_step, k)
        step = (real_chunk or c1 - c0) if batched else 1
        with torch.no_grad():
            parts = [class_statistics(model, real[r0:min(r0 + step, c1)], scale, cfg, params, buffers)
                     for r0 in range(c0, c1, step)]
            s_real = [torch.cat(t) for t in zip(*parts)]
        if batched:
            s_syn = class_statistics(model, syn[c0:c1], scale, cfg, params, buffers)
        else:
            per = [class_statistics(model, syn[c:c + 1], scale, cfg, params, buffers) for c in range(c0, c1)]
            s_syn = [torch.cat(t) for t in zip(*per)]
        d = dm_distance(s_syn, s_real)
        d.sum().backward()
        out.append(d.detach())
    return torch.cat(out)
