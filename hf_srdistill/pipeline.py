"""The main job: (train a reference ->) distil -> train one judge per set -> evaluate, in one table.

Every set is judged the same way (same model, iterations, patches, seed), so the table
compares training sets, not training runs. Finished stages are reused on a rerun.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from hf_srdistill.config import DistillJobConfig, MainJobConfig, ModelConfig, TrainJobConfig
from hf_srdistill.io import write_json, write_text

logger = logging.getLogger(__name__)

SET_KINDS = ("distilled", "full", "downscaled", "random", "coreset")


def build_training_sets(cfg: MainJobConfig) -> dict[str, str | None]:
    """Folder of each requested set; None means the full real data (all sub-images)."""
    from hf_srdistill.distill import distill, make_baseline_set
    from hf_srdistill.distill.coreset import make_coreset_set

    out = Path(cfg.output_dir)
    unknown = sorted(set(cfg.sets) - set(SET_KINDS))
    if unknown:
        raise ValueError(f"sets: unknown {unknown}; choose from {SET_KINDS}")
    distill_cfg, refs = cfg.distill, []
    tm = distill_cfg.objective == "tm"
    if tm and distill_cfg.tm.expert_dir is None:  # kept beside the sets, not inside a set folder
        distill_cfg = dataclasses.replace(distill_cfg, tm=dataclasses.replace(distill_cfg.tm,
                                                                              expert_dir=str(out / "experts")))
    if trains_references(cfg):
        refs = [str(path) for path in train_references(cfg)]
        if not tm:  # tm distils against its own experts; the references then only score the coreset
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
        elif kind == "coreset":
            i = _scorer_index(cfg)
            sets[kind] = str(make_coreset_set(job, reference=None if i is None else refs[i]))
        else:
            sets[kind] = str(make_baseline_set(kind, job))
    return sets


def trains_references(cfg: MainJobConfig) -> bool:
    """Whether the job trains references: for gm/dm distillation to match against, and for the
    coreset to score crops with (tm distils against experts of its own)."""
    needs = "coreset" in cfg.sets or ("distilled" in cfg.sets and cfg.distill.objective != "tm")
    return cfg.reference_train is not None and needs


def reference_models(cfg: MainJobConfig) -> list[ModelConfig]:
    """The models the job trains as references: ``reference_models``, else ``distill.reference``."""
    return cfg.reference_models or [cfg.distill.reference]


def _scorer_index(cfg: MainJobConfig) -> int | None:
    """Which trained reference scores the coreset's crops: the one at the judge's scale (else
    the first); None when the job trains none (the coreset then trains its own scorer)."""
    if cfg.reference_train is None:
        return None
    return next((i for i, m in enumerate(reference_models(cfg)) if m.scale == cfg.model.scale), 0)


def scorer_config(cfg: MainJobConfig) -> tuple[ModelConfig, bool]:
    """The coreset scorer's architecture, and whether it comes trained (a reference the job
    trains, or distill.reference_path) rather than trained by the coreset itself."""
    i = _scorer_index(cfg)
    if i is None:
        return cfg.distill.reference, bool(cfg.distill.reference_path)
    return reference_models(cfg)[i], True


def train_references(cfg: MainJobConfig) -> list[Path]:
    """``reference_models`` (default: ``distill.reference``) trained on the full data with ``reference_train``.

    A trained reference's SR-loss gradient follows image content, not its own random output,
    which is what lets gradient matching improve on the downscaled init (README, bench_quality).
    One model is saved in ``reference/``, a pool in ``reference/<i>_<name>_x<scale>/``.
    """
    from hf_srdistill.train import train_sr

    models = reference_models(cfg)
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
    from hf_srdistill.evaluate import evaluate_many, model_upscaler, comparison_grid, write_results
    from hf_srdistill.data import load_test_set
    from hf_srdistill.distill.baselines import BASELINES
    from hf_srdistill.models import load_model
    from hf_srdistill.train import train_sr

    from hf_srdistill.provenance import collect_provenance, write_provenance

    t0 = time.time()
    out = Path(cfg.output_dir)
    sets = build_training_sets(cfg)
    per_seed = {}
    for seed in cfg.judge_seeds:
        upscalers = {}
        for kind, folder in sets.items():
            train_cfg = dataclasses.replace(cfg.train, train_set=folder, seed=seed,
                                            output_dir=str(out / "models" / kind / f"seed{seed}"))
            model_dir = train_sr(TrainJobConfig(data=cfg.data, model=cfg.model, train=train_cfg))
            upscalers[f"{cfg.model.name} on {kind}"] = model_upscaler(load_model(str(model_dir)))
        per_seed[seed] = evaluate_many(upscalers, cfg.eval.test_sets, cfg.model.scale, cfg.eval.test_root,
                                       cfg.eval.lpips)
    results = mean_results(per_seed)
    seeds = ", ".join(map(str, cfg.judge_seeds))
    table = write_results(out, results, cfg.model.scale, title=f"{cfg.model.name} x{cfg.model.scale}, "
                          f"trained on each set (IPC {cfg.distill.ipc}, {cfg.distill.image_size} px), "
                          f"mean of judge seeds {seeds}")
    start = {init: kind for kind, init in BASELINES.items()}.get(cfg.distill.init)  # the set at iteration 0
    deltas = distilled_deltas(per_seed, f"{cfg.model.name} on ", start)
    if deltas:
        write_text(out / "table.md", table + "\n" + deltas + "\n")
        print(deltas)
    write_json(out / "results_per_seed.json", {str(k): v for k, v in per_seed.items()})
    if cfg.eval.grid:
        hr = load_test_set(cfg.eval.test_sets[0], root=cfg.eval.test_root)[0][1]
        comparison_grid(upscalers, hr, cfg.model.scale).save(out / "grid.png")  # and grid.pdf
    write_json(out / "sets.json", sets)
    write_provenance(out, collect_provenance(cfg, wall_time_s=time.time() - t0))
    return results


def mean_results(per_seed: dict[int, dict]) -> dict:
    """results[method][test_set][metric] averaged over judge seeds (None stays None)."""
    first = next(iter(per_seed.values()))
    out: dict = {}
    for method, sets in first.items():
        out[method] = {}
        for name, metrics in sets.items():
            out[method][name] = {}
            for key in metrics:
                vals = [r[method][name][key] for r in per_seed.values()]
                out[method][name][key] = None if any(v is None for v in vals) else float(np.mean(vals))
    return out


def distilled_deltas(per_seed: dict[int, dict], prefix: str, init: str | None = "downscaled") -> str:
    """PSNR of the distilled set minus downscaled / random / coreset, paired by seed, and the verdicts
    against ``init`` (the baseline set that is the distilled set's start) and the coreset."""
    distilled = prefix + "distilled"
    first = next(iter(per_seed.values()))
    if distilled not in first:
        return ""
    lines = ["| test set | vs | Δ PSNR (paired by seed) | seed spread |", "|---|---|---:|---:|"]
    verdicts = []
    for name in first[distilled]:
        for ref in ("downscaled", "random", "coreset"):
            if prefix + ref not in first:
                continue
            a = [r[distilled][name]["psnr"] for r in per_seed.values()]
            b = [r[prefix + ref][name]["psnr"] for r in per_seed.values()]
            diff = np.subtract(a, b)
            spread = max(np.std(a, ddof=1), np.std(b, ddof=1)) if len(a) > 1 else float("nan")
            lines.append(f"| {name} | {ref} | {diff.mean():+.3f} | {spread:.3f} |")
            if ref in (init, "coreset"):
                beat = "beat" if diff.mean() > spread else "did not beat"
                what = f"its {ref} init" if ref == init else "the coreset of the same size"
                verdicts.append(f"On {name}, the distilled set {beat} {what}: "
                                f"{diff.mean():+.3f} dB against a seed spread of {spread:.3f} dB "
                                f"({len(a)} judge seeds).")
    return "\n".join(lines + [""] + verdicts)
