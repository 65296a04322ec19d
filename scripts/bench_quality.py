"""Does distillation beat its initialisation? Every set judged the same way, over seeds.

    python scripts/bench_quality.py                  # mini: distilled vs full, downscaled, random, coreset
    python scripts/bench_quality.py --quick          # smoke run (2 photos, a few steps)
    python scripts/bench_quality.py --extra dc_long=configs/study/mini/pixel_downscaled_ipc1.yaml \
        --distill-override distill.iterations=200 --seeds 0 1 2

Rows: the distilled set (``--distill-config``, plus any ``--extra NAME=CONFIG``), the full
real data, and the equal-budget baselines built from the same data with the same ipc and
image size: ``downscaled`` (the distillation's own initialisation, iteration 0), ``random``
(ipc random real crops per class) and ``coreset`` (the ipc crops per class an SRCNN finds
hardest). Every (set, judge, scale, seed) is trained with one recipe — same model, steps,
batch, patch size, learning rate and schedule — and evaluated on the same held-out photos
(PSNR/SSIM on Y, border = scale). Every row has the same number of synthetic images and
image side (class-agnostic rows: ``distill.num_images`` = classes x ipc of the first row).
Seeds vary the judge's initialisation and sample order; ``--vary-distill-seed`` also
rebuilds every set with that seed (distillation, random crops, coreset scorer). Sets are built once and judged at every scale (the reference scale of the
distillation is the config's) unless ``--distill-per-scale``.

Prints the per-(scale, judge) tables (mean ± sample std over seeds), a summary of PSNR-Y,
and for each distilled row the paired per-seed difference to ``downscaled`` and ``random``
next to the seed-to-seed spread; writes tables.md/.csv, summary.md and bench_quality.json.
Finished runs are reused when the same --output-dir is given again.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

import numpy as np

from hf_srdistill.config import DistillJobConfig, ModelConfig, TrainConfig, TrainJobConfig
from hf_srdistill.configio import ConfigError, load_config
from hf_srdistill.io import read_json, write_json, write_text
from hf_srdistill.study import guard_recipe, train_and_evaluate
from hf_srdistill.study_report import write_tables

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs" / "study" / "mini" / "pixel_downscaled_ipc1.yaml"
BASELINES = ("full", "downscaled", "random", "coreset")
# not a baseline but a diagnostic: the held-out test photos themselves, downscaled like the
# init, at the same budget. It asks how much a set gains by showing the judge the test
# content: if that gains little over `downscaled`, the judge's budget, not the set's content,
# limits the scores, and a distilled set has little room to win. (Not a strict bound: the
# test content at 96 px is not the test content at its native scale.)
ORACLE = "oracle"
QUICK = {"overrides": ["data.max_images=2", "data.crop_size=96", "data.step=96", "distill.image_size=48",
                       "distill.iterations=1", "distill.batch_real=2", "distill.reference.num_features=4"],
         "iterations": 3, "batch_size": 4, "patch_size": 24, "seeds": [0], "scales": [2],
         "srcnn_features": 8, "edsr_blocks": 1, "edsr_features": 8, "scorer_iterations": 2, "max_test_images": 1}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--distill-config", default=str(DEFAULT_CONFIG), help="DistillJobConfig YAML of the 'distilled' row")
    p.add_argument("--extra", action="append", default=[], metavar="NAME=CONFIG", help="another distilled row")
    p.add_argument("--extra-override", action="append", default=[], metavar="NAME:KEY=VALUE",
                   help="dotted override for one --extra row only, e.g. dc100:distill.iterations=100")
    p.add_argument("--distill-override", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override applied to every distillation config (and so to the baselines' budget)")
    p.add_argument("--sets", nargs="+", default=list(BASELINES), choices=[*BASELINES, ORACLE],
                   help=f"baseline rows; '{ORACLE}' adds the downscaled test photos (mini only) as a diagnostic")
    p.add_argument("--judges", nargs="+", default=["srcnn", "edsr"], choices=["srcnn", "vdsr", "edsr"])
    p.add_argument("--srcnn-features", type=int, default=64, help="SRCNN n1 (published: 64)")
    p.add_argument("--edsr-blocks", type=int, default=4)
    p.add_argument("--edsr-features", type=int, default=32)
    p.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iterations", type=int, default=1000, help="judge training steps (same for every set)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--patch-size", type=int, default=48)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--vary-distill-seed", action="store_true", help="rebuild every set with each seed too")
    p.add_argument("--distill-per-scale", action="store_true", help="distil with the judge's scale as reference scale")
    p.add_argument("--coreset-reference", help="pretrained scorer for the coreset (default: train one)")
    p.add_argument("--coreset-scorer-iterations", type=int, default=300)
    p.add_argument("--coreset-outlier-pct", type=float, default=0.0)
    p.add_argument("--test-sets", nargs="+", default=["mini"])
    p.add_argument("--test-root")
    p.add_argument("--max-test-images", type=int, help="evaluate on the first N images of each test set only")
    p.add_argument("--lpips", action="store_true", help="also LPIPS (needs AlexNet weights in the torch hub cache)")
    p.add_argument("--output-dir", default="outputs/bench_quality")
    p.add_argument("--quick", action="store_true",
                   help="tiny smoke run: 2 photos, 48 px sets, 3 steps, 1 seed, x2, 1 test image")
    args = p.parse_args(argv)
    if args.quick:
        args.distill_override = QUICK["overrides"] + [f"data.cache_dir={Path(args.output_dir) / 'cache'}",
                                                      *args.distill_override]
        for key in ("iterations", "batch_size", "patch_size", "seeds", "scales", "srcnn_features", "edsr_blocks",
                    "edsr_features", "max_test_images"):
            setattr(args, key, QUICK[key])
        args.coreset_scorer_iterations = QUICK["scorer_iterations"]
    return args


def judge_models(args) -> list[ModelConfig]:
    sizes = {"srcnn": {"num_features": args.srcnn_features}, "vdsr": {},
             "edsr": {"num_features": args.edsr_features, "depth": args.edsr_blocks}}
    return [ModelConfig(name=j, **sizes[j]) for j in args.judges]


def distill_jobs(args) -> dict[str, DistillJobConfig]:
    overrides = [o if o.startswith("--") else f"--{o}" for o in args.distill_override]
    jobs = {"distilled": load_config(DistillJobConfig, args.distill_config, overrides)}
    own: dict[str, list[str]] = {}
    for item in args.extra_override:
        name, _, override = item.partition(":")
        own.setdefault(name, []).append(override if override.startswith("--") else f"--{override}")
    for item in args.extra:
        name, _, path = item.partition("=")
        if not path or name in jobs or name in BASELINES or name == ORACLE:
            raise SystemExit(f"--extra {item!r}: expected a new NAME=CONFIG")
        jobs[name] = load_config(DistillJobConfig, path, overrides + own.pop(name, []))
    if own:
        raise SystemExit(f"--extra-override for unknown rows: {sorted(own)}")
    first = jobs["distilled"]
    for name, job in jobs.items():  # an honest comparison: one data source, one budget
        if job.data != first.data or set_budget(job) != set_budget(first):
            raise SystemExit(f"{name}: data or budget (images, image_size) differs from the 'distilled' row; "
                             "compare sets of one budget")
    return jobs


def set_budget(job: DistillJobConfig) -> tuple[int, int]:
    """(synthetic images, image side): classes x ipc, or num_images for class-agnostic groupings."""
    d = job.distill
    if d.grouping != "class":
        return d.num_images, d.image_size
    from hf_srdistill.data.grouped import SubImageStore

    return SubImageStore.build(job.data).num_classes * d.ipc, d.image_size


def build_sets(args, jobs: dict[str, DistillJobConfig], out: Path, scale: int, seed: int) -> dict[str, str | None]:
    """Folders of every row for one (scale, seed); built once, reused when already complete."""
    from hf_srdistill.distill import distill, make_baseline_set
    from hf_srdistill.distill.coreset import make_coreset_set

    seed_tag = f"_seed{seed}" if args.vary_distill_seed else ""
    scale_tag = f"_x{scale}" if args.distill_per_scale else ""
    folders: dict[str, str | None] = {}

    def job_for(job: DistillJobConfig, folder: Path) -> DistillJobConfig:
        d = job.distill
        changes = {"output_dir": str(folder), "resume": True}
        if args.vary_distill_seed:
            changes["seed"] = seed
        if args.distill_per_scale:
            changes["reference"] = dataclasses.replace(d.reference, scale=scale)
        return dataclasses.replace(job, distill=dataclasses.replace(d, **changes))

    for name, job in jobs.items():
        folder = out / "sets" / f"{name}{seed_tag}{scale_tag}"
        if not any((folder / "data").glob("*.parquet")):
            distill(job_for(job, folder))
        folders[name] = str(folder)
    base = jobs["distilled"]
    for kind in args.sets:
        if kind == "full":
            folders[kind] = None
            continue
        folder = out / "sets" / f"{kind}{seed_tag}"  # baselines do not depend on the judge scale
        if not any((folder / "data").glob("*.parquet")):
            job = job_for(base, folder)
            if kind == "coreset":
                make_coreset_set(job, reference=args.coreset_reference, outlier_pct=args.coreset_outlier_pct,
                                 scorer_iterations=args.coreset_scorer_iterations, folder=folder)
            elif kind == ORACLE:
                make_baseline_set("downscaled", oracle_job(job, args.test_sets))
            else:
                make_baseline_set(kind, job)
        folders[kind] = str(folder)
    return folders


def oracle_job(job: DistillJobConfig, test_sets: list[str]) -> DistillJobConfig:
    """The downscaled-set job over the mini test photos, at the training set's budget."""
    if job.data.source != "mini" or test_sets != ["mini"]:
        raise SystemExit(f"--sets {ORACLE}: only for data.source=mini judged on --test-sets mini "
                         f"(got source {job.data.source!r}, test sets {test_sets})")
    oracle = dataclasses.replace(job, data=dataclasses.replace(job.data, split="test"))
    if set_budget(oracle) != set_budget(job):
        raise SystemExit(f"--sets {ORACLE}: the test split's budget {set_budget(oracle)} differs from the "
                         f"training set's {set_budget(job)}")
    return oracle


