"""Atomic writes: files get the user's umask, killed writes leave no target behind."""

from __future__ import annotations

import os
import stat

import pytest

from hf_srdistill import io


def test_atomic_writes_honour_the_umask(tmp_path):
    mask = os.umask(0)
    os.umask(mask)
    io.write_text(tmp_path / "a.txt", "x")
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~mask


def test_a_failed_write_leaves_neither_target_nor_temp(tmp_path):
    with pytest.raises(RuntimeError):
        with io.atomic_path(tmp_path / "b.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_folder_and_stale_tmp(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(io.UnwritableError, match="out .* is not writable"):
        io.check_writable(tmp_path / "file" / "sub", "out")
    (tmp_path / ".x.json.abc.tmp").write_text("")
    (tmp_path / "keep.tmp").write_text("")  # not a hidden temp file of an atomic write
    assert io.remove_stale_tmp(tmp_path) == 1 and (tmp_path / "keep.tmp").exists()
