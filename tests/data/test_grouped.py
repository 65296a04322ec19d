"""SubImageStore: classes, offsets, cache reuse, killed builds, reproducible patch sampling."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
import torch
from PIL import Image

import hf_srdistill.data.grouped as grouped
from hf_srdistill.config import DataConfig
from hf_srdistill.data.grouped import SubImageStore
from hf_srdistill.data.subimages import count_subimages, extract_subimages, subimage_positions


@pytest.fixture
def photos(astronaut, camera):
    return {"a_astro": astronaut[:100, :130].copy(), "b_cam": np.stack([camera[:90, :90]] * 3, -1),
            "c_astro": astronaut[300:372, 200:260].copy()}


@pytest.fixture
def folder(tmp_path, photos):
    root = tmp_path / "photos"
    root.mkdir()
    for name, img in photos.items():
        Image.fromarray(img).save(root / f"{name}.png")
    Image.fromarray(photos["a_astro"][:40, :40]).save(root / "d_tiny.png")  # smaller than the crop
    (root / "e_broken.png").write_bytes(b"corrupt")
    return root


def _cfg(folder, tmp_path, **kw):
    return DataConfig(source="folder", path=str(folder), crop_size=48, step=24,
                      cache_dir=str(tmp_path / "cache"), **kw)


def test_classes_offsets_and_contents(folder, tmp_path, photos):
    store = SubImageStore.build(_cfg(folder, tmp_path))
    assert store.class_names == ["a_astro", "b_cam", "c_astro"] and store.num_classes == 3
    for c, name in enumerate(store.class_names):
        img = photos[name]
        assert store.count(c) == count_subimages(*img.shape[:2], 48, 24, 0)
        expected = extract_subimages(img, 48, 24, 0)
        got = store.subimages(c)
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e)
        np.testing.assert_array_equal(store.source_image(c), img)
        assert store.source_size(c) == img.shape[:2]
    assert len(store) == sum(store.count(c) for c in range(3))
    assert [n for n, _ in store.skipped] == ["d_tiny", "e_broken"]
    assert "smaller than data.crop_size=48" in dict(store.skipped)["d_tiny"]
    lazy = store.all_subimages()
    assert len(lazy) == len(store) and store.labels()[store.count(0)] == 1
    np.testing.assert_array_equal(lazy[store.count(0)], store.subimages(1)[0])
    np.testing.assert_array_equal(lazy[-1], store.subimages(2)[-1])
    assert len(lazy[2:5]) == 3
    with pytest.raises(IndexError):
        lazy[len(store)]
    with pytest.raises(IndexError, match="3 classes"):
        store.subimages(3)


def test_cache_reused_and_keyed_by_files(folder, tmp_path, photos, monkeypatch):
    first = SubImageStore.build(_cfg(folder, tmp_path))

    def no_source(*a, **k):
        raise AssertionError("the source must not be read again")
    monkeypatch.setattr(grouped, "iter_source_items", no_source)
    again = SubImageStore.build(_cfg(folder, tmp_path))
    assert again.path == first.path and again.fingerprint == first.fingerprint
    monkeypatch.undo()
    assert SubImageStore.build(_cfg(folder, tmp_path, max_images=1)).num_classes == 1
    Image.fromarray(photos["c_astro"]).save(folder / "f_new.png")
    changed = SubImageStore.build(_cfg(folder, tmp_path))
    assert changed.fingerprint != first.fingerprint and changed.num_classes == 4


def test_killed_build_leaves_no_cache(folder, tmp_path, monkeypatch):
    real = grouped.iter_source_items

    def dies_midway(cfg):
        it = real(cfg)
        yield next(it)
        raise KeyboardInterrupt
    monkeypatch.setattr(grouped, "iter_source_items", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        SubImageStore.build(_cfg(folder, tmp_path))
    assert not list((tmp_path / "cache" / "subimages").iterdir())
    monkeypatch.undo()
    assert SubImageStore.build(_cfg(folder, tmp_path)).num_classes == 3


def test_num_proc_builds_the_same_bytes(folder, tmp_path):
    one = SubImageStore.build(_cfg(folder, tmp_path / "one"))
    two = SubImageStore.build(_cfg(folder, tmp_path / "two", num_proc=2))
    assert two.fingerprint == one.fingerprint  # the cache is keyed by content, not by how it was built
    for name in ("subimages.arrow", "sources.arrow"):
        assert (two.path / name).read_bytes() == (one.path / name).read_bytes()
    assert [n for n, _ in two.skipped] == [n for n, _ in one.skipped] == ["d_tiny", "e_broken"]


def test_workers_decode_the_photos(folder, tmp_path, monkeypatch):
    """With num_proc > 1 the main process only lists the source: decoding happens in the workers."""
    import os

    from hf_srdistill.data import sources

    main, real = os.getpid(), sources._decode_value
    decoded_in = []

    def spy(value, name):
        decoded_in.append(os.getpid())
        if os.getpid() == main:
            raise AssertionError(f"{name} decoded in the main process")
        return real(value, name)
    monkeypatch.setattr(sources, "_decode_value", spy)
    store = SubImageStore.build(_cfg(folder, tmp_path, num_proc=2))
    assert store.num_classes == 3 and [n for n, _ in store.skipped] == ["d_tiny", "e_broken"]
    assert not decoded_in  # the spy ran in the forked workers only, so this process saw no call


def test_max_images_counts_readable_photos_in_parallel(folder, tmp_path):
    store = SubImageStore.build(_cfg(folder, tmp_path, max_images=2, num_proc=2))
    assert store.num_classes == 2


def test_killed_parallel_build_leaves_no_cache(folder, tmp_path, monkeypatch):
    real = grouped.iter_source_items

    def dies_midway(cfg):
        it = real(cfg)
        yield next(it)
        yield next(it)
        raise KeyboardInterrupt
    monkeypatch.setattr(grouped, "iter_source_items", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        SubImageStore.build(_cfg(folder, tmp_path, num_proc=2))
    assert not list((tmp_path / "cache" / "subimages").iterdir())


def test_ordered_map_keeps_order_with_few_items_in_flight():
    produced = []

    def items():
        for i in range(12):
            produced.append(i)
            yield i
    seen = []
    for out in grouped.ordered_map(abs, items(), num_proc=2):
        seen.append(out)
        assert len(produced) - len(seen) <= 4  # 2 x num_proc ahead at most
    assert seen == list(range(12))
    with pytest.raises(ValueError, match="num_proc"):
        DataConfig(num_proc=0)


def test_writes_in_small_batches(folder, tmp_path):
    store = SubImageStore.build(_cfg(folder, tmp_path))
    with pa.ipc.open_stream(str(store.path / "subimages.arrow")) as reader:
        sizes = [b.num_rows for b in reader]
    assert sum(sizes) == len(store) and max(sizes) <= 32 and len(sizes) > 1
    with pa.ipc.open_stream(str(store.path / "sources.arrow")) as reader:
        assert max(b.num_rows for b in reader) <= 4


def _found_in(patch: np.ndarray, subs: list[np.ndarray]) -> bool:
    p = patch.shape[0]
    for s in subs:
        windows = np.lib.stride_tricks.sliding_window_view(s, (p, p, 3))[:, :, 0]
        if (windows == patch).all(axis=(2, 3, 4)).any():
            return True
    return False


def test_sample_patches(folder, tmp_path):
    store = SubImageStore.build(_cfg(folder, tmp_path))
    out = store.sample_patches(1, 6, 20, torch.Generator().manual_seed(3))
    assert out.shape == (6, 3, 20, 20) and out.dtype == torch.float32 and 0 <= out.min() <= out.max() <= 1
    subs = store.subimages(1)
    for patch in out:
        hwc = (patch.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        assert _found_in(hwc, subs)
    # reproducible, and independent of what other classes drew from their own generators
    store.sample_patches(0, 5, 20, torch.Generator().manual_seed(99))
    torch.testing.assert_close(store.sample_patches(1, 6, 20, torch.Generator().manual_seed(3)), out,
                               rtol=0, atol=0)
    assert not torch.equal(store.sample_patches(1, 6, 20, torch.Generator().manual_seed(4)), out)
    with pytest.raises(ValueError, match="larger than the 48x48"):
        store.sample_patches(0, 1, 64, torch.Generator())


def test_built_from_streamed_parquet(tmp_path, astronaut):
    import datasets

    rows = []
    for i, (y, x) in enumerate([(0, 0), (200, 100)]):
        buf = io.BytesIO()
        Image.fromarray(astronaut[y:y + 60, x:x + 70]).save(buf, "PNG")
        rows.append({"bytes": buf.getvalue(), "path": f"img{i}.png"})
    ds = datasets.Dataset.from_dict({"image": rows}).cast_column("image", datasets.Image())
    ds.to_parquet(tmp_path / "hr.parquet")
    cfg = DataConfig(source="hub", path=str(tmp_path / "hr.parquet"), streaming=True, crop_size=48,
                     step=24, cache_dir=str(tmp_path / "cache"))
    store = SubImageStore.build(cfg)
    assert store.class_names == ["img0", "img1"] and store.count(1) == count_subimages(60, 70, 48, 24, 0)
    np.testing.assert_array_equal(store.subimages(1)[0], astronaut[200:248, 100:148])


def test_nothing_usable(tmp_path, astronaut):
    root = tmp_path / "small"
    root.mkdir()
    Image.fromarray(astronaut[:30, :30]).save(root / "x.png")
    with pytest.raises(ValueError, match="no image of at least data.crop_size=48"):
        SubImageStore.build(_cfg(root, tmp_path))


def test_cache_list_and_prune_remove_killed_builds_and_old_caches(tmp_path, capsys):
    from hf_srdistill.cli import main as cli_main
    from hf_srdistill.data import cache

    cfg = DataConfig(source="mini", max_images=1, crop_size=96, step=96, cache_dir=str(tmp_path))
    SubImageStore.build(cfg)
    killed = tmp_path / "subimages" / ".deadbeef.x1y2"
    killed.mkdir()
    (killed / "subimages.arrow").write_bytes(b"half")
    entries = cache.list_caches(tmp_path)
    assert [e.complete for e in entries] == [False, True] and entries[1].classes == 1
    assert "mini split=train crop=96/96" in entries[1].source
    assert cli_main(["cache", "list", "--cache-dir", str(tmp_path)]) == 0
    assert "incomplete (killed build)" in capsys.readouterr().out
    assert cli_main(["cache", "prune", "--cache-dir", str(tmp_path)]) == 0  # only the killed build
    assert not killed.exists() and [e.complete for e in cache.list_caches(tmp_path)] == [True]
    assert [e.complete for e in cache.prune(tmp_path, older_than_days=0)] == [True]
    assert cache.list_caches(tmp_path) == []


def test_photos_covered_by_their_crops_are_not_stored_twice(folder, tmp_path, photos):
    # 48/24 covers every photo (the flush crop reaches the border): no photo bytes are kept
    covered = SubImageStore.build(_cfg(folder, tmp_path))
    assert covered._src.data.column("image").null_count == covered.num_classes
    # thresh_size 15 drops strips of <= 15 px: 100x130 loses 4 and 10 px, 72x60 loses 12 px
    # and are stored; 90x90 leaves 18 px, gets the flush crop, and is covered
    partial = SubImageStore.build(_cfg(folder, tmp_path, thresh_size=15))
    stored = partial._src.data.column("image").to_pylist()
    assert [s is not None for s in stored] == [True, False, True]
    for store in (covered, partial):
        for c, name in enumerate(store.class_names):
            np.testing.assert_array_equal(store.source_image(c), photos[name])


def test_cover_picks_the_fewest_crops_that_tile_the_grid():
    tops, lefts = subimage_positions(1356, 2040, 480, 240, 0)  # a DIV2K-sized photo: 4 x 8 crops
    grid = [(t, x) for t in tops for x in lefts]
    picked = [grid[i] for i in grouped._cover(grid, 480)]
    assert sorted({t for t, _ in picked}) == [0, 480, 876] and sorted({x for _, x in picked}) == [0, 480, 960, 1440, 1560]
    assert len(picked) == 15 and len(grid) == 40
    assert grouped._cover([(0, 0)], 480) == [0]
    with pytest.raises(ValueError, match="gaps"):
        grouped._cover([(0, 0), (0, 100)], 48)
