"""Does distillation beat its initialisation? Every set judged the same way, over seeds.

    python scripts/bench_quality.py                  # mini: distilled vs full data and the baselines
    python scripts/bench_quality.py --quick          # smoke run (2 photos, a few steps)
    python scripts/bench_quality.py --extra dc_long=configs/study/mini/pixel_downscaled_ipc1.yaml \
        --distill-override distill.iterations=200 --seeds 0 1 2

Rows: the distilled set (``--distill-config``, plus any ``--extra NAME=CONFIG``), the full
real data, and the equal-budget baselines built from the same data with the same ipc and
image size: ``downscaled`` (the distillation's own initialisation, iteration 0), ``random``
(ipc random real crops per class), ``coreset`` (the ipc crops per class an SRCNN finds
hardest), ``mosaic`` (each image a grid of that scorer's hard smaller crops), ``mixed`` (the
same grid with the photo downscaled as its first tile) and, when asked for, ``representative``
(the crops whose luminance and bicubic-loss histograms best match the mean over all candidate
crops of their photo); and any finished set given as ``--set NAME=FOLDER`` (a Hub id too).
Every (set, judge, scale, seed) is trained with one recipe — same model, steps, batch, patch
size, learning rate and schedule — and evaluated on the same held-out photos (PSNR/SSIM on
Y, border = scale). Every row has the same number of synthetic images and image side
(class-agnostic rows: ``distill.num_images`` = classes x ipc of the first row).
Seeds vary the judge's initialisation and sample order; ``--vary-distill-seed`` also
rebuilds every set with that seed (distillation, random crops, coreset scorer; ``--set`` rows
stay as given). Sets are built once and judged at every scale (the reference scale of the
distillation is the config's) unless ``--distill-per-scale``.

Judge protocol (hf_srdistill/judge_protocol.py): a short budget ranks what trains fastest,
not what replaces the data (a tiny set peaks early and then overfits; the full data wins only
once its judge converges). So every run is scored every ``--eval-every`` steps on a
validation split — ``--val-crops`` fixed ``--val-size`` px crops of the *training* sub-images,
drawn with ``--val-seed`` (never the test photos, never the judge seed) — and on the test
sets; the curve goes to the run folder (curve.json), and two checkpoints are reported:
``eval.json`` at the final budget and ``best.json`` at the step of best validation PSNR-Y
(chosen on validation only). The summary warns when the full-data judge has not converged
(doubling the steps still gained >= ``--converged-db`` on validation; with ``--half-budget-run``
the full-data judge is also trained for half the budget on its own schedule, and the check
compares the two annealed ends instead of a mid-schedule point), and scores each row,
paired by seed, against downscaled, random (IOR), coreset and full (HLR = full - set), with
the share of the full - downscaled gap it closes and a verdict at 2x the seed spread.

Prints the per-(scale, judge) tables (mean ± sample std over seeds), a summary of PSNR-Y at
the final budget and at the best-validation checkpoint, the scores and the convergence check;
writes tables.md/.csv (final budget), best_val/tables.md/.csv, summary.md,
curves_x{scale}_{judge}.png/.pdf and bench_quality.json. Finished runs (eval.json and a
complete curve.json of the same protocol) are reused when the same --output-dir is given again.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import sys
import time
from pathlib import Path

import numpy as np

from hf_srdistill.config import DistillJobConfig, ModelConfig, TrainConfig, TrainJobConfig
from hf_srdistill.configio import ConfigError, load_config
from hf_srdistill.data.set_folder import is_complete, set_digest
from hf_srdistill.io import atomic_path, read_json, write_json, write_text
from hf_srdistill.judge_protocol import (best_point, best_val_index, convergence, eval_steps, mean_curve,
                                         paired_deltas, scores, val_crop_plan)
from hf_srdistill.study import guard_recipe
from hf_srdistill.study_report import write_tables

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs" / "study" / "mini" / "pixel_downscaled_ipc1.yaml"
BASELINES = ("full", "downscaled", "random", "coreset", "mosaic", "mixed", "representative")
# not a baseline but a diagnostic: the held-out test photos themselves, downscaled like the
# init, at the same budget. It asks how much a set gains by showing the judge the test
# content: if that gains little over `downscaled`, the judge's budget, not the set's content,
# limits the scores, and a distilled set has little room to win. (Not a strict bound: the
# test content at 96 px is not the test content at its native scale.)
ORACLE = "oracle"
HALF = "full_half_budget"  # run folder of the full-data judge's separate half-budget run
QUICK = {"overrides": ["data.max_images=2", "data.crop_size=96", "data.step=96", "distill.image_size=48",
                       "distill.iterations=1", "distill.batch_real=2", "distill.reference.num_features=4"],
         "iterations": 3, "batch_size": 4, "patch_size": 24, "seeds": [0], "scales": [2],
         "srcnn_features": 8, "edsr_blocks": 1, "edsr_features": 8, "scorer_iterations": 2, "max_test_images": 1,
         "val_crops": 4}
# the curve's protocol version: a curve.json of another version (or other val crops / test
# sets) is not reused, its run is trained again
CURVE_VERSION = 1


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--distill-config", default=str(DEFAULT_CONFIG), help="DistillJobConfig YAML of the first distilled row")
    p.add_argument("--distill-name", default="distilled", help="row name of --distill-config (e.g. tm)")
    p.add_argument("--extra", action="append", default=[], metavar="NAME=CONFIG", help="another distilled row")
    p.add_argument("--extra-override", action="append", default=[], metavar="NAME:KEY=VALUE",
                   help="dotted override for one --extra row only, e.g. dc100:distill.iterations=100")
    p.add_argument("--set", action="append", default=[], metavar="NAME=FOLDER", dest="set_rows",
                   help="a finished set (folder or Hub id: your own, another draw of a baseline) judged as a row; "
                        "a folder's runs are reused while its bytes are unchanged, a Hub id's by id")
    p.add_argument("--no-distill", action="store_true",
                   help="judge the baselines and --set rows only (the distillation configs still fix the data and "
                        "the budget)")
    p.add_argument("--distill-override", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override applied to every distillation config (and so to the baselines' budget)")
    p.add_argument("--sets", nargs="+", default=[b for b in BASELINES if b != "representative"],
                   choices=[*BASELINES, ORACLE],
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
    p.add_argument("--mosaic-tiles", type=int, default=2,
                   help="mosaic / mixed rows: each image a TILES x TILES grid of the coreset scorer's hard smaller "
                        "crops (mixed: the first tile is the photo downscaled)")
    p.add_argument("--test-sets", nargs="+", default=["mini"])
    p.add_argument("--test-root")
    p.add_argument("--max-test-images", type=int, help="evaluate on the first N images of each test set only")
    p.add_argument("--lpips", action="store_true", help="also LPIPS (needs AlexNet weights in the torch hub cache)")
    p.add_argument("--eval-every", type=int,
                   help="score the judge on validation and test every N steps (default: iterations / 20)")
    p.add_argument("--val-crops", type=int, default=16, help="validation crops from the training sub-images")
    p.add_argument("--val-size", type=int, default=96, help="side of a validation crop (px, HR)")
    p.add_argument("--val-seed", type=int, default=0, help="picks the validation crops (not a judge seed)")
    p.add_argument("--converged-db", type=float, default=0.05,
                   help="the full-data judge has converged when doubling the steps gains less (val PSNR-Y, dB)")
    p.add_argument("--half-budget-run", action="store_true",
                   help="also train the full-data judge for --iterations / 2 with its own schedule: the "
                        "convergence check then compares two annealed ends, not a mid-schedule point")
    p.add_argument("--margin", type=float, default=2.0, help="verdicts: a difference beyond MARGIN x seed spread")
    p.add_argument("--output-dir", default="outputs/bench_quality")
    p.add_argument("--quick", action="store_true",
                   help="tiny smoke run: 2 photos, 48 px sets, 3 steps, 1 seed, x2, 1 test image")
    args = p.parse_args(argv)
    if args.quick:
        args.distill_override = QUICK["overrides"] + [f"data.cache_dir={Path(args.output_dir) / 'cache'}",
                                                      *args.distill_override]
        for key in ("iterations", "batch_size", "patch_size", "seeds", "scales", "srcnn_features", "edsr_blocks",
                    "edsr_features", "max_test_images", "val_crops"):
            setattr(args, key, QUICK[key])
        args.coreset_scorer_iterations = QUICK["scorer_iterations"]
    if args.distill_name in (*BASELINES, ORACLE, HALF):
        p.error(f"--distill-name {args.distill_name!r} is a baseline row's name")
    if args.eval_every is None:
        args.eval_every = max(1, args.iterations // 20)
    if min(args.eval_every, args.val_crops, args.val_size) < 1:
        p.error("--eval-every, --val-crops and --val-size must be positive")
    if args.iterations // 2 % args.eval_every and args.iterations >= 2:
        print(f"bench_quality: note: step {args.iterations // 2} (half the budget) is not on the "
              f"--eval-every {args.eval_every} grid; the convergence check uses the last point before it",
              file=sys.stderr)
    return args


def judge_models(args) -> list[ModelConfig]:
    sizes = {"srcnn": {"num_features": args.srcnn_features}, "vdsr": {},
             "edsr": {"num_features": args.edsr_features, "depth": args.edsr_blocks}}
    return [ModelConfig(name=j, **sizes[j]) for j in args.judges]


def distill_jobs(args) -> dict[str, DistillJobConfig]:
    overrides = [o if o.startswith("--") else f"--{o}" for o in args.distill_override]
    jobs = {args.distill_name: load_config(DistillJobConfig, args.distill_config, overrides)}
    own: dict[str, list[str]] = {}
    for item in args.extra_override:
        name, _, override = item.partition(":")
        own.setdefault(name, []).append(override if override.startswith("--") else f"--{override}")
    for item in args.extra:
        name, _, path = item.partition("=")
        if not path or name in jobs or name in (*BASELINES, ORACLE, HALF):
            raise SystemExit(f"--extra {item!r}: expected a new NAME=CONFIG")
        jobs[name] = load_config(DistillJobConfig, path, overrides + own.pop(name, []))
    if own:
        raise SystemExit(f"--extra-override for unknown rows: {sorted(own)}")
    first = jobs[args.distill_name]
    for name, job in jobs.items():  # an honest comparison: one data source, one budget
        if job.data != first.data or set_budget(job) != set_budget(first):
            raise SystemExit(f"{name}: data or budget (images, image_size) differs from the first distilled row; "
                             "compare sets of one budget")
    return jobs


def set_rows(args, jobs: dict[str, DistillJobConfig]) -> dict[str, str]:
    """``--set`` rows by name; each must hold the first distilled row's budget (images, side)."""
    from hf_srdistill.train import load_image_set

    rows: dict[str, str] = {}
    want = set_budget(jobs[args.distill_name]) if args.set_rows else None
    for item in args.set_rows:
        name, _, folder = item.partition("=")
        if not folder or not re.fullmatch(r"[\w.-]+", name) or name.startswith(".") or name in jobs \
                or name in rows or name in (*BASELINES, ORACLE, HALF):
            raise SystemExit(f"--set {item!r}: expected a new NAME=FOLDER (NAME: letters, digits, _ . -)")
        images = load_image_set(folder)
        sides = {im.shape[0] for im in images} | {im.shape[1] for im in images}
        got = (len(images), sides.pop() if len(sides) == 1 else sorted(sides))
        if got != want:
            raise SystemExit(f"--set {name}: {got[0]} images of side {got[1]}, but the distilled rows' budget "
                             f"is {want[0]} images of {want[1]} px; compare sets of one budget")
        rows[name] = folder
    return rows


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
    from hf_srdistill.distill.baselines import make_any_baseline

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

    for name, job in ({} if args.no_distill else jobs).items():
        folder = out / "sets" / f"{name}{seed_tag}{scale_tag}"
        if not is_complete(folder):
            distill(job_for(job, folder))
        folders[name] = str(folder)
    base = jobs[args.distill_name]
    for kind in args.sets:
        if kind == "full":
            folders[kind] = None
            continue
        folder = out / "sets" / f"{kind}{seed_tag}"  # baselines do not depend on the judge scale
        if not is_complete(folder):
            job = job_for(base, folder)
            if kind == ORACLE:
                make_baseline_set("downscaled", oracle_job(job, args.test_sets))
            else:
                make_any_baseline(kind, job, folder, reference=args.coreset_reference,
                                  outlier_pct=args.coreset_outlier_pct,
                                  scorer_iterations=args.coreset_scorer_iterations, tiles=args.mosaic_tiles)
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