def paired_deltas(records: list[dict], rows: list[str], against: list[str]) -> list[dict]:
    """Per (scale, judge): PSNR-Y of row minus `against`, paired by seed, with the seed spread."""
    by = {}
    for r in records:
        by.setdefault((r["scale"], r["judge"], r["set"]), {}).setdefault(r["seed"], []).append(r["psnr"])
    out = []
    for scale, judge in sorted({(r["scale"], r["judge"]) for r in records}):
        for row in rows:
            for ref in against:
                a, b = by.get((scale, judge, row)), by.get((scale, judge, ref))
                if not a or not b:
                    continue
                seeds = sorted(set(a) & set(b))
                diff = [np.mean(a[s]) - np.mean(b[s]) for s in seeds]
                spread = max(np.std([np.mean(a[s]) for s in seeds], ddof=1) if len(seeds) > 1 else np.nan,
                             np.std([np.mean(b[s]) for s in seeds], ddof=1) if len(seeds) > 1 else np.nan)
                sd = float(np.std(diff, ddof=1)) if len(diff) > 1 else None
                verdict = ("n/a (1 seed)" if len(seeds) < 2 else
                           "yes" if np.mean(diff) > spread else "no")
                out.append({"scale": scale, "judge": judge, "set": row, "vs": ref, "n": len(seeds),
                            "delta_mean": float(np.mean(diff)), "delta_std": sd,
                            "seed_spread": None if np.isnan(spread) else float(spread), "above_spread": verdict})
    return out


