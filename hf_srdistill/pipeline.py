"""The main job: (train a reference ->) distil -> train one judge per set -> evaluate, in one table.

Every set is judged the same way (same model, iterations, patches, seed), so the table
compares training sets, not training runs. Finished stages are reused on a rerun.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

from hf_srdistill.config import DistillJobConfig, MainJobConfig, TrainJobConfig
from hf_srdistill.io import write_json

logger = logging.getLogger(__name__)

SET_KINDS = ("distilled", "full", "downscaled", "random")


def build_training_sets(cfg: MainJobConfig) -> dict[str, str | None]:
    """Folder of each requested set; None means the full real data (all sub-images)."""
    from hf_srdistill.distill import distill, make_baseline_set

    out = Path(cfg.output_dir)
    unknown = sorted(set(cfg.sets) - set(SET_KINDS))
    if unknown:
        raise ValueError(f"sets: unknown {unknown}; choose from {SET_KINDS}")
    distill_cfg = cfg.distill
    if cfg.reference_train is not None and "distilled" in cfg.sets:
        refs = [str(path) for path in train_references(cfg)]
        pick = {"reference_path": refs[0]} if len(refs) == 1 else {"reference_pool": refs}
        distill_cfg = dataclasses.replace(distill_cfg, **pick)
    sets: dict[str, str | None] = {}
    for kind in cfg.sets:
        job = DistillJobConfig(data=cfg.data, distill=dataclasses.replace(
            distill_cfg, output_dir=str(out / "sets" / kind)))
        if kind == "full":
            sets[kind] = None
        elif _is_complete_set(job.distill.output_dir):
            sets[kind] = job.distill.output_dir
        elif kind == "distilled":
            sets[kind] = str(distill(job))
        else:
            sets[kind] = str(make_baseline_set(kind, job))
    return sets


def train_references(cfg: MainJobConfig) -> list[Path]:
    """``reference_models`` (default: ``distill.reference``) trained on the full data with ``reference_train``.

    A trained reference's SR-loss gradient follows image content, not its own random output,
    which is what lets gradient matching improve on the downscaled init (README, bench_quality).
    One model is saved in ``reference/``, a pool in ``reference/<i>_<name>_x<scale>/``.
    """
    from hf_srdistill.train import train_sr

    models = cfg.reference_models or [cfg.distill.reference]
    folders = [Path(cfg.output_dir) / "reference"]
    if len(models) > 1:
        folders = [folders[0] / f"{i}_{m.name}_x{m.scale}" for i, m in enumerate(models)]
    for model, out in zip(models, folders):
        train = dataclasses.replace(cfg.reference_train, train_set=None, output_dir=str(out))
        train_sr(TrainJobConfig(data=cfg.data, model=model, train=train))
    return folders


def _is_complete_set(folder: str) -> bool:
    from hf_srdistill.data.set_folder import is_complete

    return is_complete(folder)


def run_main(cfg: MainJobConfig) -> dict:
    from hf_srdistill.evaluate import evaluate_many, model_upscaler, save_png, comparison_grid, write_results
    from hf_srdistill.data import load_test_set
    from hf_srdistill.models import load_model
    from hf_srdistill.train import train_sr

    from hf_srdistill.provenance import collect_provenance, write_provenance

    t0 = time.time()
    out = Path(cfg.output_dir)
    sets = build_training_sets(cfg)
    upscalers = {}
    for kind, folder in sets.items():
        train_cfg = dataclasses.replace(cfg.train, train_set=folder, output_dir=str(out / "models" / kind))
        model_dir = train_sr(TrainJobConfig(data=cfg.data, model=cfg.model, train=train_cfg))
        upscalers[f"{cfg.model.name} on {kind}"] = model_upscaler(load_model(str(model_dir)))
    results = evaluate_many(upscalers, cfg.eval.test_sets, cfg.model.scale, cfg.eval.test_root, cfg.eval.lpips)
    write_results(out, results, cfg.model.scale, title=f"{cfg.model.name} x{cfg.model.scale}, "
                  f"trained on each set (IPC {cfg.distill.ipc}, {cfg.distill.image_size} px)")
    if cfg.eval.grid:
        hr = load_test_set(cfg.eval.test_sets[0], root=cfg.eval.test_root)[0][1]
        save_png(comparison_grid(upscalers, hr, cfg.model.scale), out / "grid.png")
    write_json(out / "sets.json", sets)
    write_provenance(out, collect_provenance(cfg, wall_time_s=time.time() - t0))
    return results
