"""StyleGAN-XL backend: the real pickle-loading path, codes, inversion and pivotal tuning."""

from __future__ import annotations

import hashlib
import logging
import sys
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from hf_srdistill.latent import GeneratorNotFoundError, build_backend, decode_all, gan_inversion_images
from hf_srdistill.latent import losses
from hf_srdistill.latent.network_pickle import load_network

from latent_support import SUPPORT, write_tiny_pickle


def test_loads_through_the_source_tree_only_while_unpickling(stylegan_cfg, tiny_pickle, monkeypatch) -> None:
    monkeypatch.delitem(sys.modules, "tiny_stylegan_net", raising=False)
    G, record = load_network(stylegan_cfg)
    assert type(G).__module__ == "tiny_stylegan_net"  # the class came from source_dir, as XL's torch_utils do
    assert str(SUPPORT.resolve()) not in sys.path
    assert record["sha256"] == hashlib.sha256(tiny_pickle.read_bytes()).hexdigest()
    assert (G.z_dim, G.w_dim, G.num_ws, G.img_resolution) == (8, 8, 5, 16)


def test_missing_source_tree_is_one_clear_error(stylegan_cfg, monkeypatch) -> None:
    monkeypatch.delitem(sys.modules, "tiny_stylegan_net", raising=False)
    with pytest.raises(GeneratorNotFoundError, match="tiny_stylegan_net.*source tree.*git clone"):
        load_network(replace(stylegan_cfg, source_dir=None))
    with pytest.raises(GeneratorNotFoundError, match="not a directory"):
        load_network(replace(stylegan_cfg, source_dir=str(SUPPORT / "absent")))


def test_missing_pickle_says_where_to_get_it(stylegan_cfg, tmp_path) -> None:
    with pytest.raises(GeneratorNotFoundError, match="no StyleGAN-XL network pickle at .*imagenet512.pkl"):
        load_network(replace(stylegan_cfg, generator=str(tmp_path / "imagenet512.pkl")))
    with pytest.raises(GeneratorNotFoundError, match="latent.generator is not set"):
        load_network(replace(stylegan_cfg, generator=None))


def test_hub_file_goes_through_hf_hub_download(stylegan_cfg, tiny_pickle, monkeypatch) -> None:
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    calls = []

    def fake_download(repo_id, filename, revision=None, **kwargs):
        calls.append((repo_id, filename, revision))
        return str(tiny_pickle)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    cfg = replace(stylegan_cfg, generator="someone/stylegan-xl", filename="imagenet512.pkl", revision="abc123")
    G, record = load_network(cfg)
    assert calls == [("someone/stylegan-xl", "imagenet512.pkl", "abc123")]
    assert record["generator"] == "someone/stylegan-xl" and record["revision"] == "abc123"

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("offline and not cached")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(GeneratorNotFoundError, match="someone/stylegan-xl.*offline and not cached.*latent.generator"):
        load_network(cfg)


def test_layer_codes_decode_to_the_w_plus_image(stylegan_cfg, size) -> None:
    plus = build_backend(replace(stylegan_cfg, layer=None), size)
    ws = plus.mapping(torch.randn(5, 8, generator=torch.Generator().manual_seed(0)))
    reference = plus.decode({"ws": ws})
    for n in (0, 1, 2, 3):  # features after the first n synthesis layers (GLaD's f_layer)
        backend = build_backend(replace(stylegan_cfg, layer=n), size)
        codes = backend.codes_from_ws(ws)
        assert codes["features"].shape[0] == 5 and codes["ws"].shape == (5, 4 - n, 8)
        torch.testing.assert_close(backend.decode(codes), reference, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="below the number of synthesis layers, 4"):
        build_backend(replace(stylegan_cfg, layer=4), size)


def test_layer_init_matches_w_plus_init(stylegan_cfg, photos) -> None:
    """Same inversion + tuning, two code spaces: the decoded initial images coincide."""
    cfg = replace(stylegan_cfg, invert_steps=4, tune_steps=3)
    a = gan_inversion_images(cfg, photos[:2], [0, 1])
    b = gan_inversion_images(replace(cfg, layer=1), photos[:2], [0, 1])
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_output_is_the_bicubic_resized_generator_image(stylegan_cfg, size) -> None:
    from hf_srdistill.data.imresize import imresize

    backend = build_backend(stylegan_cfg, size)
    ws = backend.mapping(torch.randn(2, 8, generator=torch.Generator().manual_seed(1)))
    raw = backend.G.synthesis(ws)
    assert raw.shape[-1] == 16 and size == 12
    expected = imresize((raw + 1) / 2, 0.75).clamp(0, 1)
    torch.testing.assert_close(backend.decode({"ws": ws}), expected)


