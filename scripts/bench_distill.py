"""Gradient-matching throughput: the per-class loop vs the batched (vmap) path, side by side.

    python scripts/bench_distill.py                      # 8/32/128 classes, IPC 1 and 10
    python scripts/bench_distill.py --classes 8 --ipc 1 --repeats 1 --size 48   # quick

For every (classes, IPC) it times one full matching step (real gradients, synthetic
gradients with create_graph, distance, backward into the pixels) with each path, and prints:
class-matchings/s, peak memory above the pre-call level, achieved GFLOP/s against the
machine's measured dense-convolution peak, and the largest difference between the two
paths' pixel gradients (relative to the largest gradient).

FLOPs are counted from the model with ``models.count_conv_flops`` (conv layers, one
multiply-add = 2 FLOPs) for one forward pass of one image, times a stated factor per image:
3 for a real image (forward, input-gradient, weight-gradient) and 8 for a synthetic image
(the same 3, then the double backward through both gradient convolutions, 4, and the
input-gradient back through the forward, 1). ``--count-flops`` cross-checks the factor with
``torch.utils.flop_counter`` on the executed ops of the loop path.

Memory: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the process RSS sampled every
2 ms by a background thread (torch's CPU allocator is invisible to tracemalloc, and
ru_maxrss cannot be reset between measurements), minus the RSS just before the call.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import threading
import time

import psutil
import torch

from hf_srdistill.config import ModelConfig
from hf_srdistill.distill.matching import match_and_backward
from hf_srdistill.models import build_model, count_conv_flops

REAL_FACTOR, SYN_FACTOR = 3, 8


class PeakRSS:
    """Peak resident memory above the level at entry, sampled by a thread."""

    def __init__(self, period: float = 0.002):
        self.period, self.proc = period, psutil.Process()

    def __enter__(self):
        self.base = self.peak = self.proc.memory_info().rss
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def _watch(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.period)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.delta = self.peak - self.base


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def conv_peak(device, repeats: int) -> tuple[float, str]:
    """Best GFLOP/s of a few large dense conv2d forwards (the achievable convolution peak)."""
    shapes = [(32, 64, 96, 64, 3), (16, 64, 96, 32, 5), (64, 128, 64, 128, 3)]
    best, best_desc = 0.0, ""
    for n, cin, hw, cout, k in shapes:
        x = torch.randn(n, cin, hw, hw, device=device)
        w = torch.randn(cout, cin, k, k, device=device)
        flops = 2 * n * cout * hw * hw * cin * k * k
        torch.nn.functional.conv2d(x, w, padding=k // 2)
        sync(device)
        times = []
        for _ in range(max(3, repeats)):
            t = time.perf_counter()
            torch.nn.functional.conv2d(x, w, padding=k // 2)
            sync(device)
            times.append(time.perf_counter() - t)
        g = flops / min(times) / 1e9
        if g > best:
            best, best_desc = g, f"conv {n}x{cin}x{hw}x{hw} -> {cout}, {k}x{k}"
    return best, best_desc


def one_step(model, syn0, real, scale, batched, cps, device):
    leaf = syn0.clone().requires_grad_(True)
    k, ipc = real.shape[0], syn0.shape[0] // real.shape[0]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    sync(device)
    with PeakRSS() as mem:
        t = time.perf_counter()
        match_and_backward(model, leaf.view(k, ipc, *syn0.shape[1:]), real, scale, "cos", cps, batched)
        sync(device)
        dt = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated() - base if device.type == "cuda" else mem.delta
    return dt, peak, leaf.grad.detach()


def measure_factor(model, scale, size, batch_real):
    from torch.utils.flop_counter import FlopCounterMode

    real = torch.rand(1, batch_real, 3, size, size)
    syn = torch.rand(1, 3, size, size).requires_grad_(True)
    per_image = count_conv_flops(model, (1, 3, size // scale, size // scale))
    with FlopCounterMode(display=False) as fc:
        match_and_backward(model, syn.view(1, 1, 3, size, size), real, scale, "cos", 1, batched=False)
    total = fc.get_total_flops()
    return total / per_image, REAL_FACTOR * batch_real + SYN_FACTOR


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="srcnn")
    p.add_argument("--num-features", type=int, default=None, help="reference width (None = published)")
    p.add_argument("--scale", type=int, default=2)
    p.add_argument("--classes", type=int, nargs="+", default=[8, 32, 128])
    p.add_argument("--ipc", type=int, nargs="+", default=[1, 10])
    p.add_argument("--batch-real", type=int, default=16)
    p.add_argument("--size", type=int, default=96, help="HR side of real and synthetic images")
    p.add_argument("--classes-per-step", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (best is reported)")
    p.add_argument("--loop-max-classes", type=int, default=128, help="skip the loop above this (slow)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--count-flops", action="store_true", help="check the FLOP factor with flop_counter")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(ModelConfig(name=args.model, scale=args.scale, num_features=args.num_features)).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    per_image = count_conv_flops(model, (1, 3, args.size // args.scale, args.size // args.scale))
    peak, peak_desc = conv_peak(device, args.repeats)
    hw = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    print(f"machine: {hw}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}")
    print(f"dense-conv peak: {peak:.1f} GFLOP/s ({peak_desc})")
    print(f"model: {args.model} (features {args.num_features or 'published'}), x{args.scale}, "
          f"{per_image / 1e9:.3f} GFLOP per {args.size}px forward; factors real {REAL_FACTOR}, synthetic {SYN_FACTOR}")
    if args.count_flops:
        measured, stated = measure_factor(model.cpu(), args.scale, args.size, args.batch_real)
        model.to(device)
        print(f"flop_counter on the loop path (1 class, {args.batch_real} real + 1 synthetic): "
              f"{measured:.1f} forward-equivalents executed vs {stated} stated")
    head = (f"{'classes':>7} {'ipc':>4} {'path':>7} {'match/s':>9} {'s/step':>8} {'peak MB':>9} "
            f"{'GFLOP/s':>8} {'% peak':>7} {'speedup':>8} {'max rel grad diff':>18}")
    print(head + "\n" + "-" * len(head), flush=True)
    for ipc in args.ipc:
        for k in args.classes:
            gen = torch.Generator().manual_seed(k * 100 + ipc)
            real = torch.rand(k, args.batch_real, 3, args.size, args.size, generator=gen).to(device)
            syn = torch.rand(k * ipc, 3, args.size, args.size, generator=gen).to(device)
            flops = k * per_image * (REAL_FACTOR * args.batch_real + SYN_FACTOR * ipc)
            cps = min(k, args.classes_per_step)
            rows, grads = {}, {}
            paths = [("loop", False), ("batched", True)] if k <= args.loop_max_classes else [("batched", True)]
            for name, batched in paths:
                # warm-up on the chunk size: first calls pay for kernel selection and allocation
                one_step(model, syn[: cps * ipc], real[:cps], args.scale, batched, cps, device)
                runs = [one_step(model, syn, real, args.scale, batched, cps, device) for _ in range(args.repeats)]
                best = min(r[0] for r in runs)
                rows[name] = (best, max(r[1] for r in runs), statistics.median(r[0] for r in runs))
                grads[name] = runs[-1][2]
            diff = ""
            if len(grads) == 2:
                g0, g1 = grads["loop"], grads["batched"]
                diff = f"{float((g0 - g1).abs().max() / g0.abs().max().clamp_min(1e-30)):.2e}"
            for name, (best, mem, _) in rows.items():
                gf = flops / best / 1e9
                speed = f"{rows['loop'][0] / best:.2f}x" if "loop" in rows and name == "batched" else ""
                print(f"{k:>7} {ipc:>4} {name:>7} {k / best:>9.2f} {best:>8.2f} {mem / 2**20:>9.0f} "
                      f"{gf:>8.1f} {100 * gf / peak:>6.1f}% {speed:>8} {diff if name == 'batched' else '':>18}",
                      flush=True)
    print(f"\nbest of {args.repeats} timed steps each (after one warm-up); batched path chunks "
          f"{args.classes_per_step} classes per vmap call.")


if __name__ == "__main__":
    main()
