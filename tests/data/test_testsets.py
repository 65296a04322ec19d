"""Test sets: local layouts, archive path through imagefolder, absent data, bad files."""

from __future__ import annotations

import io
import logging
import tarfile
import zipfile

import huggingface_hub
import numpy as np
import pytest
from PIL import Image

import hf_srdistill.data.testsets as testsets
from hf_srdistill.data.errors import DataNotFoundError
from hf_srdistill.data.images import CorruptImageError
from hf_srdistill.data.testsets import load_test_set


@pytest.fixture
def hr_images(astronaut, camera):
    return {f"img{i}": astronaut[i * 40:i * 40 + 30, :36] for i in range(4)} | {"grey": camera[:24, :24]}


def _save_all(folder, images):
    folder.mkdir(parents=True)
    for name, img in images.items():
        Image.fromarray(img).save(folder / f"{name}.png")


def test_mini():
    names = [n for n, _ in load_test_set("mini")]
    assert names[:2] == ["motorcycle_left", "camera"] and len(names) == 7


@pytest.mark.parametrize("layout", ["Set5", "Set5/HR", "set5/GTmod12"])
def test_local_layouts(tmp_path, hr_images, layout, caplog):
    _save_all(tmp_path / layout, hr_images)
    (tmp_path / layout / "LRbicx2").mkdir()  # LR folders next to the HR files are ignored
    Image.fromarray(hr_images["img0"][::2, ::2]).save(tmp_path / layout / "LRbicx2" / "img0.png")
    with caplog.at_level(logging.WARNING):
        out = load_test_set("Set5", root=tmp_path)
    assert [n for n, _ in out] == sorted(hr_images)
    np.testing.assert_array_equal(dict(out)["img2"], hr_images["img2"])
    assert dict(out)["grey"].shape == (24, 24, 3)
    assert not caplog.records  # 5 images: the benchmark's count


def test_count_mismatch_warns(tmp_path, hr_images, caplog):
    _save_all(tmp_path / "Set14", hr_images)
    with caplog.at_level(logging.WARNING):
        assert len(load_test_set("set14", root=tmp_path)) == 5
    assert "has 5 images, the benchmark has 14" in caplog.text


def test_bad_file_is_an_error(tmp_path, hr_images):
    _save_all(tmp_path / "Set5", hr_images)
    (tmp_path / "Set5" / "zz.png").write_bytes(b"broken")
    with pytest.raises(CorruptImageError, match="zz"):
        load_test_set("set5", root=tmp_path)


def test_archive_through_imagefolder(tmp_path, hr_images, monkeypatch):
    archive = tmp_path / "Set5_HR.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, img in hr_images.items():
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, "PNG")
            info = tarfile.TarInfo(f"Set5_HR/{name}.png")
            info.size = len(buf.getvalue())
            tar.addfile(info, io.BytesIO(buf.getvalue()))
    calls = []

    def fake_download(repo_id, filename, repo_type=None, revision=None):
        calls.append((repo_id, filename, repo_type, revision))
        return str(archive)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    out = load_test_set("set5", root=tmp_path / "empty")  # nothing local: falls back to the Hub
    assert calls == [("eugenesiow/Set5", "data/Set5_HR.tar.gz", "dataset",
                      "325646fe7cc8811e312562437885c5c018c74966")]
    assert [n for n, _ in out] == sorted(hr_images)
    np.testing.assert_array_equal(dict(out)["img3"], hr_images["img3"])


def test_zip_archive_through_imagefolder(tmp_path, hr_images, monkeypatch):
    with zipfile.ZipFile(tmp_path / "DIV2K_valid_HR.zip", "w") as zf:
        for name, img in hr_images.items():
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, "PNG")
            zf.writestr(f"DIV2K_valid_HR/{name}.png", buf.getvalue())
    monkeypatch.setitem(testsets.TEST_SET_ARCHIVES, "div2k-val", str(tmp_path / "DIV2K_valid_HR.zip"))
    out = load_test_set("div2k-val")
    assert [n for n, _ in out] == sorted(hr_images)
    np.testing.assert_array_equal(dict(out)["grey"][..., 0], hr_images["grey"])


def test_absent(tmp_path, monkeypatch):
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataNotFoundError) as err:
        load_test_set("set14", root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "Set14") in msg and "Set14/HR" in msg and "datasets/eugenesiow/Set14@" in msg
    assert "eval.test_root" in msg
    with pytest.raises(DataNotFoundError, match="DIV2K_valid_HR.zip"):
        load_test_set("div2k-val")
    with pytest.raises(ValueError, match="unknown test set"):
        load_test_set("urban101")


@pytest.mark.parametrize("name, folder", [("b100", "BSD100/HR"), ("urban100", "Urban100"), ("manga109", "Manga109")])
def test_local_only_benchmarks(tmp_path, hr_images, name, folder, caplog):
    with pytest.raises(DataNotFoundError, match=rf"test set '{name}' not found.*eval.test_root") as err:
        load_test_set(name, root=tmp_path)
    assert "downloads" not in str(err.value)  # no archive is pretended
    _save_all(tmp_path / folder, hr_images)
    with caplog.at_level(logging.WARNING):
        out = load_test_set(name, root=tmp_path)
    assert [n for n, _ in out] == sorted(hr_images) and "the benchmark has 10" in caplog.text
