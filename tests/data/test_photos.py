"""The photos suite: manifest checks, resize to 2040 px, the cache, and the errors (no packages needed)."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hf_srdistill.config import DataConfig
from hf_srdistill.data import photos, sources, testsets
from hf_srdistill.data.errors import DataNotFoundError
from hf_srdistill.data.photos import INSTALL_COMMAND, LONG_SIDE, load_manifest, manifest_digest, prepare_photos

ROOT = Path(__file__).resolve().parents[2]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _gradient(w: int, h: int, mode: str = "RGB") -> Image.Image:
    # smooth content: PNG/JPEG encode fast and a resize has something to interpolate
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
    rgb = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1).astype(np.uint8)
    img = Image.fromarray(rgb)
    return img.convert(mode) if mode != "RGB" else img


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A 3-photo manifest (a large JPEG and a small grey PNG in train, a small RGBA PNG in test)."""
    root = tmp_path / "root"
    specs = [("big", "usr/share/fake-a/big.jpg", "train", _gradient(2500, 1200), "fake-a"),
             ("small", "usr/share/fake-a/small.png", "train", _gradient(300, 200, "L"), "fake-a"),
             ("held", "usr/share/fake-b/held.png", "test", _gradient(64, 48, "RGBA"), "fake-b")]
    entries = []
    for name, rel, split, img, package in specs:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path)
        entries.append({"name": name, "package": package, "path": rel, "sha256": _sha(path),
                        "width": img.width, "height": img.height, "licence": "GPL-2.0-or-later",
                        "author": "test", "split": split})
    manifest = {"packages": {"fake-a": "1.0-1", "fake-b": "2.0-1"}, "photos": entries}
    monkeypatch.setattr(photos, "load_manifest", lambda: manifest)
    return root, manifest


def test_resize_rgb_and_layout(fake, tmp_path):
    root, manifest = fake
    out = prepare_photos(tmp_path / "cache", "train", roots=(root,))
    assert out == tmp_path / "cache" / "photos" / manifest_digest(manifest) / "train"
    assert sorted(p.name for p in out.iterdir()) == ["big.png", "small.png"]
    with Image.open(out / "big.png") as big, Image.open(out / "small.png") as small:
        assert big.size == (LONG_SIDE, round(1200 * LONG_SIDE / 2500)) and big.mode == "RGB"
        assert small.size == (300, 200) and small.mode == "RGB"  # smaller than 2040: never upscaled
    test = prepare_photos(tmp_path / "cache", "test", roots=(root,))
    with Image.open(test / "held.png") as held:
        assert held.size == (64, 48) and held.mode == "RGB"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_cache_is_reused_and_an_incomplete_one_rebuilt(fake, tmp_path):
    root, _ = fake
    out = prepare_photos(tmp_path / "cache", "train", roots=(root,))
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    # a complete folder is returned without reading (or even finding) the sources
    assert prepare_photos(tmp_path / "cache", "train", roots=(tmp_path / "nowhere",)) == out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    (out / "small.png").unlink()
    assert prepare_photos(tmp_path / "cache", "train", roots=(root,)) == out
    assert sorted(p.name for p in out.iterdir()) == ["big.png", "small.png"]


def test_missing_files_name_the_apt_get_line(fake, tmp_path):
    root, _ = fake
    (root / "usr/share/fake-b/held.png").unlink()
    with pytest.raises(DataNotFoundError) as err:
        prepare_photos(tmp_path / "cache", "train", roots=(root,))
    msg = str(err.value)
    assert INSTALL_COMMAND in msg and "apt-get install mate-backgrounds plasma-workspace-wallpapers" in msg
    assert "missing 1 of its 3" in msg and "fake-b" in msg
    with pytest.raises(DataNotFoundError, match="missing 3 of its 3"):
        prepare_photos(tmp_path / "cache", "test", roots=(tmp_path / "empty",))
    assert not (tmp_path / "cache" / "photos").exists() or not any((tmp_path / "cache" / "photos").rglob("*.png"))


