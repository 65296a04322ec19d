"""Gradient matching for many classes at once.

For class c the SR loss is ``MSE(model(imresize(hr, 1/s)), hr)``; its gradient w.r.t. the
reference model's weights is computed on a real batch (a constant target: no graph kept)
and on the class's synthetic images (kept differentiable w.r.t. their pixels, including
through the bicubic degradation). The distance between the two is backpropagated with
ordinary autograd into the synthetic pixels.

Two implementations give the same numbers:
- batched: ``torch.func.vmap(torch.func.grad(loss))`` over a chunk of classes, so one
  convolution call covers every class of the chunk (the device is not starved by a Python
  loop, and the real gradients never build a graph);
- per-class: a Python loop with ``torch.autograd.grad(create_graph=True)``, the textbook
  form, kept to check the batched path and as the fallback for models vmap cannot trace.

Memory is bounded by ``classes_per_step``: each chunk's distance is backpropagated before
the next chunk is built. The gradient that reaches class c's pixels depends on class c's
loss only, so chunking changes nothing but the peak memory.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from hf_srdistill.data import imresize
from hf_srdistill.distill.objectives import get_distance


@contextlib.contextmanager
def precision(mode: str, device: str | torch.device):
    """The arithmetic of a matching step (``distill.precision``): fp32, bf16 autocast, or CUDA TF32."""
    dev = torch.device(device)
    if mode == "bf16":
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            yield
    elif mode == "tf32" and dev.type == "cuda":
        before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
    elif mode in ("fp32", "tf32"):
        yield
    else:
        raise ValueError(f"unknown precision {mode!r}; choose fp32, bf16 or tf32")


def sr_loss(model: nn.Module, params: dict[str, Tensor], buffers: dict[str, Tensor], hr: Tensor,
            scale: int) -> Tensor:
    """MSE of the model's SR output on the bicubic-downscaled ``hr`` (B,3,S,S)."""
    lr = imresize(hr, 1.0 / scale)
    sr = functional_call(model, (params, buffers), (lr,))
    return F.mse_loss(sr, hr)


def model_state(model: nn.Module) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Detached parameters and buffers: the weights are a fixed point of the matching step."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    return params, buffers


def batched_class_grads(model: nn.Module, hr: Tensor, scale: int,
                        params: dict[str, Tensor] | None = None,
                        buffers: dict[str, Tensor] | None = None,
                        chunk_size: int | None = None) -> list[Tensor]:
    """Per-class weight gradients for hr of shape (K,B,3,S,S): a list of (K, *param.shape).

    Differentiable w.r.t. ``hr`` when ``hr`` requires grad (torch.func composes with the
    surrounding autograd); for a constant ``hr`` no graph is recorded. ``chunk_size``: classes
    per vectorised call (None = all K).
    """
    if params is None:
        params, buffers = model_state(model)

    def loss(p, h):
        return sr_loss(model, p, buffers, h, scale)

    if chunk_size == 1:  # vmap over one class at a time would only add layout copies
        per_class = [grad(loss)(params, h) for h in hr]
        return [torch.stack([g[name] for g in per_class]) for name in params]
    g = vmap(grad(loss), in_dims=(None, 0), chunk_size=chunk_size)(params, hr)
    return [g[name] for name in params]


def loop_class_grads(model: nn.Module, hr: Tensor, scale: int, create_graph: bool) -> list[Tensor]:
    """Reference implementation of :func:`batched_class_grads`: one autograd call per class."""
    params = [p for p in model.parameters()]
    per_class = []
    for c in range(hr.shape[0]):
        with torch.enable_grad():
            lr = imresize(hr[c], 1.0 / scale)
            loss = F.mse_loss(model(lr), hr[c])
            g = torch.autograd.grad(loss, params, create_graph=create_graph)
        per_class.append(g if create_graph else [t.detach() for t in g])
    return [torch.stack([g[i] for g in per_class]) for i in range(len(params))]


def auto_chunk(device: str | torch.device) -> int | None:
    """Classes per vmap call for gradient matching: all of them on a GPU, one on a CPU.

    vmap turns per-class weight gradients into grouped convolutions. A GPU needs that width;
    on a CPU oneDNN runs grouped convolutions with few channels per group (SRCNN's RGB layers)
    slower than separate ones (0.64-0.82x the loop at IPC 1, bench_distill), while one class per
    call runs the per-class loop's own kernels: its results equal the loop's bit for bit, at
    0.99-1.23x its speed. That matters beyond speed: the main job's recipe turns the 3e-5
    relative gradient difference of a whole-chunk vmap into sets 3 grey levels apart (mean;
    max 51) after 100 iterations.
    """
    return None if torch.device(device).type != "cpu" else 1


def match_and_backward(model: nn.Module, syn: Tensor, real: Tensor, scale: int, distance: str = "cos",
                       classes_per_step: int = 32, batched: bool = True,
                       real_chunk: int | None = None, syn_chunk: int | None = None) -> Tensor:
    """Gradient-matching distances of K classes; their sum is backpropagated into ``syn``.

    syn: (K, ipc, 3, S, S), a view of a leaf tensor that requires grad (its ``.grad`` is
    accumulated); real: (K, B, 3, S, S). Returns the detached (K,) distances.

    real_chunk / syn_chunk: classes per vectorised call for the real / synthetic gradients
    (None = the whole chunk); :func:`auto_chunk` gives the choice per device.
    """
    if syn.dim() != 5 or real.dim() != 5 or syn.shape[0] != real.shape[0]:
        raise ValueError(f"expected syn (K,ipc,3,S,S) and real (K,B,3,S,S), got {tuple(syn.shape)} and "
                         f"{tuple(real.shape)}")
    dist = get_distance(distance)
    k = syn.shape[0]
    out = []
    for c0 in range(0, k, classes_per_step):
        c1 = min(c0 + classes_per_step, k)
        if batched:
            params, buffers = model_state(model)
            with torch.no_grad():
                g_real = [g.detach() for g in batched_class_grads(model, real[c0:c1], scale, params, buffers,
                                                                  real_chunk)]
            g_syn = batched_class_grads(model, syn[c0:c1], scale, params, buffers, syn_chunk)
        else:
            g_real = loop_class_grads(model, real[c0:c1], scale, create_graph=False)
            g_syn = loop_class_grads(model, syn[c0:c1], scale, create_graph=True)
        d = dist(g_syn, g_real)
        d.sum().backward()
        out.append(d.detach())
    if not batched:  # the loop differentiates the live weights: drop what leaked into them
        model.zero_grad(set_to_none=True)
    return torch.cat(out)
