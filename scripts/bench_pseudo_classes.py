"""Which sub-image descriptor makes better pseudo-classes for class-agnostic distillation?

    python scripts/bench_pseudo_classes.py --config configs/distill_agnostic_mini.yaml
    python scripts/bench_pseudo_classes.py --config configs/distill_agnostic_mini.yaml --clusters 4 7 12

Groups the sub-images of the config's data four ways — k-means on ``random_net``
descriptors, k-means on ``stats`` descriptors (hf_srdistill.distill.pseudo_classes), the
source photos (classic classes), and a seeded random partition of the same sizes as the
``stats`` clusters (the null) — and scores each grouping with two SR measures that neither
descriptor computes:

- gradient agreement: the mean cosine between the SR-loss weight gradients of two sub-images
  of the same group (a random 96-px crop each), under fresh reference networks, as in
  gradient matching. A group whose members pull a network the same way is one a few
  synthetic images can stand for;
- difficulty R^2: the share of the variance of each sub-image's bicubic PSNR (down then up by
  the scale: how hard it is to super-resolve) explained by the grouping.

Higher is better for both. Prints a table; the descriptor time is wall-clock on this machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time

import numpy as np
import torch

from hf_srdistill.accel import seed_for
from hf_srdistill.config import ClusterConfig, DistillJobConfig
from hf_srdistill.configio import load_config
from hf_srdistill.data import imresize
from hf_srdistill.data.grouped import SubImageStore
from hf_srdistill.distill.matching import loop_class_grads
from hf_srdistill.distill.pseudo_classes import describe, kmeans, standardise
from hf_srdistill.models import build_model

NETS, CROP = 3, 96


def sr_gradients(store, cfg: DistillJobConfig, nets: int) -> list[np.ndarray]:
    """Per net: (N, P) unit-norm SR-loss weight gradients, one random CROP crop per sub-image."""
    d = cfg.distill
    gen = torch.Generator().manual_seed(seed_for(d.seed, 99))
    subs = store.all_subimages()
    crops = []
    for i in range(len(subs)):
        img = subs[i]
        t = int(torch.randint(img.shape[0] - CROP + 1, (1,), generator=gen))
        l_ = int(torch.randint(img.shape[1] - CROP + 1, (1,), generator=gen))
        crops.append(torch.from_numpy(img[t:t + CROP, l_:l_ + CROP].copy()).permute(2, 0, 1).float() / 255)
    hr = torch.stack(crops)[:, None]  # each sub-image its own "class" of one image
    out = []
    for n in range(nets):
        torch.manual_seed(seed_for(d.seed, 98, n))
        model = build_model(d.reference)
        g = torch.cat([t.flatten(1) for t in loop_class_grads(model, hr, d.reference.scale, create_graph=False)], 1)
        out.append(torch.nn.functional.normalize(g, dim=1).double().numpy())
    return out


def bicubic_psnr(store, scale: int) -> np.ndarray:
    subs = store.all_subimages()
    vals = []
    for i in range(len(subs)):
        x = torch.from_numpy(subs[i].copy()).permute(2, 0, 1).double()[None] / 255
        y = imresize(imresize(x, 1 / scale), scale)[..., :x.shape[-2], :x.shape[-1]].clamp(0, 1)
        vals.append(float(10 * torch.log10(1 / ((x - y) ** 2).mean())))
    return np.asarray(vals)


def agreement(grads: list[np.ndarray], labels: np.ndarray) -> float:
    """Mean cosine between distinct members of a group, averaged over groups (size >= 2) and nets."""
    scores = []
    for g in grads:
        per = []
        for k in np.unique(labels):
            m = g[labels == k]
            if len(m) < 2:
                continue
            s = m.sum(0)
            per.append((s @ s - len(m)) / (len(m) * (len(m) - 1)))  # off-diagonal mean of the cosine matrix
        scores.append(np.mean(per))
    return float(np.mean(scores))


def r_squared(values: np.ndarray, labels: np.ndarray) -> float:
    means = {k: values[labels == k].mean() for k in np.unique(labels)}
    fitted = np.array([means[k] for k in labels])
    return float(1 - ((values - fitted) ** 2).sum() / ((values - values.mean()) ** 2).sum())


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="DistillJobConfig YAML (data, reference, seed)")
    p.add_argument("--clusters", type=int, nargs="+", default=None, help="cluster counts (default: the config's)")
    p.add_argument("--nets", type=int, default=NETS, help="random reference nets for gradient agreement")
    args, overrides = p.parse_known_args(argv)
    cfg = load_config(DistillJobConfig, args.config, overrides)
    d = cfg.distill
    store = SubImageStore.build(cfg.data)
    photos = np.asarray(store.labels())
    grads = sr_gradients(store, cfg, args.nets)
    psnr = bicubic_psnr(store, d.reference.scale)
    desc, secs = {}, {}
    for kind in ("random_net", "stats"):
        t = time.time()
        desc[kind] = standardise(describe(store.all_subimages(), dataclasses.replace(
            d, clusters=ClusterConfig(features=kind))))
        secs[kind] = time.time() - t
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"data: {store.num_classes} photos, {len(store)} sub-images; reference {d.reference.name} "
          f"(features {d.reference.num_features}), x{d.reference.scale}; {args.nets} nets; "
          f"descriptor time: " + ", ".join(f"{k} {v:.1f} s" for k, v in secs.items()))
    head = f"{'grouping':<22} {'groups':>6} {'gradient agreement':>19} {'difficulty R^2':>15}"
    print(head + "\n" + "-" * len(head))
    print(f"{'all sub-images (one)':<22} {1:>6} {agreement(grads, np.zeros_like(photos)):>19.4f} {0.0:>15.3f}")
    print(f"{'source photos':<22} {store.num_classes:>6} {agreement(grads, photos):>19.4f} "
          f"{r_squared(psnr, photos):>15.3f}")
    for k in args.clusters or [d.clusters.num_clusters]:
        for kind in ("random_net", "stats"):
            labels, _ = kmeans(desc[kind], k, d.seed, d.clusters.restarts, d.clusters.iterations)
            print(f"{'k-means ' + kind:<22} {k:>6} {agreement(grads, labels):>19.4f} {r_squared(psnr, labels):>15.3f}")
        null = np.random.default_rng(d.seed).permutation(labels)  # random groups, sizes of the stats clusters
        print(f"{'random partition':<22} {k:>6} {agreement(grads, null):>19.4f} {r_squared(psnr, null):>15.3f}")


if __name__ == "__main__":
    main()
