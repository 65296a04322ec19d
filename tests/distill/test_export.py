"""The set folder: load_dataset round trip, LR columns, size report, card header, bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from hf_srdistill.config import DistillJobConfig
from hf_srdistill.data import imresize_uint8
from hf_srdistill.distill.export import size_report, write_image_set

NAMES = ["astronaut", "chelsea", "coffee"]


def _write(tmp_path, size=32, n_per=2, real=None):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3 * n_per, 3, size, size, generator=g)
    labels = [c for c in range(3) for _ in range(n_per)]
    ipc = [i for _ in range(3) for i in range(n_per)]
    folder = write_image_set(tmp_path / "set", images, labels, NAMES, ipc, DistillJobConfig(),
                             extra={"kind": "test"}, real_sizes=real)
    return folder, images, labels, ipc


def test_load_dataset_round_trip_is_lossless_after_uint8(tmp_path):
    from datasets import load_dataset

    folder, images, labels, ipc = _write(tmp_path)
    ds = load_dataset(str(folder), split="train")
    assert ds.features["label"].names == NAMES
    assert ds["label"] == labels and ds["ipc_index"] == ipc
    # PNG is lossless once quantised: round half up, computed here in numpy float32
    want = np.floor(images.permute(0, 2, 3, 1).numpy() * np.float32(255) + np.float32(0.5)).astype(np.uint8)
    for i, row in enumerate(ds):
        hr = np.asarray(row["hr"])
        assert hr.dtype == np.uint8 and hr.shape == (32, 32, 3)
        assert np.array_equal(hr, want[i])
        # LR columns are the project's MATLAB bicubic of the stored HR
        assert np.array_equal(np.asarray(row["lr_x2"]), imresize_uint8(hr, 0.5))
        assert np.array_equal(np.asarray(row["lr_x4"]), imresize_uint8(hr, 0.25))
    for name in ("README.md", "config.yaml", "provenance.json", "size_report.json"):
        assert (folder / name).is_file()


def test_lr_column_is_omitted_where_the_side_does_not_divide(tmp_path):
    from datasets import load_dataset

    folder, *_ = _write(tmp_path, size=30)
    ds = load_dataset(str(folder), split="train")
    assert "lr_x2" in ds.column_names and "lr_x4" not in ds.column_names


def test_card_header_declares_the_data_files_and_features(tmp_path):
    folder, *_ = _write(tmp_path)
    text = (folder / "README.md").read_text()
    header = yaml.safe_load(text.split("---")[1])
    assert header["configs"][0]["data_files"][0] == {"split": "train", "path": "data/*.parquet"}
    assert header["dataset_info"]["splits"][0]["num_examples"] == 6
    names = [f["name"] for f in header["dataset_info"]["features"]]
    assert names == ["hr", "label", "ipc_index", "lr_x2", "lr_x4"]


def test_the_card_written_with_the_set_is_the_full_card(tmp_path):
    """Not a stub: the card push-dataset renders, less the Hub id (no Hub URL is claimed)."""
    from datasets import load_dataset
    from huggingface_hub import DatasetCard

    from hf_srdistill.data.set_folder import verify_set_folder
    from hf_srdistill.hub.cards import dataset_card

    folder, *_ = _write(tmp_path)
    card = DatasetCard.load(folder / "README.md")
    meta = card.data
    assert meta.license == "other" and meta.license_name == "source-terms"  # no source recorded here
    assert "licence was not recorded" in card.text
    assert meta.task_categories == ["image-to-image"] and meta.task_ids == ["super-resolution"]
    assert meta.size_categories == ["n<1K"] and "IPC 1" in meta.pretty_name
    assert "## How it was made" in card.text and "`test` baseline" in card.text
    assert "huggingface.co" not in card.text and f'load_dataset("{folder}"' in card.text
    assert "SR results" not in card.text  # no results.json yet
    assert str(card) == str(dataset_card(folder))  # exactly what a re-render gives
    # the card is not part of the set: the manifest does not list it, and the set verifies
    assert "README.md" not in verify_set_folder(folder)["files"]
    assert len(load_dataset(str(folder), split="train")) == 6


def test_the_card_reports_results_when_the_folder_has_them(tmp_path):
    import json

    from hf_srdistill.distill.export import write_card

    folder, *_ = _write(tmp_path)
    (folder / "results.json").write_text(json.dumps({"scale": 2, "results": {
        "srcnn on distilled": {"mini": {"psnr": 31.5, "ssim": 0.9012, "lpips": None}}}}))
    text = write_card(folder).read_text()
    assert "## SR results of models trained on this set" in text
    assert "| srcnn on distilled | mini (scikit-image photos) ×2 | 31.50 | 0.9012 | absent |" in text
    # rewriting the set keeps results.json, so the card written with it has them too
    folder, *_ = _write(tmp_path)
    assert "| srcnn on distilled |" in (folder / "README.md").read_text()


def test_a_set_whose_record_cannot_be_carded_still_gets_the_loader_card(tmp_path, monkeypatch):
    import importlib

    dc = importlib.import_module("hf_srdistill.hub.dataset_card")  # the package exports a function of that name

    def broken(*args, **kwargs):
        raise ValueError("provenance record lacks config")

    monkeypatch.setattr(dc, "dataset_card", broken)
    folder, *_ = _write(tmp_path)
    header = yaml.safe_load((folder / "README.md").read_text().split("---")[1])
    assert header["configs"][0]["data_files"][0]["path"] == "data/train-*.parquet"


def test_size_report_counts_the_stored_png_bytes(tmp_path):
    import pyarrow.parquet as pq

    real = {"subimages": {"images": 100, "pixels": 100 * 64 * 64, "png_bytes": 10**6},
            "originals": {"images": 3, "pixels": 3 * 512 * 512, "png_bytes": 2 * 10**6}}
    folder, *_ = _write(tmp_path, real=real)
    import json

    report = json.loads((folder / "size_report.json").read_text())
    table = pq.read_table(folder / "data" / "train-00000-of-00001.parquet")
    stored = sum(len(v["bytes"]) for v in table.column("hr").to_pylist())
    assert report["synthetic"] == {"images": 6, "pixels": 6 * 32 * 32, "png_bytes": stored}
    assert report["reduction_vs_subimages_pct"]["images"] == pytest.approx(94.0)
    assert report["reduction_vs_originals_pct"]["pixels"] == pytest.approx(100 * (1 - 6144 / 786432))
    assert report["reduction_vs_originals_pct"]["png_bytes"] == pytest.approx(100 * (1 - stored / 2e6))
    # the bytes really are PNGs of the pixels
    first = table.column("hr").to_pylist()[0]["bytes"]
    assert Image.open(io.BytesIO(first)).format == "PNG"


def test_size_report_without_real_data():
    assert size_report(2, 16, 100, None) == {"synthetic": {"images": 2, "pixels": 32, "png_bytes": 100}}


@pytest.mark.parametrize("bad,match", [
    (dict(images=torch.full((2, 3, 8, 8), float("nan"))), "NaN"),
    (dict(labels=[0, 5]), "labels must lie"),
    (dict(names=["a", "a"]), "unique"),
    (dict(ipc=[0]), "2 images but"),
])
def test_bad_input_is_refused(tmp_path, bad, match):
    args = dict(images=torch.rand(2, 3, 8, 8), labels=[0, 1], names=["a", "b"], ipc=[0, 0])
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        write_image_set(tmp_path / "x", args["images"], args["labels"], args["names"], args["ipc"], DistillJobConfig())
    assert not (tmp_path / "x" / "data").exists()
