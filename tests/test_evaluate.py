import json

import numpy as np
import pytest
import torch

from hf_srdistill.data import imresize, load_test_set
from hf_srdistill.data.images import mod_crop, to_tensor, to_uint8
from hf_srdistill.evaluate import (bicubic_upscaler, comparison_grid, evaluate_many, evaluate_upscaler, make_lr,
                                   write_results)
from hf_srdistill.metrics import psnr


@pytest.fixture(scope="module")
def photos():
    return [(n, img[:120, :100]) for n, img in load_test_set("mini")[:2]]


def test_lr_is_quantised_like_a_saved_png(photos):
    hr = mod_crop(photos[0][1], 2)
    lr = make_lr(hr, 2)
    assert lr.shape == (1, 3, hr.shape[0] // 2, hr.shape[1] // 2)
    assert torch.equal(lr * 255, torch.round(lr * 255))


def test_bicubic_row_equals_a_direct_computation(photos):
    got = evaluate_upscaler(bicubic_upscaler(2), photos, scale=2)
    direct = []
    for _, hr in photos:
        hr = mod_crop(hr, 2)
        lr = torch.round(imresize(to_tensor(hr)[None], 0.5).clamp(0, 1) * 255) / 255
        direct.append(psnr(to_uint8(imresize(lr, 2)[0].clamp(0, 1)), hr, crop_border=2))
    assert got["psnr"] == pytest.approx(np.mean(direct), abs=1e-9)
    assert got["lpips"] is None  # no LPIPS metric given


def test_oracle_beats_bicubic_and_table_lists_every_method(tmp_path, photos):
    hr_by_shape = {mod_crop(hr, 2).shape[:2]: mod_crop(hr, 2) for _, hr in photos}

    def oracle(lr):  # returns the true HR: must score far above bicubic
        h, w = lr.shape[-2] * 2, lr.shape[-1] * 2
        return to_tensor(hr_by_shape[(h, w)])[None]

    results = {"bicubic": {"t": evaluate_upscaler(bicubic_upscaler(2), photos, 2)},
               "oracle": {"t": evaluate_upscaler(oracle, photos, 2)}}
    assert results["oracle"]["t"]["psnr"] == float("inf")
    table = write_results(tmp_path, results, 2, title="x2")
    assert "| bicubic |" in table and "| oracle |" in table and "absent" in table
    assert json.loads((tmp_path / "results.json").read_text())["scale"] == 2
    grid = comparison_grid({"oracle": oracle}, photos[1][1], 2, crop=40)  # both photos share a shape: the oracle knows [1]
    assert grid.size == (40 * 3, 40 + grid.band) and grid.band > 0  # HR | bicubic | oracle, labels under
    assert grid.scores[2] == (float("inf"), pytest.approx(1.0)) and "PSNR ∞ dB" in grid.labels[2].replace("\n", " ")


def test_grid_labels_every_tile_with_its_full_name_and_crop_scores(tmp_path, photos):
    from PIL import Image

    from hf_srdistill.evaluate import crop_scores

    long_name = "srcnn on pixel_pretrained_ref_ipc1_at_x4"
    ups = {"srcnn on distilled": bicubic_upscaler(2), long_name: bicubic_upscaler(2), "edsr on full": None}
    grid = comparison_grid(ups, photos[0][1], 2, crop=96)
    assert grid.names == ["HR", "bicubic", "srcnn on distilled", long_name, "edsr on full"]
    assert grid.labels[0] == "HR" and grid.scores[0] is None
    # bicubic's numbers are the project's metrics (Y, border = scale) on exactly the drawn crop
    hr_tile, bic_tile = grid.tiles[:, :96], grid.tiles[:, 96:192]
    p, s = crop_scores(bic_tile, hr_tile, 2)
    assert grid.scores[1] == (p, s) and p == psnr(bic_tile, hr_tile, crop_border=2, test_y_channel=True)
    assert grid.labels[1].startswith("bicubic\n") and f"PSNR {p:.2f} dB" in grid.labels[1] and f"SSIM {s:.4f}" in grid.labels[1]
    # the long name is wrapped, not cut: its lines (before the two metric lines) give it back in full
    lines = grid.labels[3].split("\n")
    assert len(lines) > 3 and "".join(lines[:-2]).replace(" ", "") == long_name.replace(" ", "")
    assert grid.labels[4] == "edsr on full\nno model" and (grid.tiles[:, 4 * 96:] == 128).all()

    img = np.asarray(grid.image)
    assert img.shape == (96 + grid.band, 5 * 96, 3)
    assert np.array_equal(img[:96], grid.tiles)  # the crops are untouched; text only in the band
    import dataclasses

    blank = np.asarray(dataclasses.replace(grid, labels=[""] * 5).image)
    assert np.array_equal(blank[:96], img[:96]) and (blank[96:] == 255).all()
    for i in range(5):  # the labelled band differs from the unlabelled one under every tile
        assert (img[96:, 96 * i:96 * (i + 1)] != blank[96:, 96 * i:96 * (i + 1)]).any()

    png, pdf = grid.save(tmp_path / "grid.png")
    assert pdf == tmp_path / "grid.pdf" and pdf.read_bytes().startswith(b"%PDF") and b"/Subtype /Image" in pdf.read_bytes()
    with Image.open(png) as saved:
        assert saved.size == grid.size and np.array_equal(np.asarray(saved.convert("RGB")), img)
        assert int(saved.text["label_band"]) == grid.band and int(saved.text["tile"]) == 96
        assert json.loads(saved.text["labels"]) == grid.labels


def test_unknown_test_set_is_a_clear_error():
    with pytest.raises(Exception, match="set7|unknown|Unknown"):
        evaluate_many({}, ["set7"], 2, use_lpips=False)


def test_evaluate_command_writes_table_provenance_and_model_card(tmp_path):
    from huggingface_hub import ModelCard

    from hf_srdistill.config import EvalConfig, EvalJobConfig, ModelConfig
    from hf_srdistill.evaluate import evaluate
    from hf_srdistill.models import build_model
    from hf_srdistill.provenance import collect_provenance, write_provenance

    model_dir = tmp_path / "model"
    build_model(ModelConfig(name="srcnn", num_features=4)).save_pretrained(model_dir)
    write_provenance(model_dir, collect_provenance(ModelConfig(name="srcnn", num_features=4)))
    cfg = EvalJobConfig(model_path=str(model_dir), eval=EvalConfig(output_dir=str(tmp_path / "eval"), lpips=False))
    results = evaluate(cfg)
    assert list(results) == ["bicubic", "model"]
    for name in ("table.md", "results.json", "grid.png", "provenance.json"):
        assert (tmp_path / "eval" / name).is_file(), name
    saved = json.loads((model_dir / "eval_results.json").read_text())
    assert saved["results"]["mini"]["psnr"] == pytest.approx(results["model"]["mini"]["psnr"])
    card = ModelCard.load(model_dir / "README.md")
    assert card.data.eval_results, "model card should list the measured results"
