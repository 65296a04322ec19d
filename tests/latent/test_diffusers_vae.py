"""The diffusers AutoencoderKL backend (``vae``), checked against direct calls of the diffusers API."""

from __future__ import annotations

import pytest
import torch

from hf_srdistill.config import LatentConfig
from hf_srdistill.latent import GeneratorNotFoundError, build_backend, decode_all
from hf_srdistill.latent.diffusers_vae import untrained_vae


def test_codes_are_the_scaled_posterior_mean(vae_folder, photos, size) -> None:
    from diffusers import AutoencoderKL

    cfg = LatentConfig(backend="vae", generator=str(vae_folder), subfolder="vae", chunk_size=3)
    backend = build_backend(cfg, size)  # the VAE of a Stable-Diffusion-layout repo
    latents = backend.init_latents(photos, [0, 1, 2, 3])
    vae = AutoencoderKL.from_pretrained(vae_folder / "vae").eval()
    sf = vae.config.scaling_factor
    with torch.no_grad():
        mean = vae.encode(photos * 2 - 1).latent_dist.mean
        decoded = ((vae.decode(mean).sample + 1) / 2).clamp(0, 1)
    assert latents["z"].shape == (4, 4, size // 2, size // 2)
    torch.testing.assert_close(latents["z"].detach(), mean * sf, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(decode_all(backend), decoded, rtol=1e-4, atol=1e-5)
    assert len(backend.source()["sha256"]) == 64 and backend.source()["subfolder"] == "vae"


def test_shift_factor_is_undone_by_decode(tmp_path, photos, size) -> None:
    vae = untrained_vae([8, 16], seed=1)
    vae.register_to_config(shift_factor=0.25, scaling_factor=1.5)
    vae.save_pretrained(tmp_path / "vae")
    backend = build_backend(LatentConfig(backend="vae", generator=str(tmp_path / "vae")), size)
    z = backend.init_latents(photos[:2], [0, 1])["z"].detach()
    with torch.no_grad():
        mean = vae.encode(photos[:2] * 2 - 1).latent_dist.mean
        expected = ((vae.decode(mean).sample + 1) / 2).clamp(0, 1)
    torch.testing.assert_close(z, (mean - 0.25) * 1.5, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(decode_all(backend), expected, rtol=1e-4, atol=1e-5)


def test_untrained_vae_is_reproducible_from_its_seed(size, photos) -> None:
    cfg = LatentConfig(backend="vae", vae_channels=[8, 16])
    a, b, c = (build_backend(cfg, size, seed=s) for s in (0, 0, 1))
    assert a.source() == {"untrained": True, "vae_channels": [8, 16], "seed": 0}
    assert a.modified_generator == ["untrained"]
    for pa, pb, pc in zip(a.vae.parameters(), b.vae.parameters(), c.vae.parameters()):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.vae.parameters(), c.vae.parameters()))


def test_missing_weights_are_one_clear_error(tmp_path, size) -> None:
    with pytest.raises(GeneratorNotFoundError, match="no such model folder"):
        build_backend(LatentConfig(backend="vae", generator=str(tmp_path / "absent")), size)
    with pytest.raises(GeneratorNotFoundError, match="vae_channels for an untrained VAE"):
        build_backend(LatentConfig(backend="vae"), size)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GeneratorNotFoundError, match="could not load an AutoencoderKL"):
        build_backend(LatentConfig(backend="vae", generator=str(tmp_path / "empty")), size)


def test_hub_id_goes_through_from_pretrained(monkeypatch, size) -> None:
    import diffusers

    calls = []

    def fake(name, subfolder=None, revision=None, **kwargs):
        calls.append((name, subfolder, revision))
        raise OSError("offline: not in the cache")

    monkeypatch.setattr(diffusers.AutoencoderKL, "from_pretrained", fake)
    cfg = LatentConfig(backend="vae", generator="some-org/some-sd", subfolder="vae", revision="r1")
    with pytest.raises(GeneratorNotFoundError, match="some-org/some-sd.*offline: not in the cache.*download it"):
        build_backend(cfg, size)
    assert calls == [("some-org/some-sd", "vae", "r1")]


def test_size_must_divide_by_the_downsampling(size) -> None:
    with pytest.raises(ValueError, match="divisible by the VAE's downsampling factor 4"):
        build_backend(LatentConfig(backend="vae", vae_channels=[8, 8, 8]), 10)


def test_train_generator_optimises_the_decoder_only(size) -> None:
    backend = build_backend(LatentConfig(backend="vae", vae_channels=[8, 16], train_generator=True), size)
    params = backend.generator_parameters()
    decoder_ids = {id(p) for m in (backend.vae.decoder, backend.vae.post_quant_conv) for p in m.parameters()}
    assert {id(p) for p in params} == decoder_ids
    assert not any(p.requires_grad for p in backend.vae.encoder.parameters())
