"""Set folders: complete only with a matching manifest, and read from the bytes on disk."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from hf_srdistill.config import DistillJobConfig
from hf_srdistill.data import load_mini
from hf_srdistill.data.set_folder import (IncompleteSetError, is_complete, read_set_images, set_digest,
                                          verify_set_folder)
from hf_srdistill.distill import export
from hf_srdistill.train import load_image_set


def _crops(offset: int, n: int = 3) -> list[np.ndarray]:
    return [np.ascontiguousarray(img[offset:offset + 32, offset:offset + 32]) for _, img in load_mini("train")[:n]]


def _write(folder, crops):
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float() / 255
    n = len(crops)
    return export.write_image_set(folder, x, list(range(n)), [f"c{i}" for i in range(n)], [0] * n, DistillJobConfig())


def _same(a, b) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_a_written_set_is_complete_and_reads_back_exactly(tmp_path):
    crops = _crops(0)
    folder = _write(tmp_path / "set", crops)
    assert verify_set_folder(folder)["num_rows"] == 3
    assert _same(read_set_images(folder), crops) and _same(load_image_set(str(folder)), crops)


def test_rewriting_a_folder_in_place_reads_the_new_rows_not_a_cached_copy(tmp_path):
    folder = tmp_path / "set"
    _write(folder, _crops(0))
    assert _same(load_image_set(str(folder)), _crops(0))
    _write(folder, _crops(40, n=2))
    assert _same(load_image_set(str(folder)), _crops(40, n=2))


def test_two_folders_with_the_same_name_and_card_give_their_own_pixels(tmp_path):
    a, b = _write(tmp_path / "a" / "set", _crops(0)), _write(tmp_path / "b" / "set", _crops(60))
    shutil.copy(a / "README.md", b / "README.md")
    assert _same(load_image_set(str(a)), _crops(0)) and _same(load_image_set(str(b)), _crops(60))
    assert set_digest(a) != set_digest(b)


def test_a_kill_between_the_parquet_and_the_metadata_leaves_an_incomplete_folder(tmp_path, monkeypatch):
    folder = _write(tmp_path / "set", _crops(0))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("simulated kill after the parquet was replaced")

    monkeypatch.setattr(export, "_write_provenance", killed)
    with pytest.raises(KeyboardInterrupt):
        _write(folder, _crops(40, n=2))
    assert not is_complete(folder)
    with pytest.raises(IncompleteSetError, match="no manifest.json"):
        load_image_set(str(folder))
    from hf_srdistill.hub.folders import FolderError, check_dataset_folder

    with pytest.raises(FolderError, match="never completely written"):
        check_dataset_folder(folder)  # what push-dataset runs before writing any card


def test_a_deleted_or_swapped_shard_is_refused(tmp_path):
    folder = _write(tmp_path / "set", _crops(0))
    other = _write(tmp_path / "other", _crops(50))
    parquet = folder / export.PARQUET
    shutil.copy(other / export.PARQUET, parquet)
    with pytest.raises(IncompleteSetError, match="differs from the one recorded"):
        load_image_set(str(folder))
    parquet.unlink()
    with pytest.raises(IncompleteSetError, match="listed in manifest.json but missing"):
        load_image_set(str(folder))


def test_an_extra_shard_and_a_wrong_row_count_are_refused(tmp_path):
    folder = _write(tmp_path / "set", _crops(0))
    shutil.copy(folder / export.PARQUET, folder / "data" / "train-extra.parquet")
    with pytest.raises(IncompleteSetError, match="not in its manifest"):
        verify_set_folder(folder)
    (folder / "data" / "train-extra.parquet").unlink()
    manifest = verify_set_folder(folder)
    manifest["num_rows"] = 5
    from hf_srdistill.io import write_json

    write_json(folder / "manifest.json", manifest)
    with pytest.raises(IncompleteSetError, match="3 rows on disk, its manifest records 5"):
        read_set_images(folder)
