"""Save and reload latent codes with everything needed to decode them again.

A distilled set folder gets ``latents.safetensors`` (the named code tensors),
``latent_meta.json`` (backend, resolved config, synthetic size, labels, where the generator
came from with its checksum, and the inversion report) and, when the decoder weights no
longer match their source (pivotal tuning, ``train_generator``, an untrained VAE),
``generator.safetensors`` with those weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from hf_srdistill import __version__
from hf_srdistill.config import LatentConfig
from hf_srdistill.configio import from_dict, to_dict
from hf_srdistill.io import atomic_path, read_json, write_json
from hf_srdistill.latent.base import LatentBackend

LATENTS_FILE = "latents.safetensors"
META_FILE = "latent_meta.json"
GENERATOR_FILE = "generator.safetensors"
FORMAT_VERSION = 1


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share storage, and views of one buffer can occur
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}


def _resolved_config(cfg: LatentConfig) -> dict[str, Any]:
    """The config with local generator/source paths made absolute, so any working directory can reload."""
    out = to_dict(cfg)
    for key in ("generator", "source_dir"):
        if out[key] and Path(out[key]).expanduser().exists():
            out[key] = str(Path(out[key]).expanduser().resolve())
    return out


def save_latents(backend: LatentBackend, folder: str | Path) -> dict[str, Any]:
    """Write the codes (and modified decoder weights) into ``folder``; returns the metadata."""
    folder = Path(folder)
    if not backend.latents:
        raise ValueError("no latents to save: call init_latents (or set_latents) first")
    modified = list(backend.modified_generator)
    if backend.cfg.train_generator:
        modified.append("trained with the latents")
    with atomic_path(folder / LATENTS_FILE) as tmp:
        save_file(_cpu(backend.latents), str(tmp), metadata={"backend": backend.name})
    if modified:
        with atomic_path(folder / GENERATOR_FILE) as tmp:
            save_file(_cpu(backend.decoder_module().state_dict()), str(tmp), metadata={"backend": backend.name})
    meta = {
        "format": FORMAT_VERSION,
        "backend": backend.name,
        "image_size": backend.image_size,
        "num_images": backend.num_images,
        "labels": backend.labels,
        "latent_shapes": {k: list(v.shape) for k, v in backend.latents.items()},
        "seed": backend.seed,
        "config": _resolved_config(backend.cfg),
        "source": backend.source(),
        "generator_weights": GENERATOR_FILE if modified else None,
        "generator_modified": modified,
        "init_report": backend.init_report,
        "hf_srdistill_version": __version__,
    }
    write_json(folder / META_FILE, meta)
    return meta


def load_latents(folder: str | Path, device: str | torch.device = "cpu", **overrides: Any) -> LatentBackend:
    """Rebuild the backend recorded in ``folder`` (its generator must be available) with its codes.

    ``overrides`` replace LatentConfig fields, e.g. ``generator=`` / ``source_dir=`` where the
    files live elsewhere on this machine; the generator's checksum must still match.
    """
    from hf_srdistill.latent import build_backend

    folder = Path(folder)
    if not (folder / META_FILE).is_file():
        raise FileNotFoundError(f"{folder} has no {META_FILE}: not a latent distilled set")
    meta = read_json(folder / META_FILE)
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{folder / META_FILE}: unsupported format {meta.get('format')!r}")
    cfg = from_dict(LatentConfig, {**meta["config"], **overrides})
    backend = build_backend(cfg, meta["image_size"], device=device, seed=meta["seed"])
    for key in ("sha256", "commit", "timesteps"):  # timesteps: the ldm sampler's, set by latent.ldm_steps
        saved, now = meta["source"].get(key), backend.source().get(key)
        if saved and now and saved != now:
            raise ValueError(f"the generator loaded from {cfg.generator!r} has {key} {now}, but the codes in "
                             f"{folder} were made with {saved}: they would decode to different images")
    if meta["generator_weights"]:
        state = load_file(str(folder / meta["generator_weights"]))
        backend.decoder_module().load_state_dict(state, strict=True)
        backend.modified_generator = [m for m in meta["generator_modified"] if m != "trained with the latents"]
    backend.init_report = meta.get("init_report", {})
    backend.set_latents(load_file(str(folder / LATENTS_FILE), device=str(backend.device)), meta["labels"])
    return backend
