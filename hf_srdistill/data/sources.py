"""Where HR photos come from: one iterator, five sources, one error when data is absent.

``iter_source_images(cfg)`` yields ``(name, HWC uint8 RGB)`` in a fixed order. Names are
the class names of the distilled set, so they are stable (file stems where a file name is
known, otherwise the example index) and unique (a clash gets ``-<index>`` appended).
A file that cannot be decoded is logged and skipped; the count is logged at the end and
left in ``report`` when one is passed. Absent data raises ``DataNotFoundError`` saying
where it looked and how to supply the data. Remote data (Hub datasets, the DIV2K zips) is
streamed by ``datasets`` by default, so neither memory nor disk grows with the source.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from PIL import Image

from hf_srdistill.config import DataConfig
from hf_srdistill.data.errors import DataNotFoundError
from hf_srdistill.data.images import CorruptImageError, load_image, pil_to_array, to_rgb_uint8
from hf_srdistill.data.mini import MINI_SPLITS, load_mini, mini_data_dir
from hf_srdistill.data.photos import manifest_digest, prepare_photos

__all__ = ["DataNotFoundError", "SourceReport", "DIV2K_URLS", "IMAGE_SUFFIXES", "iter_source_images",
           "iter_source_items", "decode_value", "list_image_files", "folder_items", "archive_items",
           "decode_items", "source_fingerprint"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# The official archives (https://data.vision.ee.ethz.ch/cvl/DIV2K/): 800 train / 100 valid HR.
DIV2K_URLS = {
    "train": "https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip",
    "validation": "https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip",
}
_DIV2K_SPLITS = {"train": "train", "validation": "validation", "valid": "validation", "val": "validation"}


@dataclass
class SourceReport:
    """What one pass over a source produced: image count and the skipped files with reasons."""

    loaded: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)


def list_image_files(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive, hidden entries ignored), in sorted order."""
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(root).parts))


def folder_items(root: Path, how: str) -> Iterator[tuple[str, Any]]:
    """(relative path without suffix, file path) for every image under ``root``."""
    if not root.is_dir():
        raise DataNotFoundError(f"no image folder at {root}; {how}")
    files = list_image_files(root)
    if not files:
        raise DataNotFoundError(f"no {'/'.join(IMAGE_SUFFIXES)} files under {root}; {how}")
    for path in files:
        yield path.relative_to(root).with_suffix("").as_posix(), path


def _dataset_items(ds: Iterable[dict], column: str, where: str, how: str) -> Iterator[tuple[str, Any]]:
    """(stem-or-None, undecoded image value) per example; load errors become DataNotFoundError."""
    import datasets

    features = getattr(ds, "features", None)
    if features is not None and column not in features:
        raise ValueError(f"{where} has no column {column!r} (columns: {list(features)}); "
                         "set data.image_column")
    if features is not None and isinstance(features[column], datasets.Image):
        # decode ourselves so one corrupt image is a counted skip, not a crashed stream
        ds = ds.cast_column(column, datasets.Image(decode=False))
    it = iter(ds)
    first = True
    while True:
        try:
            example = next(it)
        except StopIteration:
            return
        except Exception as err:
            if first:
                raise DataNotFoundError(f"could not read {where}: {err}; {how}") from err
            raise
        first = False
        if column not in example:
            raise ValueError(f"{where} has no column {column!r} (columns: {list(example)}); "
                             "set data.image_column")
        value = example[column]
        path = value.get("path") if isinstance(value, dict) else value if isinstance(value, str) else None
        stem = Path(str(path).split("::")[0].removeprefix("zip://")).stem if path else None
        yield stem, value


def _decode_value(value: Any, name: str) -> np.ndarray:
    import datasets

    if isinstance(value, Path):
        return load_image(value)
    if isinstance(value, np.ndarray):
        return to_rgb_uint8(value, name)
    if not isinstance(value, Image.Image):
        try:
            value = datasets.Image().decode_example(value if isinstance(value, dict) else {
                "path": value, "bytes": None})
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as err:
            raise CorruptImageError(f"cannot decode image {name}: {err}") from err
    return to_rgb_uint8(pil_to_array(value, name), name)


