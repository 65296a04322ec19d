"""The coreset keeps the highest-loss crops of each class and writes a loadable set."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from hf_srdistill.config import DataConfig, DistillConfig, DistillJobConfig, ModelConfig
from hf_srdistill.data import imresize
from hf_srdistill.distill.coreset import (crop_set_layout, make_coreset_set, select_hardest, select_spread,
                                          tile_mosaic)
from hf_srdistill.models import build_model

SIZE = 32  # crop side; the photos below are multiples of it, so the grid is plain tiling


@pytest.fixture()
def job(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    photos = {"a_astro": skimage.data.astronaut()[100:196, 150:278], "b_cat": skimage.data.chelsea()[60:124, 100:260]}
    for name, img in photos.items():
        Image.fromarray(np.ascontiguousarray(img)).save(src / f"{name}.png")
    ref = ModelConfig(name="srcnn", scale=2, num_features=4)
    cfg = DistillJobConfig(data=DataConfig(source="folder", path=str(src), crop_size=SIZE, step=16,
                                           cache_dir=str(tmp_path / "cache")),
                           distill=DistillConfig(ipc=2, image_size=SIZE, reference=ref, output_dir=str(tmp_path / "set")))
    torch.manual_seed(3)
    build_model(ref).save_pretrained(tmp_path / "ref")
    return cfg, photos, tmp_path / "ref"


def _hand_ranking(model, photo, outlier_pct, k, size=SIZE):
    """Loss of every tile computed one at a time, sorted by hand."""
    scored = []
    for top in range(0, photo.shape[0] - size + 1, size):
        for left in range(0, photo.shape[1] - size + 1, size):
            crop = photo[top:top + size, left:left + size]
            hr = torch.tensor(crop, dtype=torch.float64).permute(2, 0, 1)[None] / 255
            with torch.no_grad():
                sr = model(imresize(hr.float(), 0.5)).double()
            scored.append((float(((sr - hr) ** 2).mean()), top, left, crop))
    scored.sort(key=lambda s: -s[0])
    drop = int(len(scored) * outlier_pct / 100)
    return scored[drop:drop + k]


@pytest.mark.parametrize("outlier_pct", [0.0, 10.0])
def test_coreset_keeps_the_hardest_crops(job, outlier_pct):
    from datasets import load_dataset

    from hf_srdistill.models import load_model

    cfg, photos, ref = job
    folder = make_coreset_set(cfg, reference=str(ref), outlier_pct=outlier_pct)
    ds = load_dataset(str(folder), split="train")
    model = load_model(ref).eval()
    names = ds.features["label"].names
    assert names == sorted(photos)
    for c, name in enumerate(names):
        expect = _hand_ranking(model, photos[name], outlier_pct, k=2)
        rows = [r for r in ds if r["label"] == c]
        assert [r["ipc_index"] for r in rows] == [0, 1]
        for row, (_, _, _, crop) in zip(rows, expect):
            np.testing.assert_array_equal(np.asarray(row["hr"]), crop)
    prov = json.loads((folder / "provenance.json").read_text())
    text = json.dumps(prov)
    assert '"pretrained"' in text and str(ref) in text


def _quads(img, half):
    return [img[:half, :half], img[:half, half:], img[half:, :half], img[half:, half:]]


def test_mosaic_without_spread_tiles_the_hardest_smaller_crops_hardest_first(job):
    from hf_srdistill.data.set_folder import read_labelled_set
    from hf_srdistill.models import load_model

    cfg, photos, ref = job
    folder = make_coreset_set(cfg, reference=str(ref), tiles=2, min_distance=0)
    rows = read_labelled_set(folder)
    model = load_model(ref).eval()
    half = SIZE // 2
    for name, photo in photos.items():
        expect = [crop for *_, crop in _hand_ranking(model, photo, 0.0, k=8, size=half)]
        for j in range(2):  # image j: crops 4j..4j+3, row-major
            img = rows[name][j]
            assert img.shape == (SIZE, SIZE, 3)
            for got, want in zip(_quads(img, half), expect[4 * j:4 * j + 4]):
                np.testing.assert_array_equal(got, want)
    prov = json.loads((folder / "provenance.json").read_text())
    text = json.dumps(prov)
    assert '"mosaic"' in text and '"tiles": 2' in text


def test_mosaic_spreads_its_picks_by_default(job):
    from hf_srdistill.data.set_folder import read_labelled_set

    cfg, photos, ref = job
    cfg = dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, ipc=1))
    folder = make_coreset_set(cfg, reference=str(ref), tiles=2)
    rows, half = read_labelled_set(folder), SIZE // 2
    extra = json.loads((folder / "provenance.json").read_text())["extra"]
    assert extra["min_distance"] == SIZE  # the image side
    for name, photo in photos.items():
        picks = [(p["top"], p["left"]) for p in extra["selected"] if p["class"] == name]
        assert len(picks) == 4
        for k, (y, x) in enumerate(picks):  # the tiles are the photo's pixels at the recorded places
            np.testing.assert_array_equal(_quads(rows[name][0], half)[k], photo[y:y + half, x:x + half])
        # 4 picks 32 px apart fit in both photos, so no fill-up was needed
        assert all(max(abs(a[0] - b[0]), abs(a[1] - b[1])) >= SIZE for i, a in enumerate(picks) for b in picks[:i])


def test_mixed_mosaic_starts_with_the_downscaled_photo(job):
    from hf_srdistill.data.set_folder import read_labelled_set
    from hf_srdistill.distill.synthetic import INIT_STREAM, class_generator, downscaled_images

    cfg, photos, ref = job
    folder = make_coreset_set(cfg, reference=str(ref), tiles=2, thumbnail=True)
    rows, half = read_labelled_set(folder), SIZE // 2
    extra = json.loads((folder / "provenance.json").read_text())["extra"]
    assert extra["kind"] == "mixed" and extra["thumbnail"] is True
    for c, (name, photo) in enumerate(sorted(photos.items())):
        thumbs = downscaled_images(photo, 2, half, class_generator(cfg.distill.seed, c, INIT_STREAM))
        crops = [(p["image"], p["tile"], p.get("top"), p.get("left")) for p in extra["selected"] if p["class"] == name]
        assert len(crops) == 2 * 4 and sum(t == 0 for _, t, _, _ in crops) == 2
        for j, tile, y, x in crops:
            got = _quads(rows[name][j], half)[tile]
            if tile == 0:  # the downscaled init's image j at tile size (uint8-rounded)
                want = thumbs[j].clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).numpy()
                np.testing.assert_array_equal(got, want)
            else:
                np.testing.assert_array_equal(got, photo[y:y + half, x:x + half])
    with pytest.raises(ValueError, match="tiles >= 2"):
        make_coreset_set(cfg, reference=str(ref), thumbnail=True)


def test_crop_set_layout_per_kind():
    assert crop_set_layout("coreset", 3) == {"tiles": 1, "thumbnail": False}
    assert crop_set_layout("mosaic", 3) == {"tiles": 3, "thumbnail": False}
    assert crop_set_layout("mixed", 2) == {"tiles": 2, "thumbnail": True}
    with pytest.raises(ValueError, match="unknown crop set 'random'"):
        crop_set_layout("random", 2)


def test_select_spread_by_hand():
    losses = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    positions = [(0, 0), (0, 10), (0, 40), (50, 0), (5, 5)]
    assert select_spread(losses, positions, 3, 30) == [0, 2, 3]  # 1 and 4 are within 30 px of 0
    assert select_spread(losses, positions, 3, 0) == select_hardest(losses, 3) == [0, 1, 2]
    assert select_spread(losses, positions, 3, 100) == [0, 1, 2]  # only 0 qualifies: filled up by loss
    assert select_spread(losses, positions, 2, 30, outlier_pct=20) == [1, 2]  # 0 dropped as the outlier


def test_tile_mosaic_layout_and_errors(job):
    tiles = np.arange(4 * 2 * 2 * 3, dtype=np.uint8).reshape(4, 2, 2, 3)
    out = tile_mosaic(tiles, 2)
    np.testing.assert_array_equal(out[2:, :2], tiles[2])  # crop 2 at row 1, column 0
    np.testing.assert_array_equal(out[:2, 2:], tiles[1])
    with pytest.raises(ValueError, match="needs 9 crops, got 4"):
        tile_mosaic(tiles, 3)
    cfg, _, ref = job
    with pytest.raises(ValueError, match="divisor of distill.image_size=32, got 3"):
        make_coreset_set(cfg, reference=str(ref), tiles=3)


def test_select_hardest_by_hand():
    losses = np.array([0.1, 0.9, 0.5, 0.9, 0.3, 0.7, 0.2, 0.05, 0.6, 0.4])
    assert select_hardest(losses, 3) == [1, 3, 5]  # tie 0.9: grid order
    assert select_hardest(losses, 3, outlier_pct=20) == [5, 8, 2]  # floor(2) dropped: both 0.9s
    assert select_hardest(losses, 9, outlier_pct=50) == [3, 5, 8, 2, 9, 4, 6, 0, 7]  # capped: 1 dropped
    with pytest.raises(ValueError, match="needs 11"):
        select_hardest(losses, 11)


def test_without_reference_a_scorer_is_trained_and_named(job, capsys):
    cfg, _, _ = job
    folder = make_coreset_set(cfg, scorer_iterations=2)
    assert "training a srcnn x2 for 2 iterations" in capsys.readouterr().out
    text = (folder / "provenance.json").read_text()
    assert "trained on the data" in text and not (folder / "scorer").exists()


def test_baseline_command_writes_each_kind(job, tmp_path, capsys):
    from hf_srdistill.cli import main
    from hf_srdistill.data.set_folder import read_labelled_set

    cfg, photos, _ = job
    common = ["--data.source=folder", f"--data.path={cfg.data.path}", f"--data.crop_size={SIZE}", "--data.step=16",
              f"--data.cache_dir={cfg.data.cache_dir}", "--distill.ipc=2", f"--distill.image_size={SIZE}",
              "--distill.reference.num_features=4"]
    for kind in ("random", "coreset", "mosaic", "mixed"):
        out = tmp_path / kind
        assert main(["baseline", f"--kind={kind}", "--scorer_iterations=2", f"--distill.output_dir={out}",
                     *common]) == 0
        rows = read_labelled_set(out)
        assert sorted(rows) == sorted(photos) and all(sorted(r) == [0, 1] for r in rows.values())
        assert all(img.shape == (SIZE, SIZE, 3) for r in rows.values() for img in r.values())
        assert str(out) in capsys.readouterr().out  # the command says where its set went
    assert main(["baseline", "--kind=best", *common]) == 2
