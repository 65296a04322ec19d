"""Class-agnostic distillation: a synthetic set of any size, not tied to the source photos.

The engine distils *matching units*: ``ipc`` synthetic images matched together against
real patches drawn from one pool of sub-images. With ``distill.grouping=class`` a unit is
a source photo. Class-agnostic groupings hand the engine a :class:`PooledStore` instead, a
view of the :class:`~hf_srdistill.data.grouped.SubImageStore` whose "classes" are units:

- ``global``: ``num_images / ipc`` units, every one drawing its real patches from all
  sub-images of the data set;
- ``kmeans``: the same number of units spread over k-means pseudo-classes of the
  sub-images (:mod:`hf_srdistill.distill.pseudo_classes`), proportionally to their sizes
  with at least one unit each.

Each unit draws from its own random streams like a class does, so sharding over processes
(by unit), checkpoint/resume and the set format stay as they are. The written set labels
every image with its group ("global", or "cluster_03"), and ``ipc_index`` numbers the
images of a group; the grouping and the group sizes go into provenance.json.

Initial images (``init=downscaled``): under ``global`` image j downscales photo π(j mod N)
of a seeded permutation π of the N photos (the whole photo's centre square on the first
pass, random square windows of it after that, as ``ipc > 1`` does for a class); under
``kmeans`` the images of a pseudo-class downscale distinct members of it, drawn at random
(again random windows once the members run out). ``noise`` and ``real`` work unchanged.
"""

from __future__ import annotations

import numpy as np
import torch

from hf_srdistill.config import DistillConfig, DistillJobConfig
from hf_srdistill.data.grouped import random_crops
from hf_srdistill.distill.synthetic import INIT_STREAM, class_generator, downscaled_images
from hf_srdistill.distill.synthetic import init_images as class_init_images

__all__ = ["PooledStore", "group_store", "initial_images", "set_layout", "real_store", "allocate"]


