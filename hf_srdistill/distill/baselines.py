"""Baseline sets of the same size as a distilled set, in the same folder format.

- ``downscaled``: the distillation's ``downscaled`` initialisation with no distillation
  step, i.e. exactly iteration 0 of a downscaled-init run with the same seed.
- ``random``: ``ipc`` random real crops of side ``image_size`` per class (the ``real``
  initialisation), the equal-budget random subset.

Training reads every set through the same path, so the comparison is of sets only.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from hf_srdistill.config import DistillJobConfig
from hf_srdistill.distill.export import real_set_sizes, write_image_set
from hf_srdistill.distill.synthetic import init_images

BASELINES = {"downscaled": "downscaled", "random": "real"}


def make_baseline_set(kind: str, cfg: DistillJobConfig, store=None, folder: str | Path | None = None) -> Path:
    """Write the ``kind`` baseline for ``cfg`` to ``folder`` (default cfg.distill.output_dir)."""
    if kind not in BASELINES:
        raise ValueError(f"unknown baseline set {kind!r}; choose one of {', '.join(BASELINES)}")
    from hf_srdistill.data.grouped import SubImageStore
    from hf_srdistill.provenance import describe_source

    t0 = time.time()
    store = store if store is not None else SubImageStore.build(cfg.data)
    d = dataclasses.replace(cfg.distill, init=BASELINES[kind])
    k = store.num_classes
    images = init_images(d, store, list(range(k)))
    out = Path(folder if folder is not None else cfg.distill.output_dir)
    job = dataclasses.replace(cfg, distill=d)
    write_image_set(out, images, [c for c in range(k) for _ in range(d.ipc)], store.class_names,
                    [i for _ in range(k) for i in range(d.ipc)], job, extra={"kind": kind},
                    real_sizes=real_set_sizes(store, cfg.data), source=describe_source(cfg.data, store.fingerprint),
                    wall_time_s=time.time() - t0)
    return out
