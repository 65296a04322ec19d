"""Representative crops: histograms by hand, herding by hand, the typical crop of a made photo."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from hf_srdistill.distill.representative import LOSS_EDGES, LUMA_BINS, crop_descriptors, herd


def test_descriptors_of_flat_and_noisy_crops():
    rng = np.random.default_rng(0)
    flat = np.full((1, 32, 32, 3), 128, np.uint8)
    noise = rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8)
    luma, x2, x4 = crop_descriptors(np.concatenate([flat, noise]))
    assert luma.shape == (2, LUMA_BINS) and x2.shape == x4.shape == (2, len(LOSS_EDGES) - 1)
    assert np.allclose(luma.sum(1), 1) and np.allclose(x4.sum(1), 1)
    # grey 128: Y = 16 + 219 * 128 / 255 = 125.9 of [16, 235], bin floor(109.9 / 219 * 32) = 16
    assert luma[0, 16] == 1
    assert x2[0, 0] == 1 and x4[0, 0] == 1  # bicubic loses nothing of a flat crop
    assert x4[1, 0] < 0.05 and x4[1, -3:].sum() > 0.5  # and most of white noise, more at x4 than x2
    assert x4[1, -3:].sum() > x2[1, -3:].sum()
    with pytest.raises(ValueError, match="multiple of every scale"):
        crop_descriptors(np.zeros((1, 30, 30, 3), np.uint8))


def test_herding_by_hand():
    d = [np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])]  # target (2/3, 1/3)
    chosen, gaps = herd(d, 2)
    # first: [1, 0] (CDF gap 1/3 over 2 bins); then [0, 1] makes the pool (1/2, 1/2): gap 1/6 / 2
    assert chosen == [0, 1] and gaps == pytest.approx([1 / 6, 1 / 12])
    assert herd(d, 3)[0] == [0, 1, 2]
    with pytest.raises(ValueError, match="3 candidate crops but the set needs 4"):
        herd(d, 4)


def test_the_typical_crop_of_a_half_flat_photo_straddles_the_halves():
    from hf_srdistill.distill.coreset import class_crops

    rng = np.random.default_rng(1)
    photo = np.full((64, 256, 3), 100, np.uint8)
    photo[:, 128:] = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
    positions, crops = class_crops(photo, 64, 16)
    (pick,), _ = herd(crop_descriptors(crops), 1)
    assert positions[pick] == (0, 96)  # half flat, half noise: the photo's own mix


def test_representative_set_is_real_crops_with_their_positions(tiny_job, store, tmp_path):
    from hf_srdistill.cli import main
    from hf_srdistill.data.set_folder import read_labelled_set
    from hf_srdistill.distill.representative import make_representative_set

    cfg = tiny_job(ipc=2)
    folder = make_representative_set(cfg, folder=tmp_path / "rep", store=store)
    rows = read_labelled_set(folder)
    extra = json.loads((folder / "provenance.json").read_text())["extra"]
    assert extra["kind"] == "representative" and extra["step"] == 16 and len(extra["selected"]) == 6
    for pick in extra["selected"]:
        photo = store.source_image(store.class_names.index(pick["class"]))
        t, left = pick["top"], pick["left"]
        np.testing.assert_array_equal(rows[pick["class"]][pick["image"]], photo[t:t + 32, left:left + 32])
    with pytest.raises(ValueError, match="grouping=class"):
        make_representative_set(dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, grouping="global",
                                                                                     num_images=4)), store=store)
    d = cfg.data
    assert main(["baseline", "--kind=representative", "--data.max_images=3", f"--data.crop_size={d.crop_size}",
                 f"--data.step={d.step}", f"--data.cache_dir={d.cache_dir}", "--distill.ipc=2",
                 "--distill.image_size=32", f"--distill.output_dir={tmp_path / 'cli'}"]) == 0
    cli = read_labelled_set(tmp_path / "cli")  # the command writes the same crops
    assert sorted(cli) == sorted(rows) and all(np.array_equal(cli[k][j], rows[k][j]) for k in rows for j in (0, 1))