def per_seed_psnr(records: list[dict], name: str, scale: int, judge: str) -> list[float]:
    """PSNR-Y averaged over test sets, one value per seed (bicubic: its one value)."""
    sel = [r for r in records if r["set"] == name and r["scale"] == scale and r["judge"] in (judge, "-")]
    return [float(np.mean([r["psnr"] for r in sel if r["seed"] == k])) for k in sorted({r["seed"] for r in sel})]


def summary_markdown(records: list[dict], deltas: list[dict], order: list[str]) -> str:
    cols = sorted({(r["scale"], r["judge"]) for r in records if r["judge"] != "-"})
    lines = ["| set | " + " | ".join(f"{j} x{s} PSNR-Y" for s, j in cols) + " |", "|---|" + "---:|" * len(cols)]
    for name in ["bicubic", *order]:
        cells = []
        for s, j in cols:
            vals = per_seed_psnr(records, name, s, j)
            cells.append("" if not vals else f"{vals[0]:.3f}" if len(vals) == 1 else
                         f"{np.mean(vals):.3f} ± {np.std(vals, ddof=1):.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| set | vs | judge | scale | Δ PSNR-Y (paired by seed) | seed spread | Δ > spread |",
              "|---|---|---|---:|---:|---:|---|"]
    for d in deltas:
        sd = "" if d["delta_std"] is None else f" ± {d['delta_std']:.3f}"
        spread = "" if d["seed_spread"] is None else f"{d['seed_spread']:.3f}"
        lines.append(f"| {d['set']} | {d['vs']} | {d['judge']} | x{d['scale']} | {d['delta_mean']:+.3f}{sd} | "
                     f"{spread} | {d['above_spread']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import torch

    from hf_srdistill.data import load_test_set
    from hf_srdistill.metrics import LPIPSMetric
    from hf_srdistill.provenance import hardware

    logging.basicConfig(level=logging.WARNING)
    args = parse(argv)
    t0 = time.time()
    out = Path(args.output_dir)
    jobs = distill_jobs(args)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tests = {name: load_test_set(name, root=args.test_root)[:args.max_test_images] for name in args.test_sets}
    lpips_metric = LPIPSMetric(device=device) if args.lpips else None
    recipe = TrainConfig(iterations=args.iterations, batch_size=args.batch_size, patch_size=args.patch_size,
                         lr=args.lr, loss="l1", scheduler="cosine", checkpoint_every=max(1, args.iterations // 4))
    order = [*jobs, *args.sets]
    try:
        guard_recipe(out, {"judges": [dataclasses.asdict(j) for j in judge_models(args)],
                           "train": dataclasses.asdict(recipe), "test_sets": args.test_sets,
                           "max_test_images": args.max_test_images, "lpips": args.lpips,
                           "vary_distill_seed": args.vary_distill_seed, "distill_per_scale": args.distill_per_scale,
                           "coreset": [args.coreset_reference, args.coreset_scorer_iterations,
                                       args.coreset_outlier_pct]},
                     {name: dataclasses.asdict(job) for name, job in jobs.items()})
    except ConfigError as err:
        print(f"bench_quality: {err}", file=sys.stderr)
        return 2
    records = []
    bicubic_done = set()
    for scale in args.scales:
        from hf_srdistill.evaluate import bicubic_upscaler, evaluate_upscaler
        for seed in args.seeds:
            folders = build_sets(args, jobs, out, scale, seed)
            if scale not in bicubic_done:
                for t, images in tests.items():
                    records.append({"set": "bicubic", "group": "baseline", "judge": "-", "scale": scale, "seed": 0,
                                    "test_set": t, **evaluate_upscaler(bicubic_upscaler(scale), images, scale)})
                bicubic_done.add(scale)
            for name in order:
                for judge in judge_models(args):
                    run_dir = out / "runs" / name / f"{judge.name}_x{scale}_seed{seed}"
                    done = run_dir / "eval.json"
                    if not done.is_file():
                        train = dataclasses.replace(recipe, train_set=folders[name], seed=seed, output_dir=str(run_dir))
                        job = TrainJobConfig(data=jobs["distilled"].data, model=dataclasses.replace(judge, scale=scale),
                                             train=train)
                        print(f"bench_quality: {judge.name} x{scale} seed {seed} on {name}", flush=True)
                        write_json(done, train_and_evaluate(run_dir, job, tests, lpips_metric, device))
                    group = "synthetic" if name in jobs else "baseline"
                    records += [{"set": name, "group": group, "judge": judge.name, "scale": scale, "seed": seed,
                                 "test_set": t, **m} for t, m in read_json(done).items()]

    hw = hardware()
    machine = (f"{hw.get('cpu_model')} x {hw.get('cpu_count')} logical CPUs; device {device}"
               f"{' (' + ', '.join(hw['cuda']) + ')' if hw['cuda'] else ''}; float32; torch {torch.__version__}")
    d = jobs["distilled"].distill
    header = (f"machine: {machine}\nbudget: ipc {d.ipc}, {d.image_size} px per class; judges {', '.join(args.judges)} "
              f"trained {args.iterations} steps (batch {args.batch_size}, {args.patch_size} px, Adam {args.lr}, L1, "
              f"cosine); seeds {args.seeds}; test sets {args.test_sets}"
              f"{'' if args.max_test_images is None else f' (first {args.max_test_images} images)'}; wall {time.time() - t0:.0f} s\n")
    write_tables(out, records, title="bench_quality")
    deltas = paired_deltas(records, list(jobs), [s for s in ("downscaled", "random") if s in args.sets])
    summary = header + "\n" + summary_markdown(records, deltas, order)
    print(summary)
    write_text(out / "summary.md", summary)
    write_json(out / "bench_quality.json", {"machine": machine, "args": vars(args), "records": records,
                                            "deltas": deltas, "wall_time_s": time.time() - t0})
    return 0


if __name__ == "__main__":
    sys.exit(main())
