"""The photos suite: a DIV2K-scale testbed from real photographs that Debian packages ship.

``mate-backgrounds`` and ``plasma-workspace-wallpapers`` install 23 photographs (1280-2560
px; their renders, paintings and vector art are left out), listed with their sha256,
licence and author in ``photos_manifest.json``, 16 ``train`` and 7 ``test``, fixed and
mixing content in both splits (landscapes, flower and plant close-ups, macro, objects,
architecture). Install them with::

    apt-get install mate-backgrounds plasma-workspace-wallpapers

``prepare_photos`` checks the installed files against the manifest, resizes them to
DIV2K's 2040 px long side and caches them as PNGs, so the split is an image folder that
every loader reads (``data.source=photos``, the ``photos`` test set).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from hf_srdistill.data.errors import DataNotFoundError
from hf_srdistill.io import sha256_file

__all__ = ["PHOTO_SPLITS", "LONG_SIDE", "INSTALL_COMMAND", "load_manifest", "manifest_digest", "photos_dir",
           "prepare_photos"]

PHOTO_SPLITS = ("train", "test")
# DIV2K's HR photos are 2040 px on their long side
LONG_SIDE = 2040
INSTALL_COMMAND = "apt-get install mate-backgrounds plasma-workspace-wallpapers"
MANIFEST_PATH = Path(__file__).with_name("photos_manifest.json")
# bump when the cached PNGs would come out differently from the same sources
_FORMAT = {"version": 1, "long_side": LONG_SIDE, "resample": "PIL bicubic, reducing_gap=None", "mode": "RGB"}


@lru_cache(maxsize=None)
def _read_manifest(path: str) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def load_manifest() -> dict:
    """The manifest: ``{"packages": {name: version}, "photos": [{name, package, path, sha256, ...}]}``."""
    return _read_manifest(str(MANIFEST_PATH))


def manifest_digest(manifest: dict | None = None) -> str:
    """16 hex digits naming the photo list and the resize recipe (the cache folder's name)."""
    manifest = load_manifest() if manifest is None else manifest
    key = {"photos": manifest["photos"], "format": _FORMAT}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def photos_dir(cache_dir: str | Path, split: str, manifest: dict | None = None) -> Path:
    """Where ``prepare_photos`` keeps a split: ``<cache_dir>/photos/<manifest digest>/<split>``."""
    return Path(cache_dir).expanduser() / "photos" / manifest_digest(manifest) / split



def _locate(entry: dict, roots: Iterable[Path]) -> Path | None:
    for root in roots:
        candidate = root / entry["path"]
        if candidate.is_file():
            return candidate
    return None


def _complete(folder: Path, names: list[str]) -> bool:
    return folder.is_dir() and all((folder / f"{n}.png").is_file() for n in names)


def _resize(src: Path, dst: Path) -> None:
    from PIL import Image

    with Image.open(src) as im:
        im = im.convert("RGB")
        w, h = im.size
        if max(w, h) > LONG_SIDE:  # downscale only
            ratio = LONG_SIDE / max(w, h)
            size = (LONG_SIDE, max(1, round(h * ratio))) if w >= h else (max(1, round(w * ratio)), LONG_SIDE)
            im = im.resize(size, Image.Resampling.BICUBIC, reducing_gap=None)
        im.save(dst, format="PNG")


def _check_sources(photos: list[dict], entries: list[dict], roots: list[Path], manifest: dict
                   ) -> dict[str, Path]:
    """name -> installed file for ``entries``; raises DataNotFoundError when any is absent or differs."""
    where = ", ".join(str(r) for r in roots)
    missing = [e for e in photos if _locate(e, roots) is None]
    if missing:
        packages = sorted({e["package"] for e in missing})
        raise DataNotFoundError(
            f"the photos suite is missing {len(missing)} of its {len(photos)} photos (e.g. /{missing[0]['path']}; "
            f"looked under {where}): they come from the Debian package(s) {', '.join(packages)}. "
            f"Install them with: sudo {INSTALL_COMMAND}")
    found = {e["name"]: _locate(e, roots) for e in entries}
    versions = manifest.get("packages", {})
    bad, packages = [], set()
    for e in entries:
        got = sha256_file(found[e["name"]])
        if got != e["sha256"]:
            bad.append(f"{found[e['name']]} ({e['name']}: sha256 {got[:12]}..., manifest {e['sha256'][:12]}...)")
            packages.add(e["package"])
    if bad:
        packages = sorted(packages)
        pinned = ", ".join(f"{p} {versions.get(p, '?')}" for p in packages)
        raise DataNotFoundError(
            f"{len(bad)} photo(s) of the photos suite differ from the manifest: {'; '.join(bad)}. The installed "
            f"package version differs from the one the manifest pins ({pinned}; see `dpkg -s "
            f"{' '.join(packages)}`), so numbers would not be comparable; install that version")
    return found


def prepare_photos(cache_dir: str | Path, split: str, roots: Iterable[str | Path] = ("/",)) -> Path:
    """The folder of ``split``'s photos as RGB PNGs, 2040 px on the long side; built once, then reused.

    Each manifest path is looked up under ``roots`` in order (``/`` = where apt installs them).
    Every photo of the suite must be present and the split's files must match their sha256,
    else ``DataNotFoundError`` says what is missing (and the apt-get line) or which file differs.
    Photos are converted to RGB and bicubic-downscaled (PIL, ``reducing_gap=None``) so their long
    side is 2040 px, DIV2K's scale; a photo already smaller keeps its size (never upscaled).
    The PNGs go to ``<cache_dir>/photos/<manifest digest>/<split>/<name>.png``, written into a
    temporary folder that replaces the split folder in one ``os.replace``, so a killed run leaves
    no half-written split. A complete folder is returned as is, without reading the sources.
    """
    from tqdm.auto import tqdm

    if split not in PHOTO_SPLITS:
        raise ValueError(f"photos split must be one of {PHOTO_SPLITS}, got {split!r}")
    manifest = load_manifest()
    photos = manifest["photos"]
    entries = [e for e in photos if e["split"] == split]
    names = [e["name"] for e in entries]
    target = photos_dir(cache_dir, split, manifest)
    if _complete(target, names):
        return target
    found = _check_sources(photos, entries, [Path(r).expanduser() for r in roots], manifest)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{split}-", dir=target.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp's 0700 would carry over to the cache folder
        bar = tqdm(entries, desc=f"photos {split}", unit="photo", disable=not sys.stderr.isatty())
        for e in bar:
            _resize(found[e["name"]], tmp / f"{e['name']}.png")
        if target.exists():  # incomplete (files removed by hand): set it aside, then swap
            stale = Path(tempfile.mkdtemp(prefix=f".{split}-stale-", dir=target.parent))
            os.replace(target, stale / split)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            if not _complete(target, names):  # another process got there first, with a complete one
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
