"""Sub-image extraction throughput and peak memory as the number of source photos grows.

    python scripts/bench_data.py                          # 8 / 32 / 128 photos of 2040x1356
    python scripts/bench_data.py --sizes 2 4 --width 600 --height 400 --crop-size 96 --step 48

Synthetic DIV2K-sized photos (smooth random colour fields plus fine noise, PNG) are written
once; for each count N a folder of N of them goes through the real build path
(``data.source=folder`` -> ``SubImageStore.build``: decode, BasicSR grid, PNG sub-images into
the Arrow cache) in a fresh process, so its peak RSS belongs to that build
alone (with its workers). Streaming means the peak stays flat as N grows while images/s stays constant;
"over base" is the peak minus the RSS after imports, i.e. what the build itself holds.
Rows per N: BasicSR's ``extract_subimages`` recipe (read, crop, write PNG files at
compression 3, cv2 when installed) on one process, and the store at each ``--num-proc``;
"vs basicsr" is the time ratio. Generating the photos is not timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from hf_srdistill.peak_memory import PeakMemory


# RSS sampling period: every 50 ms catches a photo's peak (each takes ~0.5 s) without taxing
# the timed build; a 5 ms sampler walking the worker tree slowed the parallel rows by about 30 %
SAMPLE_S = 0.05


def synthetic_photo(seed: int, width: int, height: int) -> np.ndarray:
    """A photo-like image: a bicubic-upsampled random colour field plus fine-grained noise."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (max(2, height // 60), max(2, width // 60), 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.int16)
    noise = rng.normal(0, 12, (height, width, 3))
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def worker(folder: str, cache: str, crop: int, step: int, num_proc: int) -> dict:
    """Build the store for one folder in this (fresh) process; report time and memory."""
    import datasets  # noqa: F401  imported before timing: the build imports it lazily

    from hf_srdistill.config import DataConfig
    from hf_srdistill.data.grouped import SubImageStore

    cfg = DataConfig(source="folder", path=folder, crop_size=crop, step=step, cache_dir=cache, num_proc=num_proc)
    with PeakMemory("cpu", period=SAMPLE_S, children=True) as mem:
        t0 = time.perf_counter()
        store = SubImageStore.build(cfg)
        seconds = time.perf_counter() - t0
    return {"path": f"store, num_proc {num_proc}", "images": store.num_classes, "subimages": len(store),
            "seconds": seconds, "peak_rss_mib": mem.peak / 2**20, "base_rss_mib": mem.base / 2**20}


def basicsr_worker(folder: str, out: str, crop: int, step: int) -> dict:
    """BasicSR's extract_subimages for one folder, one process: read, crop on its grid, write PNG files.

    cv2 with PNG compression 3 as BasicSR does when cv2 is installed, else PIL at the same level.
    """
    from hf_srdistill.data.subimages import subimage_positions

    try:
        import cv2
    except ImportError:
        cv2 = None
    n_img = n_sub = 0
    with PeakMemory("cpu", period=SAMPLE_S) as mem:
        t0 = time.perf_counter()
        for path in sorted(Path(folder).glob("*.png")):
            img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if cv2 else np.asarray(Image.open(path))
            ys, xs = subimage_positions(img.shape[0], img.shape[1], crop, step, 0)
            for y in ys:
                for x in xs:
                    name = Path(out) / f"{path.stem}_s{n_sub:05d}.png"
                    tile = np.ascontiguousarray(img[y:y + crop, x:x + crop])
                    if cv2:
                        cv2.imwrite(str(name), tile, [cv2.IMWRITE_PNG_COMPRESSION, 3])
                    else:
                        Image.fromarray(tile).save(name, compress_level=3)
                    n_sub += 1
            n_img += 1
        seconds = time.perf_counter() - t0
    return {"path": f"basicsr ({'cv2' if cv2 else 'PIL'})", "images": n_img, "subimages": n_sub,
            "seconds": seconds, "peak_rss_mib": mem.peak / 2**20, "base_rss_mib": mem.base / 2**20}


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
    p.add_argument("--num-proc", type=int, nargs="+", default=[1, 2], help="data.num_proc values to time")
    p.add_argument("--no-basicsr", action="store_true", help="skip the BasicSR-style extraction rows")
    p.add_argument("--worker", nargs=3, metavar=("KIND", "FOLDER", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        kind, folder, out = args.worker
        row = basicsr_worker(folder, out, args.crop_size, args.step) if kind == "basicsr" \
            else worker(folder, out, args.crop_size, args.step, int(kind))
        print(json.dumps(row))
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
        kinds = ([] if args.no_basicsr else ["basicsr"]) + [str(k) for k in args.num_proc]
        for kind in kinds:  # side by side: the same photos, one fresh process (tree) each
            out_dir = work / f"out{n}_{kind}"
            shutil.rmtree(out_dir, ignore_errors=True)
            out_dir.mkdir()
            out = subprocess.run([sys.executable, __file__, "--crop-size", str(args.crop_size), "--step",
                                  str(args.step), "--worker", kind, str(folder), str(out_dir)],
                                 capture_output=True, text=True, check=True)
            rows.append({"n": n, **json.loads(out.stdout.strip().splitlines()[-1])})
            shutil.rmtree(out_dir, ignore_errors=True)  # DIV2K-sized caches take GBs
    print(f"machine: {machine()}")
    print(f"photos {args.width}x{args.height} PNG, sub-images {args.crop_size} px stride {args.step}, "
          "one fresh process (tree) per row; peak RSS = the process and its workers together, sampled\n")
    print("| images | path | sub-images | time s | images/s | sub-images/s | vs basicsr | peak RSS MiB | over base MiB |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ref = next((b for b in rows if b["n"] == r["n"] and b["path"].startswith("basicsr")), None)
        ratio = f"{ref['seconds'] / r['seconds']:.2f}x" if ref and ref is not r else ""
        print(f"| {r['images']} | {r['path']} | {r['subimages']} | {r['seconds']:.1f} | "
              f"{r['images'] / r['seconds']:.2f} | {r['subimages'] / r['seconds']:.1f} | {ratio} | "
              f"{r['peak_rss_mib']:.0f} | {r['peak_rss_mib'] - r['base_rss_mib']:.0f} |")
    ours = [r for r in rows if r["path"] == f"store, num_proc {args.num_proc[0]}"]
    first, last = ours[0], ours[-1]
    print(f"\n{last['images'] / first['images']:.0f}x the photos (store, num_proc {args.num_proc[0]}): peak RSS x"
          f"{last['peak_rss_mib'] / first['peak_rss_mib']:.2f}, images/s x"
          f"{(last['images'] / last['seconds']) / (first['images'] / first['seconds']):.2f}")
    for n in args.sizes:  # process scaling, against the first num_proc, on this machine's cores
        by = {r["path"]: r["seconds"] for r in rows if r["n"] == n}
        base = by.get(f"store, num_proc {args.num_proc[0]}")
        for k in args.num_proc[1:]:
            print(f"{n} photos: num_proc {k} vs {args.num_proc[0]}: x{base / by[f'store, num_proc {k}']:.2f} "
                  f"({os.cpu_count()} logical CPUs)")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=2))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
