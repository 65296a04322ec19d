"""The shipped latent configs parse, and the published one fails only for missing weights."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import torch

from hf_srdistill.config import DistillJobConfig
from hf_srdistill.configio import load_config
from hf_srdistill.latent import GeneratorNotFoundError, build_backend

CONFIGS = sorted((Path(__file__).parents[2] / "configs").glob("latent_*.yaml"))


def test_latent_configs_exist() -> None:
    names = {p.stem for p in CONFIGS}
    assert {"latent_stylegan_xl_div2k", "latent_vae_mini", "latent_stylegan_tiny_mini"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_parses_as_latent_distillation(path) -> None:
    cfg = load_config(DistillJobConfig, path)
    assert cfg.distill.init == "latent"
    assert cfg.distill.image_size % cfg.distill.reference.scale == 0


def test_published_config_stops_at_the_missing_generator(tmp_path, monkeypatch) -> None:
    cfg = load_config(DistillJobConfig, Path(__file__).parents[2] / "configs" / "latent_stylegan_xl_div2k.yaml")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty cache

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(GeneratorNotFoundError, match="imagenet512.pkl.*no network.*git clone"):
        build_backend(cfg.distill.latent, cfg.distill.image_size)


def test_mini_vae_config_builds_without_download() -> None:
    cfg = load_config(DistillJobConfig, Path(__file__).parents[2] / "configs" / "latent_vae_mini.yaml")
    backend = build_backend(cfg.distill.latent, cfg.distill.image_size, seed=cfg.distill.seed)
    z = backend.init_latents(torch.rand(2, 3, 96, 96), [0, 1])["z"]
    assert z.shape == (2, 4, 48, 48)