def _load_dataset(where: str, how: str, **kwargs) -> Any:
    import datasets

    try:
        return datasets.load_dataset(**kwargs)
    except Exception as err:  # datasets raises many types (offline, 404, auth, missing files)
        raise DataNotFoundError(f"could not load {where}: {type(err).__name__}: {err}; {how}") from err


def _local_dataset(path: Path, split: str, streaming: bool) -> Any:
    import datasets

    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        ds = datasets.load_from_disk(str(path))
        return ds[split] if isinstance(ds, datasets.DatasetDict) else ds
    if path.is_file():
        builder = "parquet" if path.suffix == ".parquet" else "imagefolder"
        return datasets.load_dataset(builder, data_files={split: str(path)}, split=split, streaming=streaming)
    return datasets.load_dataset(str(path), split=split, streaming=streaming)


def _hub_items(cfg: DataConfig) -> Iterator[tuple[str | None, Any]]:
    if cfg.path:
        path = Path(cfg.path).expanduser()
        how = "point data.path at a saved dataset folder, a parquet file or a folder of parquet/images"
        if not path.exists():
            raise DataNotFoundError(f"no local dataset at {path}; {how}")
        where = f"local dataset {path} (split {cfg.split!r})"
        try:
            ds = _local_dataset(path, cfg.split, cfg.streaming)
        except Exception as err:
            raise DataNotFoundError(f"could not load {where}: {type(err).__name__}: {err}; {how}") from err
    else:
        where = f"Hub dataset {cfg.hub_id!r} (split {cfg.split!r}, revision {cfg.revision or 'main'})"
        how = ("check the id and network access (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE must be unset "
               "to stream), log in for private data, or download it and set data.path")
        ds = _load_dataset(where, how, path=cfg.hub_id, split=cfg.split, streaming=cfg.streaming,
                           revision=cfg.revision)
    yield from _dataset_items(ds, cfg.image_column, where, how)


def _div2k_items(cfg: DataConfig) -> Iterator[tuple[str | None, Any]]:
    if cfg.split not in _DIV2K_SPLITS:
        raise ValueError(f"data.split for DIV2K must be one of {sorted(_DIV2K_SPLITS)}, got {cfg.split!r}")
    split = _DIV2K_SPLITS[cfg.split]
    url = DIV2K_URLS[split]
    how = (f"download {url} and set data.path to the zip or to the folder it extracts to "
           f"({Path(url).stem}/)")
    if cfg.path:
        path = Path(cfg.path).expanduser()
        if path.is_dir():
            inner = path / Path(url).stem
            yield from folder_items(inner if inner.is_dir() else path, how)
            return
        if not path.is_file():
            raise DataNotFoundError(f"no DIV2K zip or folder at {path}; {how}")
        yield from archive_items(str(path), how)
    else:  # streamed: the 3.5 GB archive is never held in memory or on disk
        yield from archive_items(url, how)


def archive_items(archive: str, how: str, streaming: bool = True) -> Iterator[tuple[str | None, Any]]:
    """(file stem, undecoded image) for every image in a zip archive, local or at a URL.

    Goes through ``datasets``' ``imagefolder`` builder, which lists archive members in
    sorted order and, when streaming, reads them straight from the (remote) archive.
    """
    where = f"archive {archive}"
    ds = _load_dataset(where, how, path="imagefolder", data_files={"train": archive}, split="train",
                       streaming=streaming)
    yield from _dataset_items(ds, "image", where, how)


def _raw_items(cfg: DataConfig) -> Iterator[tuple[str | None, Any]]:
    if cfg.source == "mini":
        yield from load_mini(cfg.split)
    elif cfg.source == "folder":
        yield from folder_items(Path(cfg.path).expanduser(), "set data.path to a folder of PNG/JPEG files")
    elif cfg.source == "hub":
        yield from _hub_items(cfg)
    elif cfg.source == "div2k":
        yield from _div2k_items(cfg)
    elif cfg.source == "photos":
        how = "delete the photos cache folder to rebuild it"
        yield from folder_items(prepare_photos(Path(cfg.cache_dir).expanduser(), cfg.split), how)
    else:  # DataConfig validates this; kept so a new source cannot be half-added
        raise ValueError(f"unknown data.source {cfg.source!r}")


