"""Peak memory of the latent backward pass as the set grows, at a fixed chunk size.

    python -m hf_srdistill.latent.bench_memory                      # tiny VAE, 64 px, CPU
    python -m hf_srdistill.latent.bench_memory --sizes 8 32 128 --chunk 8 --device cuda

For each number of synthetic images N (= IPC x classes) it runs, in a fresh process,
``backward_through_decoder`` (the chunked path the engine uses) and, for comparison, the
same backward with ``chunk_size = N`` (one full pass), and prints the peak memory above the
level just before the call. The codes, the pixel gradient and the code gradients are
allocated before that level is taken, so the figure is the decoder's activation memory:
flat in N for the chunked path, linear for the full one.

Memory: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the process RSS sampled every
millisecond by a thread (torch's CPU allocator is invisible to tracemalloc), in a fresh
process per measurement with glibc's mmap threshold fixed at 64 KiB, so that freed
activation blocks leave the RSS and an earlier chunk's memory cannot pose as growth.
The decoder is an untrained AutoencoderKL built from config: memory depends on the shapes
only, not on the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import torch

from hf_srdistill.config import LatentConfig
from hf_srdistill.peak_memory import PeakMemory


def measure(n: int, chunk: int, size: int, channels: list[int], device: str) -> dict:
    """One measurement in this process: peak bytes above the pre-call level, and seconds."""
    from hf_srdistill.latent import backward_through_decoder, build_backend

    torch.set_num_threads(1)  # steady numbers on a shared machine
    cfg = LatentConfig(backend="vae", vae_channels=channels, chunk_size=chunk)
    backend = build_backend(cfg, size, device=device)
    f = 2 ** (len(channels) - 1)
    backend.set_latents({"z": torch.randn(n, 4, size // f, size // f)}, list(range(n)))
    grad = torch.randn(n, 3, size, size, device=device)
    for t in backend.latent_tensors():  # allocate the code gradients before the baseline
        t.grad = torch.zeros_like(t)
    t0 = time.perf_counter()
    with PeakMemory(device, period=0.001) as m:
        backward_through_decoder(backend, grad)
    return {"n": n, "chunk": chunk, "peak_bytes": m.delta, "seconds": time.perf_counter() - t0}


def _child(n: int, chunk: int, args) -> dict:
    cmd = [sys.executable, "-m", "hf_srdistill.latent.bench_memory", "--child", str(n), str(chunk),
           "--size", str(args.size), "--device", args.device, "--channels", *map(str, args.channels)]
    # a fixed mmap threshold makes glibc hand large freed blocks (activations) back to the OS, so
    # RSS follows live memory; its default, adaptive threshold keeps them in the heap instead
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 16)}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32, 64], help="numbers of images N")
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--size", type=int, default=64, help="synthetic image side")
    p.add_argument("--channels", type=int, nargs="+", default=[32, 64], help="VAE block widths")
    p.add_argument("--device", default="cpu")
    p.add_argument("--child", type=int, nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1], args.size, args.channels, args.device)))
        return 0
    where = (torch.cuda.get_device_name(0) if args.device.startswith("cuda")
             else f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"latent backward peak memory above baseline: AutoencoderKL{args.channels}, {args.size} px, "
          f"{args.device} ({where}), torch {torch.__version__}")
    print(f"{'N images':>9} {'chunked (' + str(args.chunk) + ') MiB':>18} {'full pass MiB':>14} "
          f"{'chunked s':>10} {'full s':>8}")
    for n in args.sizes:
        c, f = _child(n, args.chunk, args), _child(n, n, args)
        print(f"{n:>9} {c['peak_bytes'] / 2**20:>18.1f} {f['peak_bytes'] / 2**20:>14.1f} "
              f"{c['seconds']:>10.2f} {f['seconds']:>8.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
