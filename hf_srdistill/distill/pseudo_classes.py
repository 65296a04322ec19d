"""Pseudo-classes for class-agnostic distillation: k-means on one descriptor per sub-image.

"One photo = one class" means nothing for SR; grouping sub-images by what they look like
gives classes that do. Two descriptors (``distill.clusters.features``):

- ``random_net``: per-channel mean and standard deviation of every activation map of a
  frozen, randomly initialised reference SR network (``distill.reference``, seeded by
  ``distill.seed``) on the sub-image's bicubic LR, i.e. the statistics the DM objective
  matches, seen by the same kind of network;
- ``stats``: hand-made image statistics: RGB means and standard deviations, a histogram of
  the Sobel gradient magnitude on log-spaced bins (edge strength) and a histogram of
  rotation-invariant uniform local binary patterns (micro-texture).

Every dimension is standardised over the data set before k-means (scipy's ``kmeans2``,
k-means++ starts, ``restarts`` runs, the lowest within-cluster sum of squares kept; runs
that leave a cluster empty are discarded). Everything is seeded, so a seed gives one
clustering; the labels are cached under ``data.cache_dir`` by the store's fingerprint and
the clustering settings, which also lets the processes of a multi-process run share them.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from hf_srdistill.accel import seed_for
from hf_srdistill.config import DistillConfig
from hf_srdistill.data import imresize
from hf_srdistill.io import atomic_path

log = logging.getLogger(__name__)

CLUSTER_STREAM = 6  # apart from the loop's streams (1-4)
_VERSION = 1
GRAD_BINS = np.concatenate([[0.0], np.logspace(-3, 0, 8)[1:], [np.inf]])  # 8 bins, 1e-3 .. 1 and above
LBP_POINTS = 8  # uniform LBP with 8 neighbours: P + 2 = 10 codes


def _tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)


def random_net_descriptors(images: Sequence[np.ndarray], cfg: DistillConfig, batch: int = 8) -> np.ndarray:
    """(N, 2 * total channels): mean and std over positions of every activation map."""
    from hf_srdistill.distill.dm import activations
    from hf_srdistill.models import build_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_for(cfg.seed, CLUSTER_STREAM))
        model = build_model(cfg.reference).eval()

    def pool(f: torch.Tensor) -> torch.Tensor:
        flat = f.flatten(2)
        return torch.cat([flat.mean(-1), flat.std(-1)], dim=1)

    out = []
    with torch.no_grad():
        for i in tqdm(range(0, len(images), batch), desc="descriptors (random net)", disable=None):
            lr = imresize(_tensor(images[i:i + batch]), 1.0 / cfg.reference.scale)
            out.append(torch.cat(activations(model, lr, reduce=pool), dim=1).double().numpy())
    return np.concatenate(out)


def stats_descriptors(images: Sequence[np.ndarray]) -> np.ndarray:
    """(N, 24): RGB mean/std (6), gradient-magnitude histogram (8), uniform-LBP histogram (10)."""
    from skimage.color import rgb2gray
    from skimage.feature import local_binary_pattern
    from skimage.filters import sobel

    rows = []
    for img in tqdm(images, desc="descriptors (statistics)", disable=None):
        rgb = img.reshape(-1, 3) / 255.0
        grey = rgb2gray(img)
        grad = np.histogram(sobel(grey), bins=GRAD_BINS)[0]
        lbp = local_binary_pattern((grey * 255).astype(np.uint8), LBP_POINTS, 1, method="uniform")
        codes = np.bincount(lbp.astype(np.int64).ravel(), minlength=LBP_POINTS + 2)
        rows.append(np.concatenate([rgb.mean(0), rgb.std(0), grad / grad.sum(), codes / codes.sum()]))
    return np.asarray(rows, dtype=np.float64)


def describe(images: Sequence[np.ndarray], cfg: DistillConfig) -> np.ndarray:
    kind = cfg.clusters.features
    return random_net_descriptors(images, cfg) if kind == "random_net" else stats_descriptors(images)


def standardise(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per dimension (constant dimensions are left at 0)."""
    std = x.std(0)
    return (x - x.mean(0)) / np.where(std > 0, std, 1.0)


def kmeans(x: np.ndarray, k: int, seed: int, restarts: int = 10, iterations: int = 50) -> tuple[np.ndarray, float]:
    """Labels (N,) in [0, k) of the best of ``restarts`` k-means++ runs, and its inertia."""
    from scipy.cluster.vq import ClusterError, kmeans2

    n_distinct = len(np.unique(x, axis=0))
    if k > n_distinct:
        raise ValueError(f"distill.clusters.num_clusters={k} exceeds the {n_distinct} distinct sub-image "
                         f"descriptors ({len(x)} sub-images): lower num_clusters")
    best: tuple[np.ndarray, float] | None = None
    for r in range(restarts):
        try:
            centroids, labels = kmeans2(x, k, iter=iterations, minit="++", missing="raise",
                                        rng=np.random.default_rng(seed_for(seed, CLUSTER_STREAM, r)))
        except ClusterError:  # a cluster emptied: this start is discarded
            continue
        inertia = float(((x - centroids[labels]) ** 2).sum())
        if best is None or inertia < best[1]:
            best = (labels.astype(np.int64), inertia)
    if best is None:
        raise ValueError(f"every one of {restarts} k-means runs left a cluster empty with num_clusters={k}: "
                         "lower distill.clusters.num_clusters or raise distill.clusters.restarts")
    return best


def _cache_file(store, cfg: DistillConfig, cache_dir: str) -> Path:
    key = [_VERSION, store.fingerprint, asdict(cfg.clusters), cfg.seed]
    if cfg.clusters.features == "random_net":
        key.append(asdict(cfg.reference))
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir).expanduser() / "pseudo_classes" / f"{digest}.npz"


def cluster_subimages(store, cfg: DistillConfig, cache_dir: str) -> np.ndarray:
    """Pseudo-class of every sub-image of ``store`` (in ``all_subimages()`` order), cached."""
    path = _cache_file(store, cfg, cache_dir)
    if path.is_file():
        with np.load(path) as f:
            return f["labels"]
    c = cfg.clusters
    x = standardise(describe(store.all_subimages(), cfg))
    labels, inertia = kmeans(x, c.num_clusters, cfg.seed, c.restarts, c.iterations)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, labels=labels, inertia=inertia)
    log.info("k-means (%s descriptors): %d sub-images -> %d pseudo-classes of sizes %s", c.features, len(labels),
             c.num_clusters, np.bincount(labels, minlength=c.num_clusters).tolist())
    return labels
