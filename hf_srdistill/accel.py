"""One place that decides how Accelerate is built.

On a machine without CUDA, `accelerate launch --multi_gpu --num_processes N` only gives a
real N-process (gloo) group when the Accelerator is built with cpu=True, so that choice is
made here automatically instead of in every entry point.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator


def make_accelerator(**kwargs) -> Accelerator:
    kwargs.setdefault("cpu", not torch.cuda.is_available())
    return Accelerator(**kwargs)


def seed_for(*parts: int) -> int:
    """A deterministic 63-bit seed from integers (seed, class, iteration, ...).

    Streams derived this way do not depend on process count or sharding.
    """
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (int(p) & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h & 0x7FFFFFFFFFFFFFFF