def test_inversion_recovers_a_reachable_target(stylegan_cfg, size) -> None:
    """Targets the generator can produce: inversion from the class-average w nearly finds them."""
    backend = build_backend(replace(stylegan_cfg, chunk_size=4, tune_steps=0), size, seed=0)
    with torch.no_grad():
        w_true = backend.mapping(torch.randn(4, 8, generator=torch.Generator().manual_seed(5)))
        targets = backend.decode({"ws": w_true})
    backend.init_latents(targets, [0, 1, 2, 3])
    r = backend.init_report
    assert r["mse_inverted"] < 0.2 * r["mse_class_average_w"]
    assert F.mse_loss(decode_all(backend), targets).item() == pytest.approx(r["mse_inverted"], rel=1e-4)


def test_inversion_then_pivotal_tuning_lower_the_error_on_photos(stylegan_cfg, photos) -> None:
    backend = build_backend(replace(stylegan_cfg, chunk_size=4), photos.shape[-1], seed=0)
    backend.init_latents(photos, [0, 1, 2, 3])
    r = backend.init_report
    # independent check of the reported number: MSE of what decode gives now
    assert F.mse_loss(decode_all(backend), photos).item() == pytest.approx(r["mse_tuned"], rel=1e-4)
    assert r["mse_inverted"] < 0.95 * r["mse_class_average_w"]
    assert r["mse_tuned"] < 0.8 * r["mse_inverted"]
    assert backend.modified_generator == ["pivotal tuning"]
    assert r["lpips_used"] is False


def test_tuning_off_keeps_the_generator(stylegan_cfg, photos) -> None:
    backend = build_backend(replace(stylegan_cfg, invert_steps=5, tune_steps=0), photos.shape[-1])
    before = {k: v.clone() for k, v in backend.G.synthesis.state_dict().items()}
    backend.init_latents(photos[:2], [0, 1])
    assert backend.modified_generator == [] and "mse_tuned" not in backend.init_report
    for k, v in backend.G.synthesis.state_dict().items():
        assert torch.equal(v, before[k])


def test_lpips_absent_falls_back_to_mse_with_a_note(stylegan_cfg, photos, monkeypatch, caplog) -> None:
    monkeypatch.setattr(losses, "backbone_cached", lambda net: False)
    losses._lpips_model.cache_clear()
    cfg = replace(stylegan_cfg, lpips_weight=1.0, invert_steps=3, tune_steps=0)
    with caplog.at_level(logging.WARNING, logger="hf_srdistill.latent.losses"):
        backend = build_backend(cfg, photos.shape[-1])
        backend.init_latents(photos[:1], [0])
    losses._lpips_model.cache_clear()
    assert backend.init_report["lpips_used"] is False
    assert any("LPIPS(vgg) unavailable" in rec.message and "MSE only" in rec.message for rec in caplog.records)


def test_class_conditional_generator_gets_the_configured_class(stylegan_cfg, tmp_path, size) -> None:
    pkl = write_tiny_pickle(tmp_path / "cond.pkl", c_dim=4, img_resolution=16)
    cfg = replace(stylegan_cfg, generator=str(pkl), class_index=2)
    backend = build_backend(cfg, size)
    assert torch.equal(backend.c, torch.tensor([[0.0, 0.0, 1.0, 0.0]]))
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(2))
    c = F.one_hot(torch.full((3,), 2), 4).float()
    torch.testing.assert_close(backend.mapping(z), backend.G.mapping(z, c))
    assert not torch.allclose(backend.mapping(z), backend.G.mapping(z, F.one_hot(torch.zeros(3).long(), 4).float()))
    with pytest.raises(ValueError, match="class_index=4 but the generator has 4 classes"):
        build_backend(replace(cfg, class_index=4), size)