def iter_source_images(cfg: DataConfig, report: SourceReport | None = None
                       ) -> Iterator[tuple[str, np.ndarray]]:
    """``(name, HWC uint8 RGB)`` for each readable photo of the source, at most ``max_images``."""
    yield from decode_items(_raw_items(cfg), report, cfg.max_images, f"data source {cfg.source}")


def named_items(items: Iterable[tuple[str | None, Any]]) -> Iterator[tuple[str, Any]]:
    """Give every raw item a unique name: its stem, else its index; repeats get ``-index``."""
    used: set[str] = set()
    for index, (stem, value) in enumerate(items):
        name = stem or f"{index:06d}"
        while name in used:
            name = f"{name}-{index}"
        used.add(name)
        yield name, value


def decode_value(value: Any, name: str) -> np.ndarray:
    """HWC uint8 RGB of one raw item; CorruptImageError or ValueError when it is not an image."""
    if isinstance(value, np.ndarray) and value.dtype == np.uint8 and value.ndim == 3:
        return value
    return _decode_value(value, name)


def iter_source_items(cfg: DataConfig) -> Iterator[tuple[str, Any]]:
    """``(name, raw item)`` of the source, undecoded (a path, bytes, an array), so the decoding can
    run where the work is (the store's worker processes). Not capped by ``max_images``: only
    the decoder knows which items are readable."""
    yield from named_items(_raw_items(cfg))


def decode_items(items: Iterable[tuple[str | None, Any]], report: SourceReport | None = None,
                 max_images: int | None = None, label: str = "images", skip_bad: bool = True
                 ) -> Iterator[tuple[str, np.ndarray]]:
    """Name and decode raw items; bad images are logged and counted (or raised if not ``skip_bad``)."""
    report = report if report is not None else SourceReport()
    for name, value in named_items(items):
        try:
            img = decode_value(value, name)
        except (CorruptImageError, ValueError) as err:
            if not skip_bad:
                raise
            log.warning("skipping %s: %s", name, err)
            report.skipped.append((name, str(err)))
            continue
        report.loaded += 1
        yield name, img
        if max_images is not None and report.loaded >= max_images:
            break
    skipped = f" ({', '.join(n for n, _ in report.skipped[:10])})" if report.skipped else ""
    log.info("%s: %d images loaded, %d skipped%s", label, report.loaded, len(report.skipped), skipped)


def _listing_digest(root: Path) -> list:
    files = [root] if root.is_file() else list_image_files(root) if root.is_dir() else []
    if root.is_dir():  # dataset folders hold parquet/arrow too
        files += sorted(p for p in root.rglob("*") if p.suffix in (".parquet", ".arrow") and p.is_file())
    return [(str(p.relative_to(root) if root.is_dir() else p.name), p.stat().st_size, p.stat().st_mtime_ns)
            for p in files]


def source_fingerprint(cfg: DataConfig) -> str:
    """A digest that changes when the source's bytes may have changed (for caches).

    Local files are identified by path, size and modification time; a Hub dataset by id and
    revision (an unpinned revision is tagged as such, so pin ``data.revision`` to reuse a
    cache safely); DIV2K's official archives are immutable; the photos suite by its manifest
    (sha256 of every source photo, and the resize recipe).
    """
    key: dict[str, Any] = {"source": cfg.source, "split": cfg.split, "image_column": cfg.image_column,
                           "max_images": cfg.max_images}
    if cfg.source == "mini":
        root = mini_data_dir()
        key["files"] = [(f, (root / f).stat().st_size if (root / f).exists() else None)
                        for split in MINI_SPLITS.values() for f in split.values()]
    elif cfg.source == "photos":
        key["manifest"] = manifest_digest()
    elif cfg.path:
        path = Path(cfg.path).expanduser()
        key["path"] = str(path.resolve())
        key["files"] = _listing_digest(path)
    elif cfg.source == "hub":
        key["hub"] = [cfg.hub_id, cfg.revision or "unpinned"]
    else:
        key["url"] = DIV2K_URLS.get(_DIV2K_SPLITS.get(cfg.split, ""))
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
