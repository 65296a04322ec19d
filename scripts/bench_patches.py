"""Training-patch throughput from large sub-images: whole-image LR vs the LR window.

    python scripts/bench_patches.py                     # 600 sub-images of 480 px, x2 and x4
    python scripts/bench_patches.py --images 64 --side 480 --samples 2000

A judge trained on the full data draws each patch from a random 480-px sub-image (DIV2K's,
or the photos suite's 601). Resizing the whole sub-image for every patch, as the whole-image
path must once its LR cache (256 MiB) is full, costs more than the judge's own step; the
window path (``data.patches.WINDOW_MIN_PIXELS``) resizes only the HR pixels the patch's LR
depends on and gives the same pixels (up to float summation order). Both paths draw from the
same in-memory uint8 sub-images (no PNG decode), in one process, interleaved by scale, so the
ratio is measured side by side.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch


def sub_images(n: int, side: int, seed: int = 0) -> list[np.ndarray]:
    """Photo-like uint8 images: a smooth random colour field plus noise (bench_data's recipe)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        coarse = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((side, side), Image.BICUBIC), dtype=np.int16)
        out.append(np.clip(smooth + rng.normal(0, 12, (side, side, 3)), 0, 255).astype(np.uint8))
    return out


def rate(ds, n_images: int, samples: int) -> float:
    torch.manual_seed(0)
    order = torch.randint(n_images, (samples,)).tolist()
    t0 = time.process_time()
    for i in order:
        ds[i]
    return samples / (time.process_time() - t0)


def main(argv: list[str] | None = None) -> int:
    import hf_srdistill.data.patches as patches

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=600)
    p.add_argument("--side", type=int, default=480)
    p.add_argument("--patch", type=int, default=48)
    p.add_argument("--samples", type=int, default=3000)
    p.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    images = sub_images(args.images, args.side)
    print(f"machine: {platform.machine()}, torch {torch.__version__}, {args.threads} thread(s); "
          f"{args.images} sub-images of {args.side} px, {args.patch}-px HR patches, {args.samples} samples "
          "per row after one warm-up pass, cpu clock")
    print(f"{'scale':>5} {'path':>12} {'patches/s':>10} {'vs whole':>9} {'max |LR diff|':>14}")
    default = patches.WINDOW_MIN_PIXELS
    for scale in args.scales:
        rates, first = {}, {}
        for path, threshold in (("whole image", 10**12), ("window", default)):
            patches.WINDOW_MIN_PIXELS = threshold
            ds = patches.PairedPatchDataset(images, args.patch, scale, augment=True)
            rate(ds, len(images), min(args.samples, len(images)))  # warm-up: the whole path fills its cache
            rates[path] = rate(ds, len(images), args.samples)
            torch.manual_seed(1)
            first[path] = [ds[i][0] for i in range(8)]
        patches.WINDOW_MIN_PIXELS = default
        diff = max(float((a - b).abs().max()) for a, b in zip(first["whole image"], first["window"]))
        for path, r in rates.items():
            ratio = "" if path == "whole image" else f"{r / rates['whole image']:.2f}x"
            shown = "" if path == "whole image" else f"{diff:.1e}"
            print(f"{scale:>5} {path:>12} {r:>10.0f} {ratio:>9} {shown:>14}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