def validation_crops(data, n: int, size: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """``n`` fixed HR crops of the training sub-images (SubImageStore of ``data``), the validation split."""
    from hf_srdistill.data.grouped import SubImageStore

    store = SubImageStore.build(data)
    subs, labels = store.all_subimages(), store.labels()
    crops = []
    for i, top, left in val_crop_plan([store.count(c) for c in range(store.num_classes)], n, seed):
        img = subs[i]
        h, w = img.shape[:2]
        side = min(size, h, w)
        y, x = int(top * (h - side + 1)), int(left * (w - side + 1))
        crops.append((f"{store.class_names[labels[i]]}#{i}@{y},{x}", np.ascontiguousarray(img[y:y + side, x:x + side])))
    if len(crops) < n or any(c.shape[0] < size for _, c in crops):
        print(f"bench_quality: note: validation split is {len(crops)} crops of {crops[0][1].shape[0]} px "
              f"(asked {n} of {size} px; the sub-images are smaller or fewer)", file=sys.stderr)
    return crops


def curve_protocol(args, val: list[tuple[str, np.ndarray]], tests: dict) -> dict:
    """What a curve.json must have been recorded with to be reused (eval steps checked apart)."""
    import hashlib

    digest = hashlib.sha256(b"".join(c.tobytes() for _, c in val)).hexdigest()[:16]
    return {"version": CURVE_VERSION, "val": {"crops": [name for name, _ in val], "digest": digest,
                                              "n": args.val_crops, "size": args.val_size, "seed": args.val_seed},
            "test_sets": {name: len(images) for name, images in tests.items()}}


def judge_run(run_dir: Path, job: TrainJobConfig, tests: dict, val: list, protocol: dict, eval_every: int,
              lpips_metric, device: str, label: str = "") -> tuple[dict, dict, list[dict]]:
    """Train one judge, scoring it every ``eval_every`` steps; returns (eval.json, best.json, curve).

    Reuses curve.json when it has this protocol and every step needed (a coarser --eval-every
    reuses a finer curve), and eval.json when present; otherwise trains, resuming a checkpoint
    only when the curve recorded so far is of this protocol. best.json is the test metrics at
    the step of best validation PSNR-Y on the ``eval_every`` grid, chosen on validation only.
    """
    from hf_srdistill.evaluate import evaluate_upscaler, model_upscaler
    from hf_srdistill.models import load_model
    from hf_srdistill.train import CHECKPOINT_DIR, train_sr

    scale, need = job.model.scale, eval_steps(job.train.iterations, eval_every)
    done, curve_file = run_dir / "eval.json", run_dir / "curve.json"
    old = read_json(curve_file) if curve_file.is_file() else None
    same = old is not None and old.get("protocol") == protocol
    points = {p["step"]: p for p in old["points"]} if same else {}
    finished = same and old.get("complete") and set(need) <= set(points) and (run_dir / "model.safetensors").is_file()
    if not finished:
        why = ("" if old is None and not done.is_file() else " (no curve yet: trained again)" if old is None
               else " (its curve has another protocol: trained again)" if not same
               else " (its curve lacks steps of this --eval-every: trained again)" if old.get("complete")
               else " (resumed)" if old.get("eval_every") == eval_every else " (its partial curve has another grid)")
        print(f"bench_quality: {label}{why}", flush=True)
        if not same or old.get("complete") or old.get("eval_every") != eval_every:
            points = {}  # another protocol, grid, or a finished curve too coarse: train again from step 0
        if not points and (run_dir / CHECKPOINT_DIR).exists():  # the curve up to the checkpoint is lost
            job = dataclasses.replace(job, train=dataclasses.replace(job.train, resume=False))
        done.unlink(missing_ok=True)

        def score(step: int, model) -> None:
            up = model_upscaler(model, device)
            v = evaluate_upscaler(up, val, scale)
            tm = {name: evaluate_upscaler(up, images, scale) for name, images in tests.items()}
            points[step] = {"step": step, "val_psnr": v["psnr"], "val_ssim": v["ssim"],
                            "test": {name: {"psnr": m["psnr"], "ssim": m["ssim"]} for name, m in tm.items()}}
            write_json(curve_file, {"protocol": protocol, "eval_every": eval_every, "complete": False,
                                    "points": [points[s] for s in sorted(points)]})

        train_sr(job, callback=score, callback_every=eval_every)
        missing = sorted(set(need) - set(points))
        if missing:
            raise RuntimeError(f"{run_dir}: the judge's curve misses steps {missing[:5]}; delete the folder and rerun")
        write_json(curve_file, {"protocol": protocol, "eval_every": eval_every, "complete": True,
                                "points": [points[s] for s in sorted(points)]})
    curve = [points[s] for s in need]
    b = best_point(curve)
    best = {name: {**m, "lpips": None, "step": b["step"], "val_psnr": b["val_psnr"]} for name, m in b["test"].items()}
    write_json(run_dir / "best.json", best)
    if not done.is_file():  # eval.json last: the run's "finished" mark, as before the curve
        up = model_upscaler(load_model(run_dir), device)
        write_json(done, {name: evaluate_upscaler(up, images, scale, lpips_metric) for name, images in tests.items()})
    return read_json(done), best, curve


def convergence_rows(curves: dict, iterations: int, threshold: float) -> list[dict]:
    """Per (scale, judge, set): the doubling gain on the seed-mean validation curve and its peak step."""
    rows = []
    for (scale, judge, name), runs in sorted(curves.items(), key=lambda kv: (kv[0][0], kv[0][1])):  # stable: row order
        steps, val = mean_curve(list(runs.values()))
        if not steps:
            continue
        peak = steps[best_val_index(val)]
        rows.append({"scale": scale, "judge": judge, "set": name, **convergence(steps, val, iterations, threshold),
                     "peak_step": peak, "val_final": val[-1], "val_peak": float(np.max(val))})
    return rows


def half_budget_rows(curves: dict, half_curves: dict, threshold: float) -> list[dict]:
    """Per (scale, judge): the full-data judge's final validation PSNR-Y at the budget minus that
    of its separate half-budget run, paired by seed; converged when below ``threshold``."""
    rows = []
    for (scale, judge), halves in sorted(half_curves.items()):
        fulls = curves.get((scale, judge, "full"), {})
        seeds = sorted(set(halves) & set(fulls))
        if not seeds:
            continue
        gains = [fulls[k][-1]["val_psnr"] - halves[k][-1]["val_psnr"] for k in seeds]
        gain = float(np.mean(gains))
        rows.append({"scale": scale, "judge": judge, "seeds": seeds, "gain_db": gain, "per_seed": gains,
                     "half_step": halves[seeds[0]][-1]["step"], "budget": fulls[seeds[0]][-1]["step"],
                     "converged": bool(gain < threshold)})
    return rows


def convergence_markdown(rows: list[dict], threshold: float, halves: list[dict] = ()) -> tuple[str, list[str]]:
    """The table of every row's doubling gain, and the loud lines for full-data judges not converged
    (from the separate half-budget runs where there are some, the stronger evidence)."""
    loud = []
    separate = {(h["scale"], h["judge"]): h for h in halves}
    for h in halves:
        if not h["converged"]:
            loud.append(f"**WARNING: budget too short: the ranking measures speed** — the full-data {h['judge']} "
                        f"x{h['scale']} judge gained {h['gain_db']:+.3f} dB of val PSNR-Y from its own "
                        f"{h['half_step']}-step run to {h['budget']} steps (>= {threshold} dB); train longer.")
    for r in rows:
        if r["set"] != "full" or (r["scale"], r["judge"]) in separate:
            continue
        if r["converged"] is False:
            loud.append(f"**WARNING: budget too short: the ranking measures speed** — the full-data {r['judge']} "
                        f"x{r['scale']} judge's {r['note']} (>= {threshold} dB); train longer (--iterations).")
        elif r["converged"] is None:
            loud.append(f"**WARNING: convergence of the full-data {r['judge']} x{r['scale']} judge unknown**: "
                        f"{r['note']}.")
    lines = [f"| set | judge | scale | val PSNR-Y(T) − val(T/2) | converged (< {threshold} dB) | "
             "best-val step (seed mean) | val final | val best |", "|---|---|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        gain = "" if r["gain_db"] is None else f"{r['gain_db']:+.3f} (from {r['half_step']})"
        conv = "?" if r["converged"] is None else "yes" if r["converged"] else "**no**"
        lines.append(f"| {r['set']} | {r['judge']} | x{r['scale']} | {gain} | {conv} | {r['peak_step']} | "
                     f"{r['val_final']:.3f} | {r['val_peak']:.3f} |")
    if halves:
        lines += ["", "Separate half-budget runs of the full-data judge (own cosine schedule, paired by seed):", "",
                  f"| judge | scale | val PSNR-Y(T) − val(T/2 run) | per seed | converged (< {threshold} dB) |",
                  "|---|---:|---:|---|---|"]
        lines += [f"| {h['judge']} | x{h['scale']} | {h['gain_db']:+.3f} ({h['half_step']} → {h['budget']}) | "
                  f"{', '.join(f'{g:+.3f}' for g in h['per_seed'])} | {'yes' if h['converged'] else '**no**'} |"
                  for h in halves]
    return "\n".join(lines) + "\n", loud


def _pm(p: dict | None) -> str:
    if p is None:
        return ""
    spread = "" if p["seed_spread"] is None else f" (spread {p['seed_spread']:.3f})"
    return f"{p['delta_mean']:+.3f}{spread}"


def scores_markdown(rows: list[dict], refs: list[str]) -> str:
    head = [f"Δ vs {r}" + (" (IOR)" if r == "random" else "") for r in refs]
    lines = ["| set | judge | scale | n | " + " | ".join(head) + " | gap to full (HLR) | gap closed | verdict |",
             "|---|---|---:|---:|" + "---:|" * len(refs) + "---:|---:|---|"]
    for r in rows:
        cells = [_pm(r["vs"].get(ref)) for ref in refs]
        lines.append(f"| {r['set']} | {r['judge']} | x{r['scale']} | {r['n']} | " + " | ".join(cells) +
                     f" | {_pm(r.get('gap_to_full'))} | {r.get('gap_closed_text', '')} | "
                     f"{'; '.join(r['verdicts'])} |")
    return "\n".join(lines) + "\n"


def plot_curves(out: Path, curves: dict, order: list[str], bicubic: dict) -> list[Path]:
    """curves_x{scale}_{judge}.png/.pdf: validation and test PSNR-Y vs steps, seed means, best-val marked."""
    try:
        import matplotlib
    except ImportError:
        print("bench_quality: matplotlib is not installed; curves_*.png not drawn", file=sys.stderr)
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for scale, judge in sorted({(k[0], k[1]) for k in curves}):
        rows = [n for n in order if (scale, judge, n) in curves]
        tests = list(next(iter(curves[(scale, judge, rows[0])].values()))[0]["test"])
        panels = [None, *tests]
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
        for ax, test in zip(axes[0], panels):
            for k, name in enumerate(rows):
                runs = list(curves[(scale, judge, name)].values())
                steps, val = mean_curve(runs)
                ys = val if test is None else mean_curve(runs, test_set=test)[1]
                best = best_val_index(val)  # the best-val step, chosen on the validation curve
                style = "-" if name in BASELINES else "--"
                line, = ax.plot(steps, ys, style, color=f"C{k % 10}", label=f"{name} (n={len(runs)})")
                ax.plot([steps[best]], [ys[best]], "o", color=line.get_color(), ms=5)
            title = "validation (training crops)" if test is None else f"test: {test}"
            if test is not None and test in bicubic.get(scale, {}):  # a line only when near the curves
                lo, hi = ax.get_ylim()
                if lo - 1.0 <= bicubic[scale][test] <= hi + 1.0:
                    ax.axhline(bicubic[scale][test], color="grey", lw=0.8, ls=":", label="bicubic")
                else:
                    title += f" (bicubic {bicubic[scale][test]:.2f})"
            ax.set_title(title, fontsize=10)
            ax.set_xlabel("judge steps")
            ax.set_ylabel("PSNR-Y (dB)")
            ax.grid(alpha=0.3)
        axes[0][-1].legend(fontsize=7, loc="best")
        fig.suptitle(f"{judge} judge, x{scale}: mean over seeds; dot = best step of the mean validation curve",
                     fontsize=10)
        fig.tight_layout()
        for ext in ("png", "pdf"):
            path = out / f"curves_x{scale}_{judge}.{ext}"
            with atomic_path(path) as tmp:
                fig.savefig(tmp, format=ext, dpi=120)
            written.append(path)
        plt.close(fig)
    return written


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
    given = set_rows(args, jobs)
    if "representative" in args.sets:  # refused before any set is built
        from hf_srdistill.distill.representative import require_class_grouping

        try:
            require_class_grouping(jobs[args.distill_name].distill)
        except ValueError as err:
            print(f"bench_quality: --sets representative: {err}", file=sys.stderr)
            return 2
    distilled = [] if args.no_distill else list(jobs)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tests = {name: load_test_set(name, root=args.test_root)[:args.max_test_images] for name in args.test_sets}
    lpips_metric = LPIPSMetric(device=device) if args.lpips else None
    recipe = TrainConfig(iterations=args.iterations, batch_size=args.batch_size, patch_size=args.patch_size,
                         lr=args.lr, loss="l1", scheduler="cosine", checkpoint_every=max(1, args.iterations // 4))
    order = [*distilled, *given, *args.sets]
    try:
        guard_recipe(out, {"judges": [dataclasses.asdict(j) for j in judge_models(args)],
                           "train": dataclasses.asdict(recipe), "test_sets": args.test_sets,
                           "max_test_images": args.max_test_images, "lpips": args.lpips,
                           "vary_distill_seed": args.vary_distill_seed, "distill_per_scale": args.distill_per_scale,
                           "coreset": [args.coreset_reference, args.coreset_scorer_iterations,
                                       args.coreset_outlier_pct]},
                     {**{name: dataclasses.asdict(job) for name, job in jobs.items()},
                      **{k: {"tiles": args.mosaic_tiles} for k in ("mosaic", "mixed") if k in args.sets},
                      **{name: {"set": folder, "digest": set_digest(Path(folder).expanduser())
                                if Path(folder).expanduser().is_dir() else None}
                         for name, folder in given.items()}})
    except ConfigError as err:
        print(f"bench_quality: {err}", file=sys.stderr)
        return 2
    val = validation_crops(jobs[args.distill_name].data, args.val_crops, args.val_size, args.val_seed)
    protocol = curve_protocol(args, val, tests)
    records, best_records = [], []
    curves: dict[tuple, dict[int, list[dict]]] = {}
    half_curves: dict[tuple, dict[int, list[dict]]] = {}
    bicubic: dict[int, dict[str, float]] = {}
    for scale in args.scales:
        from hf_srdistill.evaluate import bicubic_upscaler, evaluate_upscaler
        for seed in args.seeds:
            folders = {**build_sets(args, jobs, out, scale, seed), **given}
            if scale not in bicubic:
                bicubic[scale] = {}
                for t, images in tests.items():
                    rec = {"set": "bicubic", "group": "baseline", "judge": "-", "scale": scale, "seed": 0,
                           "test_set": t, **evaluate_upscaler(bicubic_upscaler(scale), images, scale)}
                    records.append(rec)
                    best_records.append(rec)
                    bicubic[scale][t] = rec["psnr"]
            for name in [*args.sets, *distilled, *given]:  # baselines first: every verdict needs them
                for judge in judge_models(args):
                    run_dir = out / "runs" / name / f"{judge.name}_x{scale}_seed{seed}"
                    train = dataclasses.replace(recipe, train_set=folders[name], seed=seed, output_dir=str(run_dir))
                    job = TrainJobConfig(data=jobs[args.distill_name].data, model=dataclasses.replace(judge, scale=scale),
                                         train=train)
                    final, best, curve = judge_run(run_dir, job, tests, val, protocol, args.eval_every,
                                                   lpips_metric, device,
                                                   label=f"{judge.name} x{scale} seed {seed} on {name}")
                    group = "baseline" if name in args.sets else "synthetic"
                    key = {"set": name, "group": group, "judge": judge.name, "scale": scale, "seed": seed}
                    records += [{**key, "test_set": t, **m} for t, m in final.items()]
                    best_records += [{**key, "test_set": t, **m} for t, m in best.items()]
                    curves.setdefault((scale, judge.name, name), {})[seed] = curve
            if args.half_budget_run and "full" in args.sets:
                for judge in judge_models(args):
                    run_dir = out / "runs" / HALF / f"{judge.name}_x{scale}_seed{seed}"
                    train = dataclasses.replace(recipe, iterations=max(1, args.iterations // 2), seed=seed,
                                                output_dir=str(run_dir),
                                                checkpoint_every=max(1, args.iterations // 8))
                    job = TrainJobConfig(data=jobs[args.distill_name].data,
                                         model=dataclasses.replace(judge, scale=scale), train=train)
                    *_, curve = judge_run(run_dir, job, tests, val, protocol, args.eval_every, lpips_metric, device,
                                          label=f"{judge.name} x{scale} seed {seed} on full, half budget")
                    half_curves.setdefault((scale, judge.name), {})[seed] = curve

    hw = hardware()
    machine = (f"{hw.get('cpu_model')} x {hw.get('cpu_count')} logical CPUs; device {device}"
               f"{' (' + ', '.join(hw['cuda']) + ')' if hw['cuda'] else ''}; float32; torch {torch.__version__}")
    d = jobs[args.distill_name].distill
    header = (f"machine: {machine}\nbudget: ipc {d.ipc}, {d.image_size} px per class; judges {', '.join(args.judges)} "
              f"trained {args.iterations} steps (batch {args.batch_size}, {args.patch_size} px, Adam {args.lr}, L1, "
              f"cosine); seeds {args.seeds}; test sets {args.test_sets}"
              f"{'' if args.max_test_images is None else f' (first {args.max_test_images} images)'}; wall {time.time() - t0:.0f} s\n"
              f"judge protocol: every {args.eval_every} steps each judge is scored on {len(val)} validation crops of "
              f"{val[0][1].shape[0]} px cut from the training sub-images (val seed {args.val_seed}; never the test "
              f"photos) and on the test sets; best-val = per run, the step of highest validation PSNR-Y, chosen "
              f"without looking at a test number; verdicts at {args.margin:g}x the seed spread\n")
    write_tables(out, records, title="bench_quality (final budget)")
    write_tables(out / "best_val", best_records, title="bench_quality (best-validation checkpoint)")
    refs = [r for r in ("downscaled", "random", "coreset") if r in args.sets]
    synthetic, vs = [*distilled, *given], [s for s in ("downscaled", "random") if s in args.sets]
    deltas = paired_deltas(records, synthetic, vs, margin=args.margin)
    deltas_best = paired_deltas(best_records, synthetic, vs, margin=args.margin)
    score_rows = {"final": scores(records, order, refs, margin=args.margin),
                  "best_val": scores(best_records, order, refs, margin=args.margin)}
    conv = convergence_rows(curves, args.iterations, args.converged_db)
    halves = half_budget_rows(curves, half_curves, args.converged_db)
    conv_md, loud = convergence_markdown(conv, args.converged_db, halves)
    if "full" not in args.sets:
        loud.append("note: no `full` row (--sets), so whether the budget has converged is not checked.")
    figures = plot_curves(out, curves, order, bicubic)
    summary = "\n".join([
        header, *(f"{line}\n" for line in loud),
        f"## Final budget ({args.iterations} steps)\n", summary_markdown(records, deltas, order),
        "## Best-validation checkpoint (per run; step chosen on validation PSNR-Y only)\n",
        summary_markdown(best_records, deltas_best, order),
        f"## Scores at the final budget (PSNR-Y, paired by seed; verdict: beyond {args.margin:g}x spread)\n",
        scores_markdown(score_rows["final"], refs),
        "## Scores at the best-validation checkpoint\n", scores_markdown(score_rows["best_val"], refs),
        "Gap closed = (set − downscaled) / (full − downscaled), shown only when full beats downscaled by more "
        "than their seed spread. HLR = full − set. Spread = the larger seed std of the two rows.\n",
        f"## Convergence (seed-mean validation PSNR-Y; converged when doubling the steps gains < "
        f"{args.converged_db} dB)\n", conv_md,
        "The check reads one run's curve: with the cosine schedule its T/2 point is mid-schedule (lr ~ lr/2), "
        "so the gain includes the final annealing and the check is conservative (a 'no' can be the schedule; "
        "a 'yes' is a yes).\n",
        "Figures: " + ", ".join(p.name for p in figures if p.suffix == ".png") + "\n" if figures else ""])
    print(summary)
    if loud:
        print("\n".join(loud), file=sys.stderr)
    write_text(out / "summary.md", summary)
    write_json(out / "bench_quality.json", {
        "machine": machine, "args": vars(args), "records": records, "deltas": deltas,
        "best_records": best_records, "deltas_best": deltas_best, "scores": score_rows, "convergence": conv,
        "half_budget": halves,
        "validation": protocol["val"],
        "curves": [{"scale": k[0], "judge": k[1], "set": k[2], "seed": seed, "points": c}
                   for k, by in curves.items() for seed, c in by.items()],
        "wall_time_s": time.time() - t0})
    return 0


if __name__ == "__main__":
    sys.exit(main())
