"""hf_srdistill.upscale and `hf-srdistill upscale`: tiling equals untiled, any input mode, CLI files/folders."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

import hf_srdistill
from hf_srdistill.cli import main
from hf_srdistill.config import ModelConfig
from hf_srdistill.data.images import to_tensor
from hf_srdistill.models import build_model
from hf_srdistill.upscale import output_paths, upscale, upscale_tensor


def tiny(name: str = "srcnn", scale: int = 2):
    torch.manual_seed(0)
    extra = {"depth": 1} if name == "edsr" else {}
    return build_model(ModelConfig(name=name, scale=scale, num_features=4, **extra)).eval()


def photo(h: int = 37, w: int = 45, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w)[None, :, None] * np.linspace(0.3, 1, h)[:, None, None]
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("name,scale", [("srcnn", 2), ("edsr", 2), ("edsr", 3)])
def test_tiled_equals_untiled(name, scale):
    model = tiny(name, scale)
    lr = to_tensor(photo(70, 83)).unsqueeze(0)
    whole = upscale_tensor(model, lr, tile=0)
    tiled = upscale_tensor(model, lr, tile=32, overlap=12)
    assert tiled.shape == whole.shape == (1, 3, 70 * scale, 83 * scale)
    assert torch.allclose(tiled, whole, atol=1e-5, rtol=0), (tiled - whole).abs().max()
    # without context the tile seams differ: the test above is not vacuous
    assert (upscale_tensor(model, lr, tile=32, overlap=0) - whole).abs().max() > 1e-4


def test_api_accepts_pil_path_array_and_any_mode(tmp_path):
    model = tiny()
    rgb = photo()
    want = np.asarray(upscale(model, rgb))
    assert want.shape == (74, 90, 3) and want.dtype == np.uint8
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert np.array_equal(np.asarray(upscale(model, tmp_path / "a.png")), want)
    assert np.array_equal(np.asarray(upscale(model, str(tmp_path / "a.png"))), want)
    assert np.array_equal(np.asarray(upscale(model, Image.fromarray(rgb))), want)
    rgba = Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), "RGBA")
    assert np.array_equal(np.asarray(upscale(model, rgba)), want)
    grey = rgb[..., 0]
    grey_sr = upscale(model, Image.fromarray(grey, "L"))
    assert grey_sr.mode == "RGB" and np.array_equal(np.asarray(grey_sr), np.asarray(upscale(model, np.dstack([grey] * 3))))
    sixteen = grey.astype(np.uint16) * 257  # 16-bit grey: round(v / 257) recovers the 8-bit values
    assert np.array_equal(np.asarray(upscale(model, sixteen)), np.asarray(grey_sr))
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    assert np.array_equal(np.asarray(upscale(model, pal)), np.asarray(upscale(model, pal.convert("RGB"))))
    with pytest.raises(TypeError, match="PIL image"):
        upscale(model, 3)


def test_package_attribute_and_model_folder(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path / "m")
    want = np.asarray(upscale(model, photo()))
    assert callable(hf_srdistill.upscale)
    assert np.array_equal(np.asarray(hf_srdistill.upscale(str(tmp_path / "m"), photo())), want)
    assert np.array_equal(np.asarray(hf_srdistill.upscale(model, photo(), tile=16, overlap=12)), want)


def test_output_paths(tmp_path):
    (tmp_path / "in" / "sub").mkdir(parents=True)
    for rel in ("a.jpg", "sub/b.tif", "sub/.hidden.png", "notes.txt"):
        (tmp_path / "in" / rel).write_bytes(b"x")
    pairs = output_paths(tmp_path / "in", tmp_path / "out")
    assert [(s.relative_to(tmp_path).as_posix(), d.relative_to(tmp_path).as_posix()) for s, d in pairs] == [
        ("in/a.jpg", "out/a.png"), ("in/sub/b.tif", "out/sub/b.png")]
    assert output_paths(tmp_path / "in" / "a.jpg", tmp_path / "x.png") == [(tmp_path / "in" / "a.jpg", tmp_path / "x.png")]
    assert output_paths(tmp_path / "in" / "a.jpg", tmp_path / "o")[0][1] == tmp_path / "o" / "a.png"


def _model_dir(tmp_path):
    tiny().save_pretrained(tmp_path / "model")
    return str(tmp_path / "model")


def test_cli_folder_mirrors_paths_and_modes(tmp_path, capsys):
    model = _model_dir(tmp_path)
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    rgb = photo()
    Image.fromarray(rgb).save(src / "a.jpg", quality=95)
    Image.fromarray(rgb[..., 1], "L").save(src / "sub" / "grey.png")
    tifffile.imwrite(src / "sub" / "deep.tif", rgb.astype(np.uint16) * 257)
    Image.fromarray(rgb).convert("P").save(src / "sub" / "pal.png")
    rc = main(["upscale", str(src), str(tmp_path / "out"), "--model", model, "--tile", "16", "--overlap", "12"])
    assert rc == 0
    outs = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    assert outs == ["a.png", "sub/deep.png", "sub/grey.png", "sub/pal.png"]
    for rel in outs:
        with Image.open(tmp_path / "out" / rel) as im:
            assert im.mode == "RGB" and im.size == (90, 74)
    with Image.open(tmp_path / "out" / "sub" / "deep.png") as im:  # 16-bit TIFF == its 8-bit values
        assert np.array_equal(np.asarray(im), np.asarray(upscale(tiny(), rgb)))
    assert f"4 images upscaled x2 -> {tmp_path / 'out'}" in capsys.readouterr().out


def test_cli_single_file(tmp_path, capsys):
    model = _model_dir(tmp_path)
    Image.fromarray(photo()).save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--model", model, "--tile", "0"]) == 0
    with Image.open(tmp_path / "b.png") as im:
        assert np.array_equal(np.asarray(im), np.asarray(upscale(tiny(), photo())))
    assert main(["upscale", str(tmp_path / "a.png"), str(tmp_path / "dir"), "--model", model]) == 0
    assert (tmp_path / "dir" / "a.png").is_file()
    assert str(tmp_path / "dir" / "a.png") in capsys.readouterr().out


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys):
    Image.fromarray(photo()).save(tmp_path / "a.png")
    rc = main(["upscale", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--model", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert rc == 2 and "no model folder at" in err and len(err.strip().splitlines()) == 1
    model = _model_dir(tmp_path)
    assert main(["upscale", str(tmp_path / "missing.png"), str(tmp_path / "b.png"), "--model", model]) == 2
    assert "no image file or folder" in capsys.readouterr().err
    (tmp_path / "in").mkdir()
    Image.fromarray(photo()).save(tmp_path / "in" / "x.png")
    Image.fromarray(photo()).save(tmp_path / "in" / "x.jpg")
    assert main(["upscale", str(tmp_path / "in"), str(tmp_path / "out"), "--model", model]) == 2
    assert "would both be written" in capsys.readouterr().err
    assert main(["upscale", str(tmp_path / "in"), str(tmp_path / "o.png"), "--model", model]) == 2
    assert main(["upscale", str(tmp_path / "a.png"), str(tmp_path / "o.jpg"), "--model", model]) == 2
    assert main(["upscale", str(tmp_path / "a.png"), str(tmp_path / "o.png"), "--model", model, "--tile", "-1"]) == 2
    assert not (tmp_path / "out").exists() and not (tmp_path / "o.png").exists()


def test_cli_skips_corrupt_files_and_exits_1(tmp_path, capsys):
    model = _model_dir(tmp_path)
    (tmp_path / "in").mkdir()
    Image.fromarray(photo()).save(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "bad.png").write_bytes(b"not a png")
    assert main(["upscale", str(tmp_path / "in"), str(tmp_path / "out"), "--model", model]) == 1
    out = capsys.readouterr().out
    assert "1 image upscaled" in out and "1 skipped" in out and "bad.png" in out
    assert (tmp_path / "out" / "good.png").is_file() and not (tmp_path / "out" / "bad.png").exists()
