"""The ``ldm`` backend: DDIM inversion/sampling against diffusers' own schedulers and pipeline,
its round trip, gradients through the checkpointed sampler, loading errors and a CLI run."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import torch

from hf_srdistill.config import LatentConfig
from hf_srdistill.latent import GeneratorNotFoundError, build_backend, decode_all, load_latents, save_latents
from hf_srdistill.latent import ddim
from hf_srdistill.latent.diffusers_ldm import resize

from latent_support import SUPPORT, write_tiny_ldm


def _cfg(folder, **kw) -> LatentConfig:
    return LatentConfig(backend="ldm", generator=str(folder), chunk_size=3, **kw)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_codes_are_inverted_noise_that_decodes_to_images(ldm_folder, photos, size) -> None:
    backend = build_backend(_cfg(ldm_folder), size)
    noise = backend.init_latents(photos, [0, 1, 2, 3])["noise"]
    assert backend.resolution == 16  # the UNet's 8 px latents x the VAE's 2: resized to/from 12
    assert noise.shape == (4, 4, 8, 8) and noise.is_leaf and noise.requires_grad
    images = decode_all(backend)
    assert images.shape == (4, 3, size, size) and 0 <= images.min() and images.max() <= 1
    src = backend.source()
    assert len(src["sha256"]) == 64 and src["subfolder"] == "vae" and src["autoencoder"] == "AutoencoderKL"
    assert src["timesteps"] == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0] and src["latent_scale"] == [4.0, 0.0]
    assert backend.init_report["ldm_steps"] == 10 and backend.init_report["latent_rel_error"] < 0.1


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_sampler_and_inversion_are_diffusers_ddim(ldm_folder, size, prediction_type, spacing) -> None:
    """eta=0 DDIMScheduler steps down and DDIMInverseScheduler steps up, written by hand here."""
    from diffusers import DDIMInverseScheduler, DDIMScheduler

    backend = build_backend(_cfg(ldm_folder), size)
    config = DDIMScheduler.from_pretrained(ldm_folder / "scheduler",
                                           prediction_type=prediction_type, timestep_spacing=spacing).config
    schedule = ddim.DDIMSchedule(config, 10)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        down, up = DDIMScheduler.from_config(config), DDIMInverseScheduler.from_config(config)
        down.set_timesteps(10)
        up.set_timesteps(10)
        expected_down, expected_up = x, x
        for t in down.timesteps:
            expected_down = down.step(backend.model(expected_down, t), t, expected_down).prev_sample
        for t in up.timesteps:
            expected_up = up.step(backend.model(expected_up, t), t, expected_up).prev_sample
        torch.testing.assert_close(ddim.sample(backend.model, x, schedule), expected_down, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ddim.invert(backend.model, x, schedule), expected_up, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_refined_inversion_is_exact_when_the_model_ignores_x(ldm_folder, prediction_type) -> None:
    """Then each sampling step is affine in x, and one fixed-point iteration solves it exactly."""
    from diffusers import DDIMScheduler

    config = DDIMScheduler.from_pretrained(ldm_folder / "scheduler", prediction_type=prediction_type).config
    schedule = ddim.DDIMSchedule(config, 10)

    def model(x, t):
        return torch.full_like(x, 0.3) * torch.linspace(-1, 1, x.shape[-1]) * (1 + t / 1000)

    z = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert _rel(ddim.sample(model, ddim.invert(model, z, schedule, iters=1), schedule), z) < 1e-5
        if prediction_type == "epsilon":  # plain DDIM inversion is exact only for a constant eps
            assert _rel(ddim.sample(model, ddim.invert(model, z, schedule), schedule), z) < 1e-5


def test_inversion_round_trip_on_the_tiny_unet(ldm_folder, photos, size) -> None:
    """Measured on the untrained UNet (unit-variance latents), 10 DDIM steps.

    Plain DDIM inversion evaluates the UNet at x_{t-1} instead of x_t; an untrained UNet varies
    fast with x, so sampling lands ~3x the latents' norm away (fresh noise of the same spread:
    ~20x). Fixed-point refinement closes the gap: measured 0.16 after 5, 0.016 after 10 (the
    default) and 1e-4 after 20 refinements per step.
    """
    backend = build_backend(_cfg(ldm_folder), size)
    z0 = backend.encode(photos)
    assert 0.7 < float(z0.std()) < 1.4
    with torch.no_grad():
        noise = {k: ddim.invert(backend.model, z0, backend.schedule, k) for k in (0, 5, 10, 20)}
        errors = {k: _rel(ddim.sample(backend.model, n, backend.schedule), z0) for k, n in noise.items()}
        fresh = torch.randn(z0.shape, generator=torch.Generator().manual_seed(0)) * noise[20].std()
        random_error = _rel(ddim.sample(backend.model, fresh, backend.schedule), z0)
    assert errors[0] < 0.5 * random_error
    assert errors[20] < errors[10] < errors[5] < errors[0]
    assert errors[10] < 0.1 and errors[20] < 5e-3
    # the images too: the init decodes to the autoencoder's own round trip of the photos
    backend.cfg = replace(backend.cfg, ldm_invert_iters=20)
    backend.init_latents(photos, [0, 1, 2, 3])
    # (chunks of 3 instead of one batch of 4 round differently: near 1e-4 that shows)
    assert backend.init_report["latent_rel_error"] == pytest.approx(errors[20], rel=0.3)
    with torch.no_grad():
        vae_round_trip = backend.to_images(z0)
    assert float((decode_all(backend) - vae_round_trip).abs().max()) < 1e-3


def _grads(backend, g: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.autograd.grad((backend.decode(backend.latents) * g).sum(), params))


def test_gradients_go_through_the_checkpointed_sampler(ldm_folder, photos, size) -> None:
    backend = build_backend(_cfg(ldm_folder, ldm_steps=4, ldm_invert_iters=0, train_generator=True), size)
    backend.init_latents(photos, [0, 1, 2, 3])
    params = backend.latent_tensors() + backend.generator_parameters()
    assert any(p is backend.unet.conv_in.weight for p in params)  # train_generator trains the UNet too
    g = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(2))

    def saved_bytes() -> int:  # what autograd keeps for the backward (outside checkpointed segments)
        total = []

        def pack(t):
            total.append(t.numel() * t.element_size())
            return t
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            backend.decode(backend.latents)
        return sum(total)

    checkpointed, held = _grads(backend, g, params), saved_bytes()
    backend.cfg = replace(backend.cfg, ldm_checkpoint=False)
    plain, held_plain = _grads(backend, g, params), saved_bytes()
    assert float(checkpointed[0].abs().max()) > 0 and all(torch.isfinite(c).all() for c in checkpointed)
    scale = max(float(p.abs().max()) for p in plain)
    for c, p in zip(checkpointed, plain):
        torch.testing.assert_close(c, p, rtol=1e-4, atol=1e-6 * scale)
    assert held < 0.5 * held_plain  # the 4 UNet steps' activations are recomputed, not kept


def test_vq_autoencoder_without_scaling_factor_is_unscaled(tmp_path, photos, size) -> None:
    backend = build_backend(_cfg(write_tiny_ldm(tmp_path, vq=True), ldm_steps=3), size)
    assert backend.is_vq and backend.scaling == 1.0 and backend.source()["subfolder"] == "vqvae"
    backend.init_latents(photos[:2], [0, 1])
    images = decode_all(backend)
    assert images.shape == (2, 3, size, size)
    backend.latents["noise"].grad = None
    backend.decode(backend.latents).sum().backward()  # straight through the quantiser
    assert float(backend.latents["noise"].grad.abs().max()) > 0


@pytest.mark.parametrize("vq", [False, True])
def test_decode_is_diffusers_ldm_pipeline(tmp_path, vq) -> None:
    """At the model's own size, decode(noise) is LDMPipeline's image for that noise."""
    from diffusers import AutoencoderKL, DDIMScheduler, LDMPipeline, UNet2DModel, VQModel
    from diffusers.utils.torch_utils import randn_tensor

    folder = write_tiny_ldm(tmp_path, seed=4, vq=vq, vq_scaling=0.5)
    ae = VQModel.from_pretrained(folder / "vqvae") if vq else AutoencoderKL.from_pretrained(folder / "vae")
    pipe = LDMPipeline(vqvae=ae, unet=UNet2DModel.from_pretrained(folder / "unet"),
                       scheduler=DDIMScheduler.from_pretrained(folder / "scheduler"))
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=5,
                    output_type="np").images
    noise = randn_tensor((2, 4, 8, 8), generator=torch.Generator().manual_seed(0))
    backend = build_backend(_cfg(folder, ldm_steps=5), 16)
    with torch.no_grad():
        images = backend.decode({"noise": noise})
    np.testing.assert_allclose(images.permute(0, 2, 3, 1).numpy(), expected, atol=1e-4)


def test_x0_predicting_schedulers_are_refused(tmp_path, size) -> None:
    with pytest.raises(ValueError, match="epsilon or v_prediction model, not 'sample'"):
        build_backend(_cfg(write_tiny_ldm(tmp_path, prediction_type="sample")), size)


def test_class_conditional_unet_gets_the_class_index(tmp_path, photos, size) -> None:
    folder = write_tiny_ldm(tmp_path, unet={"num_class_embeds": 3})
    noise = {"noise": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))}
    with torch.no_grad():
        a, b = (build_backend(_cfg(folder, ldm_steps=3, class_index=c), size).decode(noise) for c in (0, 2))
    assert float((a - b).abs().max()) > 1e-4
    with pytest.raises(ValueError, match="class_index=3 but the UNet has 3 classes"):
        build_backend(_cfg(folder, class_index=3), size)


def test_resolution_must_suit_both_downsamplings(ldm_folder, size) -> None:
    with pytest.raises(ValueError, match="runs at 18 px.*divisible .* 2 x 2; set latent.ldm_resolution"):
        build_backend(_cfg(ldm_folder, ldm_resolution=18), size)
    assert build_backend(_cfg(ldm_folder, ldm_resolution=12), size).resolution == 12  # no resizing


def test_resize_lands_on_the_size() -> None:
    x = torch.rand(1, 3, 48, 48)
    assert resize(x, 16).shape[-1] == 16 and resize(resize(x, 16), 48).shape[-1] == 48 and resize(x, 48) is x


def test_missing_model_is_one_clear_error(tmp_path, ldm_folder, size) -> None:
    with pytest.raises(GeneratorNotFoundError, match=r"needs latent.generator.*vae/ \(or vqvae/\), unet/ and sch"):
        build_backend(LatentConfig(backend="ldm"), size)
    with pytest.raises(GeneratorNotFoundError, match="no such model folder"):
        build_backend(_cfg(tmp_path / "absent"), size)
    (tmp_path / "empty").mkdir()
    with pytest.raises(GeneratorNotFoundError, match="could not load the autoencoder .*'vae or vqvae'.*download it"):
        build_backend(_cfg(tmp_path / "empty"), size)
    for part in ("unet", "scheduler"):
        folder = write_tiny_ldm(tmp_path / f"no_{part}")
        shutil.rmtree(folder / part)
        with pytest.raises(GeneratorNotFoundError, match=f"could not load the (UNet|scheduler) .*'{part}'"):
            build_backend(_cfg(folder), size)

def test_hub_id_offline_names_the_model(tmp_path, monkeypatch, size) -> None:
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    with pytest.raises(GeneratorNotFoundError, match="'CompVis/ldm-celebahq-256'.*huggingface-cli download"):
        build_backend(LatentConfig(backend="ldm", generator="CompVis/ldm-celebahq-256"), size)


def test_text_conditional_unet_is_refused(tmp_path, size) -> None:
    folder = write_tiny_ldm(tmp_path)
    config = json.loads((folder / "unet" / "config.json").read_text())
    (folder / "unet" / "config.json").write_text(json.dumps({**config, "_class_name": "UNet2DConditionModel"}))
    with pytest.raises(ValueError, match="needs an unconditional UNet2DModel.*latent.backend=vae"):
        build_backend(_cfg(folder), size)


def test_codes_reload_only_with_their_sampler(ldm_folder, photos, size, tmp_path) -> None:
    backend = build_backend(_cfg(ldm_folder, ldm_steps=4), size)
    backend.init_latents(photos[:2], [0, 1])
    meta = save_latents(backend, tmp_path)
    assert meta["generator_weights"] is None and meta["config"]["ldm_steps"] == 4
    torch.testing.assert_close(decode_all(load_latents(tmp_path)), decode_all(backend), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="timesteps .* were made with"):
        load_latents(tmp_path, ldm_steps=5)


@pytest.mark.slow
def test_ldm_distillation_writes_a_set_with_decodable_latents(tmp_path, monkeypatch) -> None:
    from datasets import load_dataset

    from hf_srdistill.cli import main

    model = write_tiny_ldm(tmp_path / "tiny_ldm")
    monkeypatch.chdir(SUPPORT.parents[2])  # configs/ are repo-relative
    out = tmp_path / "set"
    rc = main(["distill", "--config", "configs/latent_ldm_mini.yaml", f"--distill.output_dir={out}",
               "--data.max_images=2", "--data.crop_size=96", "--data.step=96", "--distill.image_size=48",
               "--distill.iterations=2", "--distill.batch_real=2", "--distill.latent.chunk_size=2",
               f"--distill.latent.generator={model}", "--distill.latent.ldm_steps=3"])
    assert rc == 0
    ds = load_dataset(str(out), split="train")
    hr = torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255 for im in ds["hr"]])
    backend = load_latents(out)
    assert backend.name == "ldm" and backend.labels == list(ds["label"]) and len(ds) == 2
    assert backend.latents["noise"].shape == (2, 4, 8, 8)  # the model's own 16 px, resized to 48
    assert (decode_all(backend) - hr).abs().max() <= 0.5 / 255 + 1e-4  # the set is the codes' decode
    meta = json.loads((out / "latent_meta.json").read_text())
    assert meta["backend"] == "ldm" and meta["generator_weights"] is None
    assert meta["source"]["timesteps"] == [666, 333, 0] and "latent_rel_error" in meta["init_report"]
    assert len(load_dataset(str(tmp_path / "set_inversion"), split="train")) == 2