class PooledStore:
    """A SubImageStore view whose classes are matching units, each with a pool of sub-images."""

    def __init__(self, base, pools: list[np.ndarray], unit_group: list[int], group_names: list[str],
                 info: dict) -> None:
        self.base, self.pools, self.unit_group, self.group_names, self.info = base, pools, unit_group, group_names, info
        self.fingerprint = base.fingerprint
        index = [sum(1 for g in unit_group[:u] if g == unit_group[u]) for u in range(len(unit_group))]
        self.class_names = [f"{group_names[g]}/{i}" for g, i in zip(unit_group, index)]
        self._subs = base.all_subimages()

    @property
    def num_classes(self) -> int:
        return len(self.unit_group)

    def __len__(self) -> int:
        return len(self.base)

    def _check(self, c: int) -> int:
        if not 0 <= c < self.num_classes:
            raise IndexError(f"unit {c} out of range: the set has {self.num_classes} matching units")
        return c

    def pool(self, c: int) -> np.ndarray:
        """Sub-image indices (``all_subimages()`` order) unit ``c`` draws from."""
        return self.pools[self.unit_group[self._check(c)]]

    def count(self, c: int) -> int:
        return len(self.pool(c))

    def all_subimages(self):
        return self._subs

    def sample_patches(self, c: int, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` random ``size`` crops of random sub-images of unit ``c``'s pool, (n,3,size,size) in [0,1].

        Draws from ``generator`` only, in the order SubImageStore.sample_patches does.
        """
        rows = self.pool(c)
        return random_crops(lambda k: self._subs[int(rows[k])], len(rows), self._subs[int(rows[0])].shape[:2], n,
                            size, generator, where=f"unit {c}")

    def __repr__(self) -> str:
        return f"PooledStore({self.info['grouping']}, units={self.num_classes}, groups={len(self.group_names)})"


def allocate(units: int, sizes: list[int]) -> list[int]:
    """Units per group: one each, the rest proportional to ``sizes`` (largest remainders)."""
    k = len(sizes)
    if units < k:
        raise ValueError(f"{units} matching units cannot cover {k} groups")
    share = (units - k) * np.asarray(sizes, dtype=np.float64) / sum(sizes)
    alloc = np.floor(share).astype(int)
    order = np.argsort(-(share - alloc), kind="stable")  # ties: lower group first
    alloc[order[: units - k - alloc.sum()]] += 1
    return (alloc + 1).tolist()


def group_store(store, cfg: DistillJobConfig):
    """``store`` itself for grouping=class, else a :class:`PooledStore` of matching units."""
    d = cfg.distill
    if d.grouping == "class" or isinstance(store, PooledStore):
        return store
    units = d.num_images // d.ipc
    info = {"grouping": d.grouping, "num_images": d.num_images, "images_per_unit": d.ipc, "units": units}
    if d.grouping == "global":
        return PooledStore(store, [np.arange(len(store))], [0] * units, ["global"], info)
    from hf_srdistill.distill.pseudo_classes import cluster_subimages

    labels = cluster_subimages(store, d, cfg.data.cache_dir)
    k = d.clusters.num_clusters
    sizes = np.bincount(labels, minlength=k).tolist()
    alloc = allocate(units, sizes)
    names = [f"cluster_{g:0{len(str(k - 1))}d}" for g in range(k)]
    info.update(clusters={"features": d.clusters.features, "num_clusters": k,
                          "subimages": dict(zip(names, sizes)),
                          "images": {n: a * d.ipc for n, a in zip(names, alloc)}})
    pools = [np.flatnonzero(labels == g) for g in range(k)]
    return PooledStore(store, pools, [g for g in range(k) for _ in range(alloc[g])], names, info)


def real_store(store):
    """The underlying SubImageStore (size reports and source descriptions use the real data)."""
    return store.base if isinstance(store, PooledStore) else store


def _window(img: np.ndarray, size: int, gen: torch.Generator) -> np.ndarray:
    """A random square window of ``img`` (HWC) with side between ``size`` and its short side."""
    h, w = img.shape[:2]
    side = int(torch.randint(size, min(h, w) + 1, (1,), generator=gen))
    y = int(torch.randint(0, h - side + 1, (1,), generator=gen))
    x = int(torch.randint(0, w - side + 1, (1,), generator=gen))
    return img[y:y + side, x:x + side]


def _source(store: PooledStore, cfg: DistillConfig, j: int) -> tuple[np.ndarray, bool]:
    """The picture image j (set order) starts from, and whether it is a repeat (use a window)."""
    perm_gen = class_generator(cfg.seed, -1, INIT_STREAM)  # one permutation, identical on every process
    if store.info["grouping"] == "global":
        n = store.base.num_classes
        perm = torch.randperm(n, generator=perm_gen).tolist()
        return store.base.source_image(perm[j % n]), j >= n
    unit = j // cfg.ipc
    group = store.unit_group[unit]
    first = store.unit_group.index(group) * cfg.ipc
    members = store.pools[group]
    order = torch.randperm(len(members), generator=class_generator(cfg.seed, group, INIT_STREAM)).tolist()
    i = j - first
    return store.all_subimages()[int(members[order[i % len(members)]])], i >= len(members)


def initial_images(cfg: DistillConfig, store, classes: list[int]) -> torch.Tensor:
    """(len(classes)*ipc,3,S,S) starting images of the given classes or units, class-major."""
    if not isinstance(store, PooledStore) or cfg.init != "downscaled" or not classes:
        return class_init_images(cfg, store, classes)
    out = []
    for c in classes:
        gen = class_generator(cfg.seed, c, INIT_STREAM)
        for j in range(c * cfg.ipc, (c + 1) * cfg.ipc):
            img, repeat = _source(store, cfg, j)
            out.append(downscaled_images(_window(img, cfg.image_size, gen) if repeat else img, 1,
                                         cfg.image_size, gen))
    return torch.cat(out).clamp_(0, 1)


def set_layout(store, ipc: int) -> tuple[list[int], list[int], list[str], dict]:
    """Labels, ipc_index, label names and a provenance note for the written set (class-major rows)."""
    if not isinstance(store, PooledStore):
        k = store.num_classes
        return ([c for c in range(k) for _ in range(ipc)], [i for _ in range(k) for i in range(ipc)],
                list(store.class_names), {"grouping": "class"})
    labels = [g for g in store.unit_group for _ in range(ipc)]
    seen: dict[int, int] = {}
    index = []
    for g in labels:
        index.append(seen.get(g, 0))
        seen[g] = index[-1] + 1
    return labels, index, list(store.group_names), dict(store.info)
