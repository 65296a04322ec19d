"""Every registered backend gets the same shape, chunked-backward and save/load tests."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from hf_srdistill.latent import (BACKENDS, StyleGANXLBackend, VAEBackend, backward_through_decoder,
                                 build_backend, decode_all, load_latents, save_latents)
from hf_srdistill.latent.base import LatentBackend
from hf_srdistill.latent.diffusers_ldm import LDMBackend
from hf_srdistill.latent.state import GENERATOR_FILE, LATENTS_FILE, META_FILE

CASES = ["stylegan_xl", "stylegan_xl_layer2", "vae", "ldm"]


def test_registry_is_explicit() -> None:
    assert BACKENDS == {"stylegan_xl": StyleGANXLBackend, "vae": VAEBackend, "ldm": LDMBackend}


@pytest.fixture(scope="module")
def inited(backend_cfgs, photos, size) -> dict[str, LatentBackend]:
    out = {}
    for case in CASES:
        backend = build_backend(backend_cfgs[case], size, seed=0)
        backend.init_latents(photos[:3].repeat(3, 1, 1, 1)[:7], list(range(7)))  # 7 = two full chunks + 1
        out[case] = backend
    return out


@pytest.mark.parametrize("case", CASES)
def test_decode_shapes_and_range(inited, case, size) -> None:
    backend = inited[case]
    assert backend.num_images == 7 and backend.labels == list(range(7))
    assert all(t.is_leaf and t.requires_grad and len(t) == 7 for t in backend.latent_tensors())
    images = decode_all(backend)
    assert images.shape == (7, 3, size, size) and images.is_contiguous()
    assert images.min() >= 0 and images.max() <= 1
    one = backend.decode({k: v[4:5] for k, v in backend.latents.items()})
    torch.testing.assert_close(one.detach(), images[4:5], rtol=1e-4, atol=1e-5)  # chunking does not mix images


def _full_grads(backend: LatentBackend, g: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Reference: the whole batch in one forward and one backward."""
    x = backend.decode(backend.latents)
    return list(torch.autograd.grad((x * g).sum(), params))


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("train_generator", [False, True])
def test_chunked_backward_equals_full_backward(backend_cfgs, photos, size, case, train_generator) -> None:
    cfg = replace(backend_cfgs[case], train_generator=train_generator, tune_steps=0, invert_steps=2)
    backend = build_backend(cfg, size, seed=0)
    backend.init_latents(photos[:3].repeat(3, 1, 1, 1)[:7], list(range(7)))
    params = backend.latent_tensors() + backend.generator_parameters()
    assert bool(backend.generator_parameters()) == train_generator
    g = torch.randn(7, 3, size, size, generator=torch.Generator().manual_seed(1))
    expected = _full_grads(backend, g, params)
    for p in params:
        p.grad = None
    backward_through_decoder(backend, g)
    assert backend.chunk_size == 3
    # float32 convolutions pick batch-size dependent algorithms, so agreement is ~1e-6 of the
    # gradient scale (in float64 the same comparison agrees to 1e-13); a lost or doubled chunk
    # would be off by O(scale)
    scale = max(float(e.abs().max()) for e in expected)
    assert scale > 0
    for p, e in zip(params, expected):
        assert p.grad is not None
        torch.testing.assert_close(p.grad, e, rtol=1e-4, atol=1e-5 * scale)


def test_backward_rejects_wrong_gradient_shape(inited, size) -> None:
    with pytest.raises(ValueError, match="expected"):
        backward_through_decoder(inited["vae"], torch.zeros(7, 3, size + 1, size))


@pytest.mark.parametrize("case", CASES)
def test_save_load_round_trip(inited, case, size, tmp_path) -> None:
    backend = inited[case]
    meta = save_latents(backend, tmp_path)
    on_disk = json.loads((tmp_path / META_FILE).read_text())
    assert on_disk["backend"] == backend.name and on_disk["image_size"] == size
    assert on_disk["labels"] == list(range(7)) and on_disk["num_images"] == 7
    assert on_disk == json.loads(json.dumps(meta, default=str))
    # decoder weights are saved exactly when they differ from their source
    modified = case.startswith("stylegan") or case == "vae"  # pivotal tuning / untrained VAE
    assert (tmp_path / GENERATOR_FILE).is_file() == modified
    assert (tmp_path / LATENTS_FILE).is_file()
    reloaded = load_latents(tmp_path)
    assert type(reloaded) is type(backend)
    torch.testing.assert_close(decode_all(reloaded), decode_all(backend), rtol=0, atol=1e-6)


def test_load_without_generator_weights_differs_after_tuning(inited, tmp_path) -> None:
    """Guards the round trip above: the tuned weights really are needed to decode the codes."""
    backend = inited["stylegan_xl"]
    save_latents(backend, tmp_path)
    (tmp_path / GENERATOR_FILE).unlink()
    meta = json.loads((tmp_path / META_FILE).read_text())
    meta["generator_weights"] = None
    (tmp_path / META_FILE).write_text(json.dumps(meta))
    assert (decode_all(load_latents(tmp_path)) - decode_all(backend)).abs().max() > 1e-4


def test_load_rejects_a_folder_without_latents(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=META_FILE):
        load_latents(tmp_path)


def test_load_refuses_a_different_generator(inited, tmp_path) -> None:
    from latent_support import write_tiny_pickle

    save_latents(inited["stylegan_xl"], tmp_path / "set")
    other = write_tiny_pickle(tmp_path / "other.pkl", seed=7, img_resolution=16, channels=8)
    with pytest.raises(ValueError, match="sha256 .* were made with"):
        load_latents(tmp_path / "set", generator=str(other))


def test_saved_config_holds_absolute_paths(inited, tmp_path, monkeypatch) -> None:
    save_latents(inited["stylegan_xl"], tmp_path / "set")
    meta = json.loads((tmp_path / "set" / META_FILE).read_text())
    assert meta["config"]["generator"].startswith("/") and meta["config"]["source_dir"].startswith("/")
    monkeypatch.chdir(tmp_path)  # another working directory still decodes
    torch.testing.assert_close(decode_all(load_latents(tmp_path / "set")), decode_all(inited["stylegan_xl"]))


@pytest.mark.parametrize("case", ["stylegan_xl", "vae"])
def test_init_rejects_bad_images(backend_cfgs, photos, size, case) -> None:
    backend = build_backend(backend_cfgs[case], size)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        backend.init_latents(photos[:2] * 2, [0, 1])
    with pytest.raises(ValueError, match="expected"):
        backend.init_latents(photos[:2, :, :8, :8], [0, 1])
    with pytest.raises(ValueError, match="2 images but 3 labels"):
        backend.init_latents(photos[:2], [0, 1, 2])
