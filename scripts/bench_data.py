"""Sub-image extraction throughput and peak memory as the number of source photos grows.

    python scripts/bench_data.py                          # 8 / 32 / 128 photos of 2040x1356
    python scripts/bench_data.py --sizes 2 4 --width 600 --height 400 --crop-size 96 --step 48

Synthetic DIV2K-sized photos (smooth random colour fields plus fine noise, PNG) are written
once; for each count N a folder of N of them goes through the real build path
(``data.source=folder`` -> ``SubImageStore.build``: decode, BasicSR grid, PNG sub-images into
the Arrow cache) in a fresh process, so its peak RSS (``ru_maxrss``) belongs to that build
alone. Streaming means the peak stays flat as N grows while images/s stays constant;
"over base" is the peak minus the RSS after imports, i.e. what the build itself holds.
Generating the photos is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def synthetic_photo(seed: int, width: int, height: int) -> np.ndarray:
    """A photo-like image: a bicubic-upsampled random colour field plus fine-grained noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(2, height // 60), max(2, width // 60), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.int16)
    noise = rng.normal(0, 12, (height, width, 3))
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(folder: str, cache: str, crop: int, step: int) -> dict:
    """Build the store for one folder in this (fresh) process; report time and memory."""
    import datasets  # noqa: F401  imported before timing: the build imports it lazily

    from hf_srdistill.config import DataConfig
    from hf_srdistill.data.grouped import SubImageStore

    base = rss_mib()
    cfg = DataConfig(source="folder", path=folder, crop_size=crop, step=step, cache_dir=cache)
    t0 = time.perf_counter()
    store = SubImageStore.build(cfg)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {"images": store.num_classes, "subimages": len(store), "seconds": seconds,
            "peak_rss_mib": peak, "base_rss_mib": base}


def machine() -> str:
    from hf_srdistill.provenance import hardware

    hw = hardware()
    import torch

    return (f"{hw.get('cpu_model')} x {hw.get('cpu_count')} logical CPUs, {platform.system()}; "
            f"python {platform.python_version()}, torch {torch.__version__}; GPU: {', '.join(hw['cuda']) or 'none'} "
            f"(extraction runs on the CPU)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[8, 32, 128], help="numbers of source photos")
    p.add_argument("--width", type=int, default=2040)
    p.add_argument("--height", type=int, default=1356)
    p.add_argument("--crop-size", type=int, default=480)
    p.add_argument("--step", type=int, default=240)
    p.add_argument("--workdir", help="where photos and caches go (default: a temp dir, removed)")
    p.add_argument("--json", help="also write the rows here")
    p.add_argument("--worker", nargs=2, metavar=("FOLDER", "CACHE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.crop_size, args.step)))
        return 0

    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_data-"))
    pool = work / "pool"
    pool.mkdir(parents=True, exist_ok=True)
    n_max = max(args.sizes)
    for i in range(n_max):  # not timed
        path = pool / f"{i:04d}.png"
        if not path.is_file():
            Image.fromarray(synthetic_photo(i, args.width, args.height)).save(path, compress_level=6)
    rows = []
    for n in args.sizes:
        folder = work / f"n{n}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        for i in range(n):
            os.symlink(pool / f"{i:04d}.png", folder / f"{i:04d}.png")
        cache = work / f"cache{n}"
        shutil.rmtree(cache, ignore_errors=True)
        out = subprocess.run([sys.executable, __file__, "--crop-size", str(args.crop_size), "--step", str(args.step),
                              "--worker", str(folder), str(cache)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        shutil.rmtree(cache, ignore_errors=True)  # DIV2K-sized caches take GBs
    print(f"machine: {machine()}")
    print(f"photos {args.width}x{args.height} PNG, sub-images {args.crop_size} px stride {args.step}, "
          "one fresh process per row\n")
    print("| images | sub-images | time s | images/s | sub-images/s | peak RSS MiB | over base MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['images']} | {r['subimages']} | {r['seconds']:.1f} | {r['images'] / r['seconds']:.2f} | "
              f"{r['subimages'] / r['seconds']:.1f} | {r['peak_rss_mib']:.0f} | "
              f"{r['peak_rss_mib'] - r['base_rss_mib']:.0f} |")
    first, last = rows[0], rows[-1]
    print(f"\n{last['images'] / first['images']:.0f}x the photos: peak RSS x"
          f"{last['peak_rss_mib'] / first['peak_rss_mib']:.2f}, images/s x"
          f"{(last['images'] / last['seconds']) / (first['images'] / first['seconds']):.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
