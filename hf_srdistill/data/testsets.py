"""SR benchmark test sets: the mini and photos held-out photos, Set5, Set14, B100, Urban100,
Manga109, DIV2K's validation HR.

A benchmark with an image missing is a different benchmark, so unlike training sources a
bad file here is an error, not a skip. Local folders come first (``root/Set5``,
``root/Set14``, ``root/DIV2K_valid_HR``; the images may sit directly in that folder or in
one of ``HR/``, ``GTmod12/``, ``GT/``, ``original/``). Otherwise the HR archives are
downloaded once into the Hugging Face cache (so later offline runs work): Set5/Set14 as
``data/Set*_HR.tar.gz`` from the Hub dataset repositories ``eugenesiow/Set5`` and
``eugenesiow/Set14`` pinned to a commit, through ``hf_hub_download`` (their parquet
conversions hold only file paths, and ``imagefolder`` reads zip but not tar archives);
DIV2K's official validation zip through ``datasets``' ``imagefolder`` builder. ``photos`` is
the test split of the photos suite (``hf_srdistill.data.photos``: 7 photographs from Debian
packages, 2040 px), prepared into ``DataConfig``'s default cache dir. B100, Urban100 and
Manga109 are read from a local folder only (``root/B100``, ``root/Urban100``, ``root/Manga109``).
"""

from __future__ import annotations

import logging
import tarfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from hf_srdistill.data.errors import DataNotFoundError
from hf_srdistill.config import DataConfig
from hf_srdistill.data.mini import load_mini
from hf_srdistill.data.photos import prepare_photos
from hf_srdistill.data.sources import (DIV2K_URLS, IMAGE_SUFFIXES, archive_items, decode_items, folder_items,
                                       list_image_files)

__all__ = ["TEST_SETS", "TEST_SET_ARCHIVES", "LOCAL_ONLY", "load_test_set"]

log = logging.getLogger(__name__)

# name -> (folder names tried under root, expected image count)
TEST_SETS: dict[str, tuple[tuple[str, ...], int]] = {
    "set5": (("Set5", "set5"), 5),
    "set14": (("Set14", "set14"), 14),
    "div2k-val": (("DIV2K_valid_HR", "DIV2K/DIV2K_valid_HR", "div2k-val"), 100),
    "b100": (("B100", "BSD100", "BSDS100", "b100"), 100),
    "urban100": (("Urban100", "urban100"), 100),
    "manga109": (("Manga109", "manga109"), 109),
}
# HR archives used when no local copy is found: (Hub dataset repo, commit, file) or a URL.
# Commits are pinned so the bytes behind a reported number cannot change.
TEST_SET_ARCHIVES: dict[str, tuple[str, str, str] | str] = {
    "set5": ("eugenesiow/Set5", "325646fe7cc8811e312562437885c5c018c74966", "data/Set5_HR.tar.gz"),
    "set14": ("eugenesiow/Set14", "5afcf80d267dba61cdfa9a32b1a6fe4cca57b6d7", "data/Set14_HR.tar.gz"),
    "div2k-val": DIV2K_URLS["validation"],
}
# local only: no archive whose bytes could be pinned here (Manga109's licence also forbids
# redistribution); the error says where to put the images.
LOCAL_ONLY = ("b100", "urban100", "manga109")
_HR_SUBDIRS = ("", "HR", "GTmod12", "GT", "original")


def _local_dir(name: str, root: Path) -> tuple[Path | None, list[Path]]:
    """The first folder under ``root`` that holds this set's images, and every place tried."""
    tried = []
    for folder in TEST_SETS[name][0]:
        for sub in _HR_SUBDIRS:
            candidate = root / folder / sub if sub else root / folder
            tried.append(candidate)
            if candidate.is_dir() and any(p.parent == candidate for p in list_image_files(candidate)):
                return candidate, tried
    return None, tried


def _describe(archive: tuple[str, str, str] | str) -> str:
    return archive if isinstance(archive, str) else f"hf://datasets/{archive[0]}@{archive[1]}/{archive[2]}"


def _hub_tar_items(repo: str, revision: str, filename: str, how: str) -> Iterator[tuple[str, Any]]:
    import huggingface_hub

    try:
        path = huggingface_hub.hf_hub_download(repo, filename, repo_type="dataset", revision=revision)
    except Exception as err:  # offline, 404, network: all mean "not available here"
        raise DataNotFoundError(f"could not download {_describe((repo, revision, filename))}: "
                                f"{type(err).__name__}: {err}; {how}") from err
    with tarfile.open(path) as tar:
        members = sorted((m for m in tar.getmembers() if m.isfile()
                          and Path(m.name).suffix.lower() in IMAGE_SUFFIXES), key=lambda m: m.name)
        for member in members:
            yield Path(member.name).stem, {"bytes": tar.extractfile(member).read(), "path": member.name}


def _archive_items(archive: tuple[str, str, str] | str, how: str) -> Iterator[tuple[str, Any]]:
    if isinstance(archive, str):  # a zip: downloaded once into the datasets cache, not streamed
        return archive_items(archive, how, streaming=False)
    return _hub_tar_items(*archive, how)


def load_test_set(name: str, root: str | Path | None = None) -> list[tuple[str, np.ndarray]]:
    """``[(image name, HWC uint8 RGB)]`` of a test set, in sorted file order."""
    key = name.lower()
    if key == "mini":
        return load_mini("test")
    if key == "photos":
        folder = prepare_photos(Path(DataConfig.cache_dir).expanduser(), "test")
        how = f"delete {folder} to rebuild it"
        return list(decode_items(folder_items(folder, how), label="test set photos", skip_bad=False))
    if key not in TEST_SETS:
        raise ValueError(f"unknown test set {name!r}; choose from {['mini', 'photos', *TEST_SETS]}")
    expected = TEST_SETS[key][1]
    folders = TEST_SETS[key][0]
    archive = TEST_SET_ARCHIVES.get(key)
    how = (f"put the HR images in <root>/{folders[0]}/ (or {folders[0]}/HR/) and pass that root "
           f"(eval.test_root)" + (f", or allow downloads from {_describe(archive)}" if archive else ""))
    tried: list[str] = []
    if root is not None:
        found, looked = _local_dir(key, Path(root).expanduser())
        tried += [str(p) for p in looked]
        if found is not None:
            items = ((stem, path) for stem, path in folder_items(found, how) if path.parent == found)
            return _finish(key, list(decode_items(items, label=f"test set {key}", skip_bad=False)), expected,
                           str(found))
    if archive is None:
        places = "; ".join(tried) if tried else "no local root given (eval.test_root)"
        raise DataNotFoundError(f"test set {key!r} not found. Looked in: {places}. To supply it: {how}")
    try:
        images = list(decode_items(_archive_items(archive, how), label=f"test set {key}", skip_bad=False))
    except DataNotFoundError as err:
        places = "; ".join(tried) if tried else "no local root given (eval.test_root)"
        raise DataNotFoundError(f"test set {key!r} not found. Looked in: {places}; and at "
                                f"{_describe(archive)} ({err}). To supply it: {how}") from err
    return _finish(key, images, expected, _describe(archive))


def _finish(key: str, images: list, expected: int, where: str) -> list[tuple[str, np.ndarray]]:
    if len(images) != expected:
        log.warning("test set %s at %s has %d images, the benchmark has %d: numbers will not be "
                    "comparable to published ones", key, where, len(images), expected)
    return images
