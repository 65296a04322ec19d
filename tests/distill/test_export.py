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
    assert header["configs"][0]["data_files"][0] == {"split": "train", "path": "data/train-*.parquet"}
    assert header["dataset_info"]["splits"][0]["num_examples"] == 6
    names = [f["name"] for f in header["dataset_info"]["features"]]
    assert names == ["hr", "label", "ipc_index", "lr_x2", "lr_x4"]


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
