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
    assert {"latent_stylegan_xl_div2k", "latent_vae_mini", "latent_stylegan_tiny_mini", "latent_ldm_mini"} <= names


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


def test_ldm_config_stops_at_the_missing_model(tmp_path, monkeypatch) -> None:
    import huggingface_hub.constants as hub

    cfg = load_config(DistillJobConfig, Path(__file__).parents[2] / "configs" / "latent_ldm_mini.yaml")
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    with pytest.raises(GeneratorNotFoundError, match="CompVis/ldm-celebahq-256.*download it beforehand"):
        build_backend(cfg.distill.latent, cfg.distill.image_size)


def test_mini_vae_config_builds_without_download() -> None:
    cfg = load_config(DistillJobConfig, Path(__file__).parents[2] / "configs" / "latent_vae_mini.yaml")
    backend = build_backend(cfg.distill.latent, cfg.distill.image_size, seed=cfg.distill.seed)
    z = backend.init_latents(torch.rand(2, 3, 96, 96), [0, 1])["z"]
    assert z.shape == (2, 4, 48, 48)


@pytest.mark.parametrize("bad, message", [
    (dict(layer=-1), "latent.layer"),
    (dict(mse_weight=0.0, lpips_weight=0.0), "cannot both be 0"),
    (dict(vae_channels=[]), "latent.vae_channels"),
    (dict(chunk_size=0), "latent.chunk_size"),
    (dict(tune_steps=-1), "latent.tune_steps"),
    (dict(ldm_steps=0), "latent.ldm_steps"),
    (dict(ldm_invert_iters=-1), "latent.ldm_invert_iters"),
    (dict(ldm_resolution=0), "latent.ldm_resolution"),
])
def test_latent_config_validation_names_the_field(bad, message) -> None:
    from hf_srdistill.config import LatentConfig

    with pytest.raises(ValueError, match=message):
        LatentConfig(**bad)


def test_lpips_term_sees_images_in_minus_one_to_one(monkeypatch) -> None:
    """With a stand-in perceptual net, the loss is mse_w * MSE + lpips_w * net(2x-1, 2t-1)."""
    from torch import nn

    from hf_srdistill.latent import losses

    class Fake(nn.Module):
        def forward(self, a, b):
            assert a.min() < 0  # inputs were mapped from [0,1] to [-1,1]
            return (a - b).abs().mean((1, 2, 3), keepdim=True)

    monkeypatch.setattr(losses, "_lpips_model", lambda net: Fake())
    x, t = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    loss = losses.ReconstructionLoss(mse_weight=0.5, lpips_weight=2.0)(x, t)
    expected = 0.5 * ((x - t) ** 2).mean() + 2.0 * (2 * (x - t)).abs().mean()
    torch.testing.assert_close(loss, expected)
