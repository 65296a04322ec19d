"""What a distilled-set folder and a trained-model folder must hold, and what they say.

Pushing or carding an incomplete folder would publish something nobody can load or
reproduce, so both are checked first and every missing piece is named in one error.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# upload_folder skips these: temp files of atomic writes, hidden files and resumable state
IGNORE_PATTERNS = [".*", "**/.*", "*.tmp", "**/*.tmp", "checkpoint/**", "checkpoints/**",
                   "checkpoint.*/**", "__pycache__/**"]
DATA_GLOB = "data/*.parquet"


class FolderError(ValueError):
    """A folder that is not a complete hf_srdistill artifact."""


def check_dataset_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise FolderError(f"{folder}: not a directory (expected a distilled-set folder)")
    missing = []
    if not sorted(folder.glob(DATA_GLOB)):
        missing.append(f"{DATA_GLOB} (the parquet shards written by `hf-srdistill distill`)")
    if not (folder / "provenance.json").is_file():
        missing.append("provenance.json (the record of how the set was made)")
    if missing:
        raise FolderError(f"{folder} is not a complete distilled-set folder; missing:\n  - "
                          + "\n  - ".join(missing))
    from hf_srdistill.data.set_folder import IncompleteSetError, verify_set_folder

    try:
        verify_set_folder(folder)
    except IncompleteSetError as err:
        raise FolderError(str(err)) from None
    columns = dataset_summary(folder).features
    if "hr" not in columns:
        raise FolderError(f"{folder}: parquet shards have no 'hr' image column (found {list(columns)})")
    return folder


def check_model_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise FolderError(f"{folder}: not a directory (expected a trained-model folder)")
    need = {"model.safetensors": "weights (save_pretrained output)",
            "config.json": "architecture arguments (save_pretrained output)",
            "provenance.json": "the record of how the model was trained"}
    missing = [f"{name} ({why})" for name, why in need.items() if not (folder / name).is_file()]
    if missing:
        raise FolderError(f"{folder} is not a complete trained-model folder; missing:\n  - "
                          + "\n  - ".join(missing))
    return folder


def read_json_if_present(path: Path) -> Any:
    """Parsed JSON, or None when the optional file is absent; a corrupt file is an error."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise FolderError(f"{path}: not valid JSON ({err})") from err


@dataclass
class DatasetSummary:
    """Facts read from the parquet shards themselves, so the card cannot drift from the data."""

    num_rows: int
    features: Any  # datasets.Features
    files: list[str]
    num_bytes: int  # uncompressed, as datasets reports num_bytes
    download_size: int  # bytes on disk
    class_names: list[str] = field(default_factory=list)
    image_size: tuple[int, int] | None = None  # (width, height) of the first hr image
    scales: list[int] = field(default_factory=list)


def dataset_summary(folder: str | Path) -> DatasetSummary:
    import pyarrow.parquet as pq
    from datasets import ClassLabel, Features
    from PIL import Image

    folder = Path(folder)
    files = sorted(folder.glob(DATA_GLOB))
    if not files:
        raise FolderError(f"{folder}: no {DATA_GLOB}")
    metas = [pq.ParquetFile(f).metadata for f in files]
    schema = pq.read_schema(files[0])
    for f in files[1:]:
        if not pq.read_schema(f).equals(schema, check_metadata=False):
            raise FolderError(f"{f}: schema differs from {files[0].name}; shards must share one schema")
    # the "huggingface" schema metadata that datasets writes restores Image/ClassLabel types
    features = Features.from_arrow_schema(schema)
    label = features.get("label")
    size = None
    if "hr" in features and metas[0].num_rows:
        first = pq.read_table(files[0], columns=["hr"]).slice(0, 1).column("hr")[0].as_py()
        raw = first["bytes"] if isinstance(first, dict) else first
        if raw:
            size = Image.open(io.BytesIO(raw)).size
    scales = sorted(int(name[4:]) for name in features if name.startswith("lr_x") and name[4:].isdigit())
    return DatasetSummary(
        num_rows=sum(m.num_rows for m in metas), features=features,
        files=[str(f.relative_to(folder)) for f in files],
        num_bytes=sum(m.row_group(i).total_byte_size for m in metas for i in range(m.num_row_groups)),
        download_size=sum(f.stat().st_size for f in files),
        class_names=list(label.names) if isinstance(label, ClassLabel) else [],
        image_size=size, scales=scales)


def size_category(n: int) -> str:
    """The Hub's size_categories bucket for n rows."""
    buckets = ((10**3, "n<1K"), (10**4, "1K<n<10K"), (10**5, "10K<n<100K"), (10**6, "100K<n<1M"),
               (10**7, "1M<n<10M"), (10**8, "10M<n<100M"), (10**9, "100M<n<1B"), (10**10, "1B<n<10B"),
               (10**11, "10B<n<100B"), (10**12, "100B<n<1T"))
    return next((name for limit, name in buckets if n < limit), "n>1T")
