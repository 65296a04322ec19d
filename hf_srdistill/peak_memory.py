"""Peak memory of a block of code: what the plan, the memory benches and bench_distill report.

CUDA: the allocator's peak (``torch.cuda.max_memory_allocated``). CPU: the process RSS, sampled
by a thread every ``period`` seconds, since ``ru_maxrss`` cannot be reset between two
measurements in one process (``children=True`` adds the live child processes, e.g. pool
workers). ``delta`` is the peak above the level at entry.
"""

from __future__ import annotations

import threading
import time
from typing import Any


class PeakMemory:
    """Peak memory during a block: CUDA allocator peak on a GPU, else process RSS sampled every 2 ms."""

    def __init__(self, device: Any = "cpu", period: float = 0.002, children: bool = False) -> None:
        import torch

        self.device, self.period, self.children = torch.device(device), period, children

    def __enter__(self) -> "PeakMemory":
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            import psutil

            self.proc = psutil.Process()
            self.base = self.peak = self._rss()
            self.stop = threading.Event()
            self.thread = threading.Thread(target=self._watch, daemon=True)
            self.thread.start()
        return self

    def _watch(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.period)

    def _rss(self) -> int:
        """This process's RSS, plus its live children's unique memory (USS) when ``children``.

        USS, not RSS: a forked worker shares the parent's pages, which RSS would count twice.
        """
        import psutil

        total = self.proc.memory_info().rss
        for child in self.proc.children(recursive=True) if self.children else ():
            try:
                total += child.memory_full_info().uss
            except psutil.Error:  # it ended between the listing and the read
                pass
        return total

    def __exit__(self, *exc) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self.stop.set()
            self.thread.join()
            self.peak = max(self.peak, self._rss())
        self.delta = self.peak - self.base


def free_memory(device: Any) -> int:
    """Bytes new tensors can still get: free device memory plus PyTorch's unused cache on CUDA,
    else the system's available RAM."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    import psutil

    return psutil.virtual_memory().available


def chunk_that_fits(per_item: int, free: int, items: int, fraction: float = 0.5) -> int:
    """Most items (1..items) whose working memory, ``per_item`` bytes each, fits in ``fraction``
    of ``free``; the rest is headroom for the allocator, the optimiser and the set itself."""
    return max(1, min(items, int(fraction * free) // max(per_item, 1)))
