"""Can the student follow the expert? Trajectory loss against student lr, before distilling.

    python scripts/probe_tm.py --config configs/distill_photos_tm_late.yaml
    python scripts/probe_tm.py --config configs/distill_photos_tm_late.yaml --set tm=outputs/distill/photos_ipc1_tm_late
    python scripts/probe_tm.py --config distill_mini_tm --distill.tm.span=1   # any config override

Trajectory matching (``distill.objective=tm``) scores a set by how close ``syn_steps`` student
steps on it, from expert checkpoint t, land to checkpoint t + ``span``, as a share of the
distance between the two (1 = no closer than the start). If no student lr brings that share
well below 1, the pixels are optimised for a direction of travel, not for reaching the
target: the span is longer than ``syn_steps`` student steps can cover, and a finer
``expert_every`` with a shorter span, or more ``syn_steps``, is the first thing to try.

For a few start checkpoints and each set (the recipe's initial images, and any ``--set``
folder), this prints the loss at each student lr (mean over ``--repeats`` crop draws), about
the lr the recipe's first iteration picks (``cal``: the distance over ``syn_steps`` first-step
norms), the best lr, and the pixel-gradient norm there (how hard the first iterations push the
pixels; compare it across recipes before choosing ``lr_img``).
Experts are trained first if ``expert_dir`` lacks them, exactly as ``distill`` would.
"""

from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import torch

from hf_srdistill.cli import resolve_config
from hf_srdistill.config import DistillJobConfig
from hf_srdistill.configio import ConfigError, load_config


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                epilog="Any other --section.key=value is a config override.")
    p.add_argument("--config", required=True, help="a distill config with distill.objective=tm (path or bundled name)")
    p.add_argument("--set", action="append", default=[], metavar="NAME=FOLDER", help="also probe this set folder")
    p.add_argument("--starts", type=int, nargs="+", default=None,
                   help="start checkpoints (default: the first, middle and last the recipe draws)")
    p.add_argument("--lr-factors", type=float, nargs="+", default=[1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1],
                   help="student lrs to try, as multiples of the calibrated lr of the initial images")
    p.add_argument("--repeats", type=int, default=2, help="crop draws averaged per loss")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return p.parse_known_args(argv)


def probe(net, start: torch.Tensor, target: torch.Tensor, images: torch.Tensor, lrs: list[float], tm,
          precond: torch.Tensor | None, repeats: int) -> dict:
    from hf_srdistill.distill.trajectory import trajectory_loss, unroll

    losses = {}
    for lr in lrs:
        values = [float(trajectory_loss(unroll(net, start, images, torch.tensor(math.log(lr)), tm.syn_steps,
                                               tm.batch_syn, tm.patch_size, torch.Generator().manual_seed(r),
                                               precond)[0].detach(), start, target)) for r in range(repeats)]
        losses[lr] = float(np.mean(values))
    finite = [(v, lr) for lr, v in losses.items() if math.isfinite(v)]
    best = min(finite)[1] if finite else None
    grad = float("nan")
    if best is not None:
        pixels = images.clone().requires_grad_(True)
        end, _ = unroll(net, start, pixels, torch.tensor(math.log(best)), tm.syn_steps, tm.batch_syn, tm.patch_size,
                        torch.Generator().manual_seed(0), precond)
        trajectory_loss(end, start, target).backward()
        grad = float(pixels.grad.norm())
    return {"distance": float((target - start).norm()), "losses": losses, "best_lr": best, "pixel_grad": grad}


def main(argv=None) -> int:
    from hf_srdistill.data.grouped import SubImageStore
    from hf_srdistill.data.set_folder import read_set_images
    from hf_srdistill.distill.class_agnostic import group_store, initial_images
    from hf_srdistill.distill.trajectory import adam_preconditioner, distance_rule_lr, expert_models, train_expert
    from hf_srdistill.models import build_model

    args, rest = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        cfg = load_config(DistillJobConfig, resolve_config(args.config), rest)
        if cfg.distill.objective != "tm":
            raise ConfigError(f"distill.objective is {cfg.distill.objective!r}: probe_tm needs a tm recipe")
        names = dict(item.split("=", 1) for item in args.set if "=" in item)
        if len(names) != len(args.set):
            raise ConfigError("--set takes NAME=FOLDER")
    except (ConfigError, ValueError) as err:
        print(f"probe_tm: {err}", file=sys.stderr)
        return 2
    d, tm = cfg.distill, cfg.distill.tm
    base = SubImageStore.build(cfg.data)
    store = group_store(base, cfg)
    sets = {"init": initial_images(d, store, list(range(store.num_classes))).float()}
    for name, folder in names.items():
        sets[name] = torch.from_numpy(np.stack(read_set_images(folder))).permute(0, 3, 1, 2).float() / 255
    print("| expert | start (step) | set | distance | cal lr | " + " | ".join(f"x{f:g}" for f in args.lr_factors)
          + " | best lr | pixel grad |")
    print("|" + "---|" * (7 + len(args.lr_factors)))
    for model in expert_models(cfg):
        traj = train_expert(cfg, model, 0, base.fingerprint)
        net = build_model(model).requires_grad_(False)
        hi = min(tm.max_start, traj.shape[0] - tm.span) - 1
        for t in args.starts or sorted({tm.min_start, (tm.min_start + hi) // 2, hi}):
            if not 0 <= t < traj.shape[0] - tm.span:
                print(f"probe_tm: start {t} is outside the expert's {traj.shape[0]} checkpoints", file=sys.stderr)
                return 2
            start, target = traj[t], traj[t + tm.span]
            precond = adam_preconditioner(net, start, base, tm.precond_batches, tm.expert_batch, tm.expert_patch,
                                          torch.Generator().manual_seed(t)) if tm.student == "adam" else None
            # the rule distill_tm starts an architecture's student at
            cal = tm.lr_student or distance_rule_lr(net, start, target, sets["init"], tm, precond,
                                                    torch.Generator().manual_seed(0))
            lrs = [cal * f for f in args.lr_factors]
            for name, images in sets.items():
                r = probe(net, start, target, images, lrs, tm, precond, args.repeats)
                cells = " | ".join(f"{v:.4f}" for v in r["losses"].values())
                best = f"{r['best_lr']:.2e}" if r["best_lr"] else "none"
                print(f"| {model.name} x{model.scale} | {t} ({(t + 1) * tm.expert_every}) | {name} | "
                      f"{r['distance']:.3g} | {cal:.2e} | {cells} | {best} | {r['pixel_grad']:.3g} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
