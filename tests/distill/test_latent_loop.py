"""distill.init=latent in the loop: resume, class-agnostic units, one process only."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from hf_srdistill.config import LatentConfig
from hf_srdistill.distill import distill
from hf_srdistill.distill.checkpoint import checkpoint_path
from hf_srdistill.distill.latent_glue import latent_state_path, latent_synthetic


def _latent_job(tiny_job, **distill_kw):
    # a tiny untrained AutoencoderKL (no download); lr high enough that the codes visibly move
    lat = LatentConfig(backend="vae", vae_channels=[8, 16], chunk_size=4, lr_latent=1.0)
    return tiny_job(init="latent", latent=lat, **distill_kw)


def _with(cfg, **distill_kw):
    return dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, **distill_kw))


@pytest.mark.slow
def test_latent_resume_equals_an_uninterrupted_run(tiny_job, tmp_path):
    from hf_srdistill.latent import load_latents

    cfg = _latent_job(tiny_job, iterations=3, checkpoint_every=1)
    whole = distill(_with(cfg, output_dir=str(tmp_path / "whole")))
    part = _with(cfg, output_dir=str(tmp_path / "part"), iterations=2)
    distill(part)
    assert latent_state_path(part.distill.output_dir).is_file()
    resumed = distill(_with(cfg, output_dir=part.distill.output_dir, resume=True))

    a, b = load_file(str(checkpoint_path(whole))), load_file(str(checkpoint_path(resumed)))
    assert torch.equal(a["images"], b["images"]) and torch.equal(a["snapshots"], b["snapshots"])
    la, lb = load_latents(whole).latents, load_latents(resumed).latents
    assert la.keys() == lb.keys() and all(torch.equal(la[k], lb[k]) for k in la)
    # the codes did move: the distilled set differs from the undistilled decode next to it
    start = load_file(str(checkpoint_path(whole)))["images"]
    inv = torch.load(latent_state_path(whole), weights_only=False)["initial_images"]
    assert (start - inv).abs().max() > 1e-3


@pytest.mark.slow
def test_latent_codes_carry_the_class_agnostic_unit_labels(tiny_job, tmp_path):
    from datasets import load_dataset

    from hf_srdistill.latent import load_latents

    cfg = _latent_job(tiny_job, grouping="global", num_images=4, iterations=1, outer_loop=1)
    out = distill(cfg)
    ds = load_dataset(str(out), split="train")
    assert load_latents(out).labels == list(ds["label"]) == [0, 0, 0, 0]
    inv = load_dataset(str(tmp_path / "set_inversion"), split="train")
    assert list(inv["label"]) == [0, 0, 0, 0] and list(inv["ipc_index"]) == [0, 1, 2, 3]


def test_latent_refuses_several_processes(tiny_job):
    cfg = _latent_job(tiny_job)
    acc = SimpleNamespace(num_processes=2, device=torch.device("cpu"))
    with pytest.raises(NotImplementedError, match="one process, not 2"):
        latent_synthetic(cfg, acc, store=None, lo=0, hi=1, resume=False)


def test_latent_resume_without_codes_names_the_missing_file(tiny_job):
    cfg = _latent_job(tiny_job)
    acc = SimpleNamespace(num_processes=1, device=torch.device("cpu"))
    with pytest.raises(FileNotFoundError, match="latent_state.pt"):
        latent_synthetic(cfg, acc, store=None, lo=0, hi=1, resume=True)
