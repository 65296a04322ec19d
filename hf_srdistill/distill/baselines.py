"""Baseline sets of the same size as a distilled set, in the same folder format.

- ``downscaled``: the distillation's ``downscaled`` initialisation with no distillation
  step, i.e. exactly iteration 0 of a downscaled-init run with the same seed.
- ``random``: ``ipc`` random real crops of side ``image_size`` per class (the ``real``
  initialisation), the equal-budget random subset.

Training reads every set through the same path, so the comparison is of sets only.
Class-agnostic configs (``distill.grouping``) get baselines of their own size and layout:
their matching units stand in for classes.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from hf_srdistill.config import BaselineJobConfig, DistillJobConfig
from hf_srdistill.distill.class_agnostic import group_store, initial_images, real_store, set_layout
from hf_srdistill.distill.export import real_set_sizes, write_image_set

BASELINES = {"downscaled": "downscaled", "random": "real"}


def make_baseline_set(kind: str, cfg: DistillJobConfig, store=None, folder: str | Path | None = None) -> Path:
    """Write the ``kind`` baseline for ``cfg`` to ``folder`` (default cfg.distill.output_dir)."""
    if kind not in BASELINES:
        raise ValueError(f"unknown baseline set {kind!r}; choose one of {', '.join(BASELINES)}")
    from hf_srdistill.data.grouped import SubImageStore
    from hf_srdistill.provenance import describe_source

    t0 = time.time()
    store = group_store(store if store is not None else SubImageStore.build(cfg.data), cfg)
    d = dataclasses.replace(cfg.distill, init=BASELINES[kind])
    images = initial_images(d, store, list(range(store.num_classes)))
    out = Path(folder if folder is not None else cfg.distill.output_dir)
    job = dataclasses.replace(cfg, distill=d)
    labels, ipc_index, names, grouping = set_layout(store, d.ipc)
    write_image_set(out, images, labels, names, ipc_index, job, extra={"kind": kind, "grouping": grouping},
                    real_sizes=real_set_sizes(real_store(store), cfg.data),
                    source=describe_source(cfg.data, store.fingerprint), wall_time_s=time.time() - t0)
    return out


def make_any_baseline(kind: str, cfg: DistillJobConfig, folder: str | Path | None = None, *,
                      reference: str | None = None, outlier_pct: float = 0.0, scorer_iterations: int | None = None,
                      tiles: int = 2) -> Path:
    """Write any baseline kind (the ``baseline`` command's ``kind``) to ``folder``
    (default cfg.distill.output_dir): each kind goes to the module that builds it."""
    from hf_srdistill.distill.coreset import CROP_SETS, DEFAULT_SCORER_ITERATIONS, crop_set_layout, make_coreset_set

    if kind == "representative":
        from hf_srdistill.distill.representative import make_representative_set

        return make_representative_set(cfg, folder=folder)
    if kind in CROP_SETS:
        return make_coreset_set(cfg, reference=reference, outlier_pct=outlier_pct, folder=folder,
                                scorer_iterations=scorer_iterations or DEFAULT_SCORER_ITERATIONS,
                                **crop_set_layout(kind, tiles))
    return make_baseline_set(kind, cfg, folder=folder)


def build_baseline(cfg: BaselineJobConfig) -> Path:
    """The ``baseline`` command: write ``cfg.kind``'s set to distill.output_dir."""
    return make_any_baseline(cfg.kind, DistillJobConfig(data=cfg.data, distill=cfg.distill),
                             outlier_pct=cfg.outlier_pct, scorer_iterations=cfg.scorer_iterations, tiles=cfg.tiles)
