"""Sub-images grouped by source photo (one photo = one class), cached on disk as Arrow.

Distillation asks, many times, for "random patches of class c". Holding DIV2K's 32,592
sub-images in memory is not an option, so one pass over the (possibly streamed) source
writes two memory-mapped Arrow tables that ``datasets`` reads back with ``Dataset.from_file``:

- ``subimages.arrow``: PNG sub-images in class order (image, label, top, left); class c
  owns rows ``offsets[c] : offsets[c] + counts[c]``, so reading a class touches only its rows;
- ``sources.arrow``: the whole photos (name, image, height, width), one row per class. The
  image is stored only where the sub-image grid misses part of the photo (``thresh_size``
  drops a border strip); otherwise it is None and ``source_image`` pastes the photo back
  together from its sub-images, exactly, which saves encoding every photo a second time.

The cache directory is keyed by a fingerprint of the source (files, Hub id/revision) and
the cropping settings; ``meta.json`` is written last, so a killed build is never reused.
Memory while building is a few photos per process (``data.num_proc``), their crops and a
small write buffer.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import multiprocessing
import os
import shutil
import tempfile
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from PIL import Image
from tqdm.auto import tqdm

from hf_srdistill.config import DataConfig
from hf_srdistill.data.images import CorruptImageError
from hf_srdistill.data.sources import SourceReport, decode_value, iter_source_items, source_fingerprint
from hf_srdistill.data.subimages import extract_subimages, subimage_positions

__all__ = ["SubImageStore"]

log = logging.getLogger(__name__)

_FORMAT_VERSION = 2  # 2: Z_RLE PNGs; photos covered by their sub-images are not stored twice
# rows buffered before a write: bounds memory to a few MB of PNGs per table
_SUB_ROWS, _SRC_ROWS = 32, 4


def _features():
    import datasets

    sub = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int32"),
                             "top": datasets.Value("int32"), "left": datasets.Value("int32")})
    src = datasets.Features({"name": datasets.Value("string"), "image": datasets.Image(),
                             "height": datasets.Value("int32"), "width": datasets.Value("int32")})
    return sub, src


def _png(arr: np.ndarray) -> dict:
    buf = io.BytesIO()
    # lossless like any setting; level 1 with zlib's Z_RLE strategy (compress_type 3) writes a
    # 480-px photo crop 1.2-1.5x faster than BasicSR's cv2 level 3, and smaller than PIL's default
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1, compress_type=3)
    return {"bytes": buf.getvalue(), "path": None}


def _covers(positions: list[int], crop_size: int, length: int) -> bool:
    return positions[-1] + crop_size == length  # the grid starts at 0 and steps by <= crop_size


def _encode_photo(item: tuple) -> tuple:
    """Decode one raw item and return its PNG sub-images with their positions, and the photo
    as PNG when the crops do not cover it; or ``(name, reason)`` when it is skipped. Runs in a
    worker, so decoding is parallel too."""
    name, value, crop_size, step, thresh_size = item
    try:
        img = decode_value(value, name)
    except (CorruptImageError, ValueError) as err:
        return name, str(err)
    if min(img.shape[:2]) < crop_size:
        return name, f"image of size {img.shape[0]}x{img.shape[1]} is smaller than data.crop_size={crop_size}"
    h, w = img.shape[:2]
    ys, xs = subimage_positions(h, w, crop_size, step, thresh_size)
    crops = extract_subimages(img, crop_size, step, thresh_size)
    positions = [(y, x) for y in ys for x in xs]
    covered = step <= crop_size and _covers(ys, crop_size, h) and _covers(xs, crop_size, w)
    return (name, (h, w), [(_png(c), y, x) for c, (y, x) in zip(crops, positions, strict=True)],
            None if covered else _png(img))


def ordered_map(fn, items: Iterable, num_proc: int = 1) -> Iterator:
    """``map(fn, items)`` on ``num_proc`` processes, in order, with at most 2 x num_proc items in flight.

    At most 2 x num_proc items are read ahead of the consumer, so memory stays a few photos per
    process however large the source is.
    """
    if num_proc <= 1:
        yield from map(fn, items)
        return
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(num_proc, mp_context=ctx) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * num_proc:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class _ArrowTable:
    """Append rows to an Arrow IPC stream in small batches (the format ``Dataset.from_file`` reads)."""

    def __init__(self, path: Path, features, rows_per_batch: int) -> None:
        self.features, self.rows, self.rows_per_batch = features, [], rows_per_batch
        self.writer = pa.ipc.new_stream(str(path), features.arrow_schema)

    def add(self, row: dict) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.rows_per_batch:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            batch = self.features.encode_batch({k: [r[k] for r in self.rows] for k in self.features})
            self.writer.write_batch(pa.RecordBatch.from_pydict(batch, schema=self.features.arrow_schema))
            self.rows = []

    def close(self) -> None:
        self.flush()
        self.writer.close()


def _store_fingerprint(cfg: DataConfig) -> str:
    key = [_FORMAT_VERSION, source_fingerprint(cfg), cfg.crop_size, cfg.step, cfg.thresh_size]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


def _write_cache(cfg: DataConfig, out: Path, fingerprint: str) -> None:
    sub_features, src_features = _features()
    subs = _ArrowTable(out / "subimages.arrow", sub_features, _SUB_ROWS)
    srcs = _ArrowTable(out / "sources.arrow", src_features, _SRC_ROWS)
    report, names, counts = SourceReport(), [], []
    items = ((name, value, cfg.crop_size, cfg.step, cfg.thresh_size) for name, value in iter_source_items(cfg))
    results = ordered_map(_encode_photo, items, cfg.num_proc)
    photos = tqdm(results, desc="sub-images", unit="photo", total=cfg.max_images, disable=None)
    try:
        for result in photos:
            if len(result) == 2:
                log.warning("skipping %s: %s", *result)
                report.skipped.append(result)
                continue
            name, (h, w), crops, source_png = result
            label = len(names)
            for png, top, left in crops:
                subs.add({"image": png, "label": label, "top": top, "left": left})
            srcs.add({"name": name, "image": source_png, "height": h, "width": w})
            names.append(name)
            counts.append(len(crops))
            photos.set_postfix(subimages=sum(counts), skipped=len(report.skipped))
            if cfg.max_images is not None and len(names) >= cfg.max_images:
                break
    finally:
        photos.close()
        results.close()  # stops the workers (and a streamed source) at max_images
        subs.close()
        srcs.close()
    if not names:
        raise ValueError(f"data source {cfg.source!r} gave no image of at least data.crop_size="
                         f"{cfg.crop_size} pixels per side ({len(report.skipped)} skipped)")
    meta = {"version": _FORMAT_VERSION, "fingerprint": fingerprint, "config": asdict(cfg),
            "class_names": names, "counts": counts, "offsets": np.cumsum([0] + counts[:-1]).tolist(),
            "skipped": report.skipped}
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    log.info("sub-image cache %s: %d classes, %d sub-images, %d photos skipped", out, len(names),
             sum(counts), len(report.skipped))


class _LazyImages(Sequence):
    """All sub-images as a sequence that decodes on access (len / index / slice)."""

    def __init__(self, store: "SubImageStore") -> None:
        self._store = store

    def __len__(self) -> int:
        return len(self._store)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._store._decode_row(j) for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"sub-image index {i} out of range for {len(self)} sub-images")
        return self._store._decode_row(i)


class SubImageStore:
    """Read access to a built cache; see the module docstring for the layout."""

    def __init__(self, path: str | Path, decoded_cache_mb: float = 256) -> None:
        import datasets

        self.path = Path(path)
        meta_file = self.path / "meta.json"
        if not meta_file.is_file():
            raise FileNotFoundError(f"no complete sub-image cache at {self.path} (meta.json missing)")
        meta = json.loads(meta_file.read_text())
        self.fingerprint: str = meta["fingerprint"]
        self.class_names: list[str] = meta["class_names"]
        self.skipped: list[tuple[str, str]] = [tuple(s) for s in meta["skipped"]]
        self._counts, self._offsets = meta["counts"], meta["offsets"]
        self._crop_size: int = meta["config"]["crop_size"]
        raw = datasets.Image(decode=False)  # decode with Pillow directly: fewer copies
        self._sub = datasets.Dataset.from_file(str(self.path / "subimages.arrow")).cast_column("image", raw)
        self._src = datasets.Dataset.from_file(str(self.path / "sources.arrow")).cast_column("image", raw)
        table = self._src.data  # the int columns are read straight from Arrow, no image decoding
        self._source_sizes = list(zip(table.column("height").to_pylist(), table.column("width").to_pylist()))
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_budget, self._cache_bytes = int(decoded_cache_mb * 2**20), 0

    @classmethod
    def build(cls, cfg: DataConfig, rebuild: bool = False, **kwargs) -> "SubImageStore":
        """Open the cache for ``cfg`` under ``cfg.cache_dir``, writing it first if absent."""
        fingerprint = _store_fingerprint(cfg)
        root = Path(cfg.cache_dir).expanduser() / "subimages"
        final = root / fingerprint
        if rebuild and final.exists():
            shutil.rmtree(final)
        if (final / "meta.json").is_file():
            if cfg.source == "hub" and not cfg.path and not cfg.revision:
                log.warning("reusing the sub-image cache of an unpinned Hub dataset (%s); pin "
                            "data.revision or pass rebuild=True if the data changed", cfg.hub_id)
            return cls(final, **kwargs)
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{fingerprint}."))
        try:
            _write_cache(cfg, tmp, fingerprint)
            try:
                os.replace(tmp, final)
            except OSError:  # another process finished the same cache first: use theirs
                if not (final / "meta.json").is_file():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return cls(final, **kwargs)

    # ---- sizes ------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self._sub)

    def count(self, c: int) -> int:
        return self._counts[self._check(c)]

    def _check(self, c: int) -> int:
        if not 0 <= c < self.num_classes:
            raise IndexError(f"class {c} out of range: the store has {self.num_classes} classes")
        return c

    # ---- decoding ---------------------------------------------------------------------
    def _decode_row(self, row: int) -> np.ndarray:
        if row in self._cache:
            self._cache.move_to_end(row)
            return self._cache[row]
        arr = _decode_png(self._sub[row]["image"]["bytes"])
        if arr.nbytes <= self._cache_budget:
            self._cache[row] = arr
            self._cache_bytes += arr.nbytes
            while self._cache_bytes > self._cache_budget:
                self._cache_bytes -= self._cache.popitem(last=False)[1].nbytes
        return arr

    def subimages(self, c: int) -> list[np.ndarray]:
        """All sub-images of class ``c`` (HWC uint8), reading only that class's rows."""
        start = self._offsets[self._check(c)]
        return [self._decode_row(r) for r in range(start, start + self._counts[c])]

    def all_subimages(self) -> Sequence[np.ndarray]:
        return _LazyImages(self)

    def labels(self) -> list[int]:
        """Class index of every sub-image, in ``all_subimages()`` order."""
        return [c for c, n in enumerate(self._counts) for _ in range(n)]

    def source_image(self, c: int) -> np.ndarray:
        """The whole photo class ``c`` was cut from (HWC uint8)."""
        stored = self._src[self._check(c)]["image"]
        if stored is not None:
            return _decode_png(stored["bytes"])
        h, w = self._source_sizes[c]
        start, rows = self._offsets[c], self._positions(c)
        out = np.empty((h, w, 3), dtype=np.uint8)
        for r in _cover(rows, self._crop_size):  # the fewest sub-images whose union is the photo
            top, left = rows[r]
            crop = self._decode_row(start + r)
            out[top:top + crop.shape[0], left:left + crop.shape[1]] = crop
        return out

    def _positions(self, c: int) -> list[tuple[int, int]]:
        table = self._sub.data.slice(self._offsets[c], self._counts[c])
        return list(zip(table.column("top").to_pylist(), table.column("left").to_pylist()))

    def source_size(self, c: int) -> tuple[int, int]:
        """(height, width) of the photo of class ``c``, without decoding it."""
        return self._source_sizes[self._check(c)]

    def sample_patches(self, c: int, n: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` random ``size`` x ``size`` crops of random sub-images of class ``c``.

        Only ``generator`` is drawn from, so a class's patches depend on its own generator
        state alone. Returns (n, 3, size, size) float32 in [0, 1].
        """
        first = self._decode_row(self._offsets[c])
        return random_crops(lambda k: self._decode_row(self._offsets[c] + k), self.count(c), first.shape[:2], n, size,
                            generator, where=f"class {c} ({self.class_names[c]})")

    def __repr__(self) -> str:
        return f"SubImageStore({self.path}, classes={self.num_classes}, subimages={len(self)})"


def random_crops(row, count: int, hw: tuple[int, int], n: int, size: int, generator: torch.Generator,
                 where: str) -> torch.Tensor:
    """``n`` random ``size`` crops of random rows ``row(k)``, k < count, all ``hw`` in shape.

    Draws picks, tops and lefts from ``generator`` in that order (every store samples the same
    way, so seeds mean the same everywhere). Returns (n, 3, size, size) float32 in [0, 1],
    contiguous: a permuted view would break every ``.view()`` of a set built from it.
    """
    h, w = hw
    if size > min(h, w):
        raise ValueError(f"patch size {size} is larger than the {h}x{w} sub-images of {where}; lower the patch "
                         "size or raise data.crop_size")
    picks = torch.randint(count, (n,), generator=generator).tolist()
    tops = torch.randint(h - size + 1, (n,), generator=generator).tolist()
    lefts = torch.randint(w - size + 1, (n,), generator=generator).tolist()
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    for i, (k, t, l) in enumerate(zip(picks, tops, lefts)):
        out[i] = row(k)[t:t + size, l:l + size]
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().float().div_(255.0)


def _cover(positions: list[tuple[int, int]], size: int) -> list[int]:
    """Indices of the fewest crops of a row-major (top, left) grid whose union is the whole grid.

    Per axis, greedily: the next crop is the last one that starts inside the part covered so far.
    """
    def axis(starts: list[int]) -> set[int]:
        keep, end = [starts[0]], starts[0] + size
        while end < starts[-1] + size:
            nxt = max(v for v in starts if v <= end)
            if nxt == keep[-1]:
                raise ValueError(f"crops of {size} px at {starts} leave gaps; the photo must be stored")
            keep.append(nxt)
            end = nxt + size
        return set(keep)
    tops, lefts = axis(sorted({t for t, _ in positions})), axis(sorted({x for _, x in positions}))
    return [i for i, (t, x) in enumerate(positions) if t in tops and x in lefts]


def _decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))
