"""Resumable distillation state in one safetensors file, written atomically.

The loop draws every random number from generators seeded by (seed, class, iteration,
...), so the state that is not derivable from the config is small: the synthetic pixels,
the SGD momentum buffers, the snapshot thumbnails of the evolution figure and the
iteration count. The global torch RNG state is stored as well and restored, so code that
draws from it (none in this package) would resume identically too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from hf_srdistill.config import DistillJobConfig
from hf_srdistill.configio import ConfigError, to_dict
from hf_srdistill.io import atomic_path

# fields that may change between an interrupted run and its resume (or, for iterations, while
# extending a finished run). The execution fields (classes_per_step, batched, the chunks) change
# only the rounding of the matching step, but some recipes amplify rounding into visible pixel
# differences, so the resolved arithmetic is stored and a resume that changes it says so.
RESUMABLE = {"iterations", "resume", "checkpoint_every", "snapshot_every", "output_dir",
             "classes_per_step", "batched", "real_chunk", "syn_chunk", "compile", "log_with"}


@dataclass
class DistillState:
    iteration: int  # iterations completed
    images: torch.Tensor  # (K*ipc,3,S,S) float32, all classes
    momentum: torch.Tensor | None  # SGD momentum buffer of the pixels, None before the first step
    snapshots: torch.Tensor  # (T,R,3,t,t) uint8 thumbnails
    snapshot_iters: list[int]
    wall_time_s: float = 0.0
    # objective-specific state (trajectory matching: the student's log-lr and its momentum)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    # how the matching step was computed (device, batched, resolved chunks); {} = not recorded
    arithmetic: dict = field(default_factory=dict)


def checkpoint_path(output_dir: str | Path) -> Path:
    return Path(output_dir) / "checkpoint" / "state.safetensors"


def _identity(cfg: DistillJobConfig, fingerprint: str) -> dict:
    d = {k: v for k, v in to_dict(cfg.distill).items() if k not in RESUMABLE}
    return {"distill": d, "data_fingerprint": fingerprint}


def save_checkpoint(path: Path, state: DistillState, cfg: DistillJobConfig, fingerprint: str) -> None:
    tensors = {"images": state.images.detach().float().cpu().contiguous(),
               "snapshots": state.snapshots.contiguous(),
               "snapshot_iters": torch.tensor(state.snapshot_iters, dtype=torch.int64),
               "rng_state": torch.get_rng_state()}
    if state.momentum is not None:
        tensors["momentum"] = state.momentum.detach().float().cpu().contiguous()
    tensors.update({f"extra.{k}": v.detach().cpu().contiguous() for k, v in state.extra.items()})
    meta = {"iteration": str(state.iteration), "wall_time_s": repr(float(state.wall_time_s)),
            "identity": json.dumps(_identity(cfg, fingerprint), sort_keys=True),
            "arithmetic": json.dumps(state.arithmetic, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_checkpoint(path: Path, cfg: DistillJobConfig, fingerprint: str) -> DistillState:
    """Read a checkpoint; refuse one written by a different config or data source."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        saved = json.loads(meta["identity"])
    except Exception as err:  # safetensors raises its own error types for truncated/garbled files
        raise ConfigError(f"checkpoint {path} is unreadable ({type(err).__name__}: {err}); delete it or set "
                          "distill.resume=false to start over") from None
    now = _identity(cfg, fingerprint)
    if saved != now:
        diff = sorted(k for k in set(saved["distill"]) | set(now["distill"])
                      if saved["distill"].get(k) != now["distill"].get(k))
        if saved["data_fingerprint"] != now["data_fingerprint"]:
            diff.append("data (source fingerprint)")
        raise ConfigError(f"checkpoint {path} was written with a different config ({', '.join(diff)}); "
                          "use another distill.output_dir or set distill.resume=false to start over")
    t = load_file(str(path))
    torch.set_rng_state(t["rng_state"])
    return DistillState(iteration=int(meta["iteration"]), images=t["images"], momentum=t.get("momentum"),
                        snapshots=t["snapshots"], snapshot_iters=t["snapshot_iters"].tolist(),
                        wall_time_s=float(meta["wall_time_s"]),
                        extra={k[6:]: v for k, v in t.items() if k.startswith("extra.")},
                        arithmetic=json.loads(meta.get("arithmetic", "{}")))


def arithmetic_change(saved: dict, now: dict) -> str | None:
    """One line saying how a resume computes differently from the run it continues, or None."""
    if not saved or saved == now:
        return None
    diff = ", ".join(f"{k} {saved.get(k)} -> {now.get(k)}" for k in sorted(set(saved) | set(now))
                     if saved.get(k) != now.get(k))
    return (f"resuming with other arithmetic ({diff}): the set will differ from an uninterrupted run by "
            "rounding, which some recipes amplify; set distill.real_chunk / syn_chunk / classes_per_step "
            "to the saved values to resume exactly")

