"""`hf-srdistill cache list | prune`: the sub-image caches under ``data.cache_dir``.

Each data source's sub-images are cached once under ``<cache_dir>/subimages/<fingerprint>``
(``grouped.SubImageStore.build``); a build that was killed leaves a hidden
``.<fingerprint>.*`` folder behind. Caches are never deleted automatically because they take
long to rebuild (about 22 min for DIV2K on one core), so they are listed and pruned here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CACHE_DIR = "~/.cache/hf_srdistill"


@dataclass
class CacheEntry:
    path: Path
    complete: bool
    bytes: int
    age_days: float
    source: str  # what the cache was built from, as recorded in its meta.json
    classes: int


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def list_caches(cache_dir: str | Path = DEFAULT_CACHE_DIR) -> list[CacheEntry]:
    root = Path(cache_dir).expanduser() / "subimages"
    entries = []
    for path in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        meta_path = path / "meta.json"
        complete = not path.name.startswith(".") and meta_path.is_file()
        meta = {}
        if complete:
            try:
                meta = json.loads(meta_path.read_text())
            except ValueError:
                complete = False
        cfg = meta.get("config", {})
        source = cfg.get("source", "?")
        where = cfg.get("path") or cfg.get("hub_id")
        desc = f"{source}{':' + where if where else ''} split={cfg.get('split', '?')} " \
               f"crop={cfg.get('crop_size', '?')}/{cfg.get('step', '?')}" if complete else "incomplete (killed build)"
        entries.append(CacheEntry(path, complete, _size(path), (time.time() - path.stat().st_mtime) / 86400, desc,
                                  len(meta.get("class_names", []))))
    return entries


def prune(cache_dir: str | Path = DEFAULT_CACHE_DIR, older_than_days: float | None = None,
          everything: bool = False) -> list[CacheEntry]:
    """Delete incomplete caches always, complete ones if older than the limit (or ``everything``)."""
    removed = []
    for e in list_caches(cache_dir):
        old = older_than_days is not None and e.age_days > older_than_days
        if not e.complete or everything or old:
            shutil.rmtree(e.path)
            removed.append(e)
    return removed


def _table(entries: list[CacheEntry]) -> str:
    lines = [f"{'MiB':>9} {'age d':>6} {'classes':>7}  source / path"]
    for e in entries:
        lines.append(f"{e.bytes / 2**20:>9.1f} {e.age_days:>6.1f} {e.classes:>7}  {e.source}\n{'':>26}{e.path}")
    lines.append(f"{sum(e.bytes for e in entries) / 2**20:>9.1f} MiB in {len(entries)} cache(s)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hf-srdistill cache", description=__doc__.split("\n")[0])
    p.add_argument("action", choices=["list", "prune"])
    p.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR, help="the data.cache_dir of the runs")
    p.add_argument("--older-than-days", type=float, help="prune: also delete complete caches older than this")
    p.add_argument("--all", action="store_true", help="prune: delete every cache")
    args = p.parse_args(argv)
    if args.action == "list":
        print(_table(list_caches(args.cache_dir)))
        return 0
    removed = prune(args.cache_dir, args.older_than_days, args.all)
    print(f"removed {len(removed)} cache(s), {sum(e.bytes for e in removed) / 2**20:.1f} MiB"
          + "".join(f"\n  {e.path}" for e in removed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