def test_sha_mismatch_names_the_file(fake, tmp_path):
    root, _ = fake
    bad = root / "usr/share/fake-a/small.png"
    _gradient(300, 201, "L").save(bad)
    with pytest.raises(DataNotFoundError) as err:
        prepare_photos(tmp_path / "cache", "train", roots=(root,))
    msg = str(err.value)
    assert str(bad) in msg and "small" in msg and "version" in msg and "fake-a 1.0-1" in msg
    assert "big.jpg" not in msg
    # the test split does not use that file and is unaffected
    prepare_photos(tmp_path / "cache", "test", roots=(root,))


def test_roots_are_searched_in_order(fake, tmp_path):
    root, _ = fake
    out = prepare_photos(tmp_path / "cache", "test", roots=(tmp_path / "empty", root))
    assert (out / "held.png").is_file()


def test_unknown_split():
    with pytest.raises(ValueError, match="train"):
        prepare_photos("unused", "validation")


def test_data_source_and_test_set(fake, tmp_path, monkeypatch):
    root, manifest = fake
    monkeypatch.setattr(sources, "prepare_photos", functools.partial(prepare_photos, roots=(root,)))
    cfg = DataConfig(source="photos", split="train", cache_dir=str(tmp_path / "cache"))
    images = dict(sources.iter_source_images(cfg))
    assert list(images) == ["big", "small"]
    assert images["big"].shape == (round(1200 * LONG_SIDE / 2500), LONG_SIDE, 3) and images["big"].dtype == np.uint8
    before = sources.source_fingerprint(cfg)
    assert before != sources.source_fingerprint(DataConfig(source="photos", split="test", cache_dir=cfg.cache_dir))
    manifest["photos"][0]["sha256"] = "0" * 64  # another manifest: another cache key
    assert sources.source_fingerprint(cfg) != before

    monkeypatch.setattr(testsets, "prepare_photos",
                        lambda _cache, split: prepare_photos(tmp_path / "cache2", split, roots=(root,)))
    test = testsets.load_test_set("photos")
    assert [n for n, _ in test] == ["held"] and test[0][1].shape == (48, 64, 3)


def test_real_manifest_is_valid():
    manifest = load_manifest()
    entries = manifest["photos"]
    names = [e["name"] for e in entries]
    assert len(set(names)) == len(names) and all(n.isidentifier() and n.islower() for n in names)
    assert len({e["path"] for e in entries}) == len(entries)
    splits = [e["split"] for e in entries]
    assert set(splits) == {"train", "test"} and splits.count("train") == 16 and splits.count("test") == 7
    for e in entries:
        assert len(e["sha256"]) == 64 and int(e["sha256"], 16) >= 0
        assert e["licence"] and e["author"] and e["package"] in manifest["packages"]
        assert not e["path"].startswith("/") and e["width"] > 0 and e["height"] > 0
        assert max(e["width"], e["height"]) >= 1280
    assert set(manifest["packages"]) == {"mate-backgrounds", "plasma-workspace-wallpapers"}
    assert len(manifest_digest()) == 16


def test_configs_name_the_photos_source():
    from hf_srdistill.config import DistillJobConfig
    from hf_srdistill.configio import load_config
    from hf_srdistill.study import SuiteConfig, plan_sets

    job = load_config(DistillJobConfig, ROOT / "configs" / "distill_photos_pool.yaml", [])
    assert (job.data.source, job.data.crop_size, job.data.step) == ("photos", 480, 240)
    suite_dir = ROOT / "configs" / "study" / "photos"
    suite = load_config(SuiteConfig, suite_dir / "suite.yaml", [])
    assert suite.eval.test_sets == ["photos"]
    plans = plan_sets(suite, suite_dir)
    assert all(p.job.data.source == "photos" and p.job.data.crop_size == 480 for p in plans if p.job is not None)


_INSTALLED = all((Path("/") / e["path"]).is_file() for e in load_manifest()["photos"])


@pytest.mark.skipif(not _INSTALLED, reason="needs: apt-get install mate-backgrounds plasma-workspace-wallpapers")
def test_installed_packages_match_the_manifest():
    for e in load_manifest()["photos"]:
        path = Path("/") / e["path"]
        assert _sha(path) == e["sha256"], path
        with Image.open(path) as img:
            assert img.size == (e["width"], e["height"]), path
