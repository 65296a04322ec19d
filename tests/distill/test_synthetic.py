"""Initial synthetic images: hand-built expectations, per-class streams, clear errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hf_srdistill.configio import ConfigError
from hf_srdistill.data import imresize
from hf_srdistill.distill.synthetic import downscaled_images, init_images, resize_square


@pytest.mark.parametrize("side,size", [(1411, 96), (451, 96), (300, 32), (1000, 192), (64, 64), (97, 96)])
def test_resize_square_gives_exactly_the_size(side, size):
    out = resize_square(torch.rand(3, side, side, dtype=torch.float64), size)
    assert out.shape == (3, size, size)


def test_resize_square_of_a_constant_image_is_constant():
    out = resize_square(torch.full((3, 451, 451), 0.25, dtype=torch.float64), 96)
    assert torch.allclose(out, torch.full_like(out, 0.25))


def test_downscaled_init_is_the_centre_square_bicubic_downscaled(store, tiny_job):
    cfg = dataclasses.replace(tiny_job().distill, ipc=1)
    photo = store.source_image(1)  # chelsea, 300x451: the centre square drops 75/76 columns
    h, w = photo.shape[:2]
    assert h < w
    left = (w - h) // 2
    square = torch.from_numpy(np.ascontiguousarray(photo[:, left:left + h].transpose(2, 0, 1))).float() / 255
    want = imresize(square, cfg.image_size / h).clamp(0, 1)
    got = init_images(cfg, store, [1])
    assert got.shape == (1, 3, cfg.image_size, cfg.image_size)
    assert torch.allclose(got[0], want, atol=1e-6)


def test_downscaled_ipc_images_differ_and_first_is_the_whole_square():
    photo = (np.random.default_rng(0).random((120, 150, 3)) * 255).astype(np.uint8)
    out = downscaled_images(photo, 4, 32, torch.Generator().manual_seed(0))
    assert out.shape == (4, 3, 32, 32)
    for i in range(1, 4):
        assert not torch.equal(out[0], out[i])
    with pytest.raises(ValueError, match="smaller than the synthetic size"):
        downscaled_images(photo, 1, 121, torch.Generator())


@pytest.mark.parametrize("init", ["noise", "downscaled", "real"])
def test_a_class_gets_the_same_start_alone_or_with_others(store, tiny_job, init):
    cfg = dataclasses.replace(tiny_job().distill, init=init, ipc=2)
    all3 = init_images(cfg, store, [0, 1, 2])
    assert all3.shape == (6, 3, 32, 32)
    assert 0 <= float(all3.min()) and float(all3.max()) <= 1
    assert torch.equal(init_images(cfg, store, [2]), all3[4:6])
    assert not torch.equal(all3[0:2], all3[2:4])
    other_seed = init_images(dataclasses.replace(cfg, seed=1), store, [2])
    assert not torch.equal(other_seed, all3[4:6])  # downscaled: image 1's random window moves


def test_latent_init_is_a_clear_error_until_a_backend_is_wired(store, tiny_job):
    cfg = dataclasses.replace(tiny_job().distill, init="latent")
    with pytest.raises(ConfigError, match="latent"):
        init_images(cfg, store, [0])


def test_init_from_a_set_folder_matches_classes_by_name(store, tiny_job, tmp_path):
    from hf_srdistill.distill import make_baseline_set

    folder = tmp_path / "downscaled"
    make_baseline_set("downscaled", tiny_job(output_dir=str(folder)))
    cfg = tiny_job(init="set", init_set=str(folder)).distill
    start = init_images(dataclasses.replace(cfg, init="downscaled", init_set=None), store, [0, 1, 2])
    got = init_images(cfg, store, [2, 0])  # any subset, any order: rows follow the class names
    assert got.shape == (4, 3, 32, 32)
    want = torch.cat([start[4:6], start[0:2]])
    assert torch.equal(got, (want * 255).round() / 255)  # the set stores uint8 pixels

    with pytest.raises(ConfigError, match=r"class 'astronaut' has ipc indices \[0, 1\], this run needs 0..2"):
        init_images(dataclasses.replace(cfg, ipc=3), store, [0])
    with pytest.raises(ConfigError, match="images are 32x32 px, this run needs distill.image_size=16"):
        init_images(dataclasses.replace(cfg, image_size=16), store, [0])


def test_init_set_needs_its_folder_and_a_complete_set(tiny_job, store, tmp_path):
    from hf_srdistill.data.set_folder import IncompleteSetError

    with pytest.raises(ValueError, match="init=set and distill.init_set go together"):
        tiny_job(init="set")
    with pytest.raises(ValueError, match="init=set and distill.init_set go together"):
        tiny_job(init_set=str(tmp_path))
    with pytest.raises(IncompleteSetError, match="no manifest.json"):
        init_images(tiny_job(init="set", init_set=str(tmp_path)).distill, store, [0])
