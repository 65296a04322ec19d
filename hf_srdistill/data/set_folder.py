"""A set folder's manifest, and reading a local set folder from the bytes on disk.

A set folder (``distill.export.write_image_set``) is several files written one after
another. A kill between two writes would leave a new parquet beside old metadata, so the
writer removes the manifest first and writes it last: a folder is *complete* exactly when
``manifest.json`` exists and every file it lists has the recorded size and sha256.
The dataset card (``README.md``) is not listed: it is rendered from the listed files and
may be refreshed (``push-dataset``) without changing the set.

Local sets are read with pyarrow straight from the parquet files, not through
``datasets.load_dataset(folder)``, whose cache is keyed on the folder's name and card and
can return another folder's (or a deleted shard's) rows.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from hf_srdistill.io import sha256_file, write_json

MANIFEST = "manifest.json"
LISTED = ("data", "config.yaml", "provenance.json", "size_report.json")


class IncompleteSetError(ValueError):
    """A set folder whose files do not match its manifest (or that has none)."""


def _listed_files(folder: Path) -> list[Path]:
    files = []
    for name in LISTED:
        p = folder / name
        files += sorted(q for q in p.rglob("*.parquet")) if p.is_dir() else [p] if p.is_file() else []
    return files


def write_manifest(folder: str | Path, num_rows: int) -> dict:
    folder = Path(folder)
    manifest = {"num_rows": int(num_rows),
                "files": {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
                          for p in _listed_files(folder)}}
    write_json(folder / MANIFEST, manifest)
    return manifest


def remove_manifest(folder: str | Path) -> None:
    """Mark the folder incomplete before its files are rewritten."""
    (Path(folder) / MANIFEST).unlink(missing_ok=True)


def verify_set_folder(folder: str | Path) -> dict:
    """The manifest of a complete set folder; anything else is one ``IncompleteSetError``."""
    folder = Path(folder)
    path = folder / MANIFEST
    redo = "re-run the command that made it (the run resumes from its checkpoint)"
    if not path.is_file():
        raise IncompleteSetError(f"{folder}: no {MANIFEST}, so the set was never completely written "
                                 f"(interrupted, or made by an older version); {redo}")
    try:
        manifest = json.loads(path.read_text())
        files, rows = manifest["files"], int(manifest["num_rows"])
    except (ValueError, KeyError, TypeError) as err:
        raise IncompleteSetError(f"{path} is corrupt ({err}); {redo}") from None
    on_disk = {str(p.relative_to(folder)) for p in _listed_files(folder)}
    extra = sorted(on_disk - set(files))
    if extra:
        raise IncompleteSetError(f"{folder}: files not in its manifest: {', '.join(extra)}; remove them or {redo}")
    for name, want in files.items():
        p = folder / name
        if not p.is_file():
            raise IncompleteSetError(f"{folder}: {name} is listed in {MANIFEST} but missing; {redo}")
        if p.stat().st_size != want["bytes"] or sha256_file(p) != want["sha256"]:
            raise IncompleteSetError(f"{folder}: {name} differs from the one recorded in {MANIFEST} "
                                     f"(changed or partly rewritten); {redo}")
    manifest["num_rows"] = rows
    return manifest


def is_complete(folder: str | Path) -> bool:
    try:
        verify_set_folder(folder)
        return True
    except IncompleteSetError:
        return False


def set_digest(folder: str | Path) -> str:
    """Content digest of a complete set folder (the manifest's hashes)."""
    manifest = verify_set_folder(folder)
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()[:16]


def _read_tables(folder: Path):
    """The verified manifest and the (file name, pyarrow table) of each parquet shard, in order."""
    import pyarrow.parquet as pq

    manifest = verify_set_folder(folder)
    shards = sorted(name for name in manifest["files"] if name.endswith(".parquet"))
    return manifest, [(name, pq.read_table(folder / name)) for name in shards]


def _decode_column(folder: Path, manifest: dict, tables: list, column: str) -> list[np.ndarray]:
    from PIL import Image

    images = []
    for name, table in tables:
        if column not in table.column_names:
            raise ValueError(f"{folder / name}: a training set needs an {column!r} image column, "
                             f"found {table.column_names}")
        for cell in table.column(column).to_pylist():
            raw = cell["bytes"] if isinstance(cell, dict) else cell
            images.append(np.asarray(Image.open(io.BytesIO(raw)).convert("RGB")))
    if len(images) != manifest["num_rows"]:
        raise IncompleteSetError(f"{folder}: {len(images)} rows on disk, its manifest records "
                                 f"{manifest['num_rows']}")
    return images


def read_set_images(folder: str | Path, column: str = "hr") -> list[np.ndarray]:
    """The HWC uint8 RGB images of a complete local set folder, decoded from its parquet."""
    folder = Path(folder)
    manifest, tables = _read_tables(folder)
    return _decode_column(folder, manifest, tables, column)


def read_labelled_set(folder: str | Path) -> dict[str, dict[int, np.ndarray]]:
    """{class name: {ipc index: HWC uint8 image}} of a complete local set folder.

    Class names come from the parquet's ClassLabel feature, so a set can seed another run
    over the same photos even when the two list their classes in another order.
    """
    folder = Path(folder)
    manifest, tables = _read_tables(folder)  # verified and read once, for the images and the labels
    images = iter(_decode_column(folder, manifest, tables, "hr"))
    out: dict[str, dict[int, np.ndarray]] = {}
    for name, table in tables:
        meta = json.loads((table.schema.metadata or {}).get(b"huggingface", b"{}"))
        names = meta.get("info", {}).get("features", {}).get("label", {}).get("names")
        if names is None or not {"label", "ipc_index"} <= set(table.column_names):
            raise ValueError(f"{folder / name}: not a labelled set (needs label names and label, "
                             f"ipc_index columns)")
        for label, j in zip(table.column("label").to_pylist(), table.column("ipc_index").to_pylist()):
            out.setdefault(names[label], {})[int(j)] = next(images)
    return out
