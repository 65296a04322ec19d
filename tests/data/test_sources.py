"""Sources: folder, local Hub-format datasets, DIV2K archives, offline errors, skips."""

from __future__ import annotations

import io
import logging
import zipfile

import datasets
import numpy as np
import pytest
from PIL import Image

from hf_srdistill.config import DataConfig
from hf_srdistill.data.errors import DataNotFoundError
from hf_srdistill.data.sources import SourceReport, iter_source_images, source_fingerprint


@pytest.fixture
def offline(monkeypatch):
    """The library's own offline mode, so remote paths fail fast and for real."""
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def crops(astronaut, camera):
    return {"a": astronaut[:24, :32], "b": astronaut[100:130, 50:70], "g": camera[:20, :22]}


def test_mini_source():
    out = list(iter_source_images(DataConfig(max_images=2)))
    assert [n for n, _ in out] == ["astronaut", "chelsea"]
    test = list(iter_source_images(DataConfig(split="test", max_images=1)))
    assert test[0][0] == "motorcycle_left"


def test_folder_source_with_bad_files(tmp_path, crops, caplog):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    Image.fromarray(crops["a"]).save(tmp_path / "a.png")
    Image.fromarray(crops["b"]).save(tmp_path / "sub" / "b.png")
    Image.fromarray(crops["g"]).save(tmp_path / "g.png")
    Image.fromarray(crops["a"]).save(tmp_path / ".hidden" / "x.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "notes.txt").write_text("not an image")
    report = SourceReport()
    with caplog.at_level(logging.INFO):
        out = dict(iter_source_images(DataConfig(source="folder", path=str(tmp_path)), report))
    assert list(out) == ["a", "g", "sub/b"]
    np.testing.assert_array_equal(out["sub/b"], crops["b"])
    np.testing.assert_array_equal(out["g"], np.stack([crops["g"]] * 3, -1))
    assert report.loaded == 3 and [n for n, _ in report.skipped] == ["broken"]
    assert "skipping broken" in caplog.text and "3 images loaded, 1 skipped" in caplog.text


def test_folder_missing_or_empty(tmp_path):
    with pytest.raises(DataNotFoundError, match="nowhere"):
        list(iter_source_images(DataConfig(source="folder", path=str(tmp_path / "nowhere"))))
    with pytest.raises(DataNotFoundError, match="no .png"):
        list(iter_source_images(DataConfig(source="folder", path=str(tmp_path))))


def _image_dataset(crops, corrupt=True) -> datasets.Dataset:
    rows = [{"bytes": _png(crops["a"]), "path": "0001.png"}, {"bytes": _png(crops["b"]), "path": "0002.png"}]
    if corrupt:
        rows.append({"bytes": b"garbage" * 9, "path": "0003.png"})
    return datasets.Dataset.from_dict({"image": rows, "idx": list(range(len(rows)))}).cast_column(
        "image", datasets.Image())


@pytest.mark.parametrize("streaming", [True, False])
def test_hub_local_parquet(tmp_path, crops, streaming):
    _image_dataset(crops).to_parquet(tmp_path / "train.parquet")
    report = SourceReport()
    cfg = DataConfig(source="hub", path=str(tmp_path / "train.parquet"), streaming=streaming)
    out = dict(iter_source_images(cfg, report))
    assert list(out) == ["0001", "0002"] and report.skipped[0][0] == "0003"
    np.testing.assert_array_equal(out["0002"], crops["b"])


def test_hub_saved_and_folder_layouts(tmp_path, crops):
    ds = _image_dataset(crops, corrupt=False)
    ds.save_to_disk(str(tmp_path / "saved"))
    out = list(iter_source_images(DataConfig(source="hub", path=str(tmp_path / "saved"))))
    assert [n for n, _ in out] == ["0001", "0002"]
    (tmp_path / "repo" / "data").mkdir(parents=True)  # the distilled-set folder layout
    ds.rename_column("image", "hr").to_parquet(tmp_path / "repo" / "data" / "train-00000-of-00001.parquet")
    out = list(iter_source_images(DataConfig(source="hub", path=str(tmp_path / "repo"), image_column="hr")))
    np.testing.assert_array_equal(out[0][1], crops["a"])
    with pytest.raises(ValueError, match="columns"):
        list(iter_source_images(DataConfig(source="hub", path=str(tmp_path / "repo"))))


def test_hub_absent(tmp_path, offline):
    with pytest.raises(DataNotFoundError, match="someone/hr-photos.*HF_DATASETS_OFFLINE"):
        list(iter_source_images(DataConfig(source="hub", hub_id="someone/hr-photos")))
    with pytest.raises(DataNotFoundError, match="no local dataset"):
        list(iter_source_images(DataConfig(source="hub", path=str(tmp_path / "missing"))))


def _div2k_zip(path, crops):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("DIV2K_train_HR/0002.png", _png(crops["b"]))
        zf.writestr("DIV2K_train_HR/0001.png", _png(crops["a"]))
        zf.writestr("DIV2K_train_HR/0003.png", b"truncated")


def test_div2k_local_zip_streams_through_imagefolder(tmp_path, crops):
    _div2k_zip(tmp_path / "DIV2K_train_HR.zip", crops)
    report = SourceReport()
    cfg = DataConfig(source="div2k", path=str(tmp_path / "DIV2K_train_HR.zip"))
    out = dict(iter_source_images(cfg, report))
    assert list(out) == ["0001", "0002"] and [n for n, _ in report.skipped] == ["0003"]
    np.testing.assert_array_equal(out["0001"], crops["a"])


def test_div2k_extracted_folder(tmp_path, crops):
    (tmp_path / "DIV2K_train_HR").mkdir()
    Image.fromarray(crops["a"]).save(tmp_path / "DIV2K_train_HR" / "0001.png")
    out = list(iter_source_images(DataConfig(source="div2k", path=str(tmp_path))))
    assert [n for n, _ in out] == ["0001"]


def test_div2k_absent(tmp_path, offline):
    with pytest.raises(DataNotFoundError, match=r"DIV2K_train_HR\.zip.*data\.path"):
        list(iter_source_images(DataConfig(source="div2k")))
    with pytest.raises(DataNotFoundError, match="DIV2K_valid_HR"):
        list(iter_source_images(DataConfig(source="div2k", split="validation", path=str(tmp_path / "x.zip"))))
    with pytest.raises(ValueError, match="split"):
        list(iter_source_images(DataConfig(source="div2k", split="test")))


def test_fingerprint_tracks_files_and_config(tmp_path, crops):
    Image.fromarray(crops["a"]).save(tmp_path / "a.png")
    cfg = DataConfig(source="folder", path=str(tmp_path))
    fp = source_fingerprint(cfg)
    assert fp == source_fingerprint(DataConfig(source="folder", path=str(tmp_path)))
    Image.fromarray(crops["b"]).save(tmp_path / "b.png")
    assert source_fingerprint(cfg) != fp
    hub = DataConfig(source="hub", hub_id="x/y")
    pinned = DataConfig(source="hub", hub_id="x/y", revision="abc")
    assert source_fingerprint(hub) != source_fingerprint(pinned)
    assert source_fingerprint(DataConfig()) != source_fingerprint(DataConfig(max_images=3))


def test_a_decompression_bomb_is_a_counted_skip_naming_the_file(tmp_path, crops, caplog):
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    # a valid PNG header claiming 30000 x 30000 RGB pixels: Pillow refuses it before decoding
    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
    (tmp_path / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                                        + chunk(b"IEND", b""))
    Image.fromarray(crops["a"]).save(tmp_path / "a.png")
    report = SourceReport()
    with caplog.at_level(logging.INFO):
        out = dict(iter_source_images(DataConfig(source="folder", path=str(tmp_path)), report))
    assert list(out) == ["a"]
    assert [n for n, _ in report.skipped] == ["bomb"] and "decompression bomb" in report.skipped[0][1].lower()
    assert "bomb.png" in report.skipped[0][1] and "1 images loaded, 1 skipped" in caplog.text
