"""Image normalisation and decoding on real photos and hand-made bad files."""

from __future__ import annotations

import logging
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from hf_srdistill.data.images import (CorruptImageError, load_image, mod_crop, to_rgb_uint8,
                                      to_tensor, to_uint8)


def test_grey_becomes_rgb(camera):
    out = to_rgb_uint8(camera[:20, :30], "camera")
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], camera[:20, :30])
    np.testing.assert_array_equal(to_rgb_uint8(camera[:20, :30, None]), out)


def test_rgba_opaque_dropped_silently(astronaut, caplog):
    rgba = np.dstack([astronaut[:16, :16], np.full((16, 16), 255, np.uint8)])
    with caplog.at_level(logging.WARNING):
        out = to_rgb_uint8(rgba, "opaque")
    np.testing.assert_array_equal(out, astronaut[:16, :16])
    assert not caplog.records


def test_rgba_transparent_warns_and_keeps_colours(astronaut, caplog):
    alpha = np.full((16, 16), 255, np.uint8)
    alpha[:4] = 0  # a quarter transparent
    with caplog.at_level(logging.WARNING):
        out = to_rgb_uint8(np.dstack([astronaut[:16, :16], alpha]), "sticker")
    np.testing.assert_array_equal(out, astronaut[:16, :16])
    assert "sticker" in caplog.text and "25.0%" in caplog.text


def test_pil_palette_and_float_alpha(astronaut, caplog):
    pal = Image.fromarray(astronaut[:16, :16]).convert("P")
    np.testing.assert_array_equal(to_rgb_uint8(pal), np.asarray(pal.convert("RGB")))
    half = np.dstack([np.zeros((4, 4, 3)), np.full((4, 4), 0.5)])
    with caplog.at_level(logging.WARNING):
        to_rgb_uint8(half, "half-transparent")
    assert "100.0%" in caplog.text


def test_grey_alpha(camera):
    ga = np.dstack([camera[:8, :8], np.full((8, 8), 255, np.uint8)])
    np.testing.assert_array_equal(to_rgb_uint8(ga)[..., 1], camera[:8, :8])


def test_uint16_scaled_like_im2uint8():
    # v / 257: 128 -> 0.498 -> 0, 129 -> 0.502 -> 1, 385 -> 1.498 -> 1, 386 -> 1.502 -> 2
    v = np.array([[0, 128, 129, 257, 385, 386, 32896, 65535]], np.uint16)
    np.testing.assert_array_equal(to_rgb_uint8(v)[0, :, 0], [0, 0, 1, 1, 1, 2, 128, 255])


def test_bool_and_float():
    np.testing.assert_array_equal(to_rgb_uint8(np.array([[True, False]]))[0, :, 0], [255, 0])
    f = np.array([[0.0, 0.5, 1.0, 0.2]])
    np.testing.assert_array_equal(to_rgb_uint8(f)[0, :, 2], [0, 128, 255, 51])


@pytest.mark.parametrize("arr,match", [
    (np.array([[0.0, 1.5]]), r"\[0, 1\]"),
    (np.array([[np.nan, 0.5]]), "finite"),
    (np.zeros((4, 4), np.int32), "int32"),
    (np.zeros((4, 4, 5), np.uint8), "5"),
    (np.zeros((0, 4, 3), np.uint8), "empty"),
])
def test_bad_arrays(arr, match):
    with pytest.raises(ValueError, match=match):
        to_rgb_uint8(arr, "bad")


def test_load_png_jpeg_roundtrip(tmp_path, astronaut):
    crop = astronaut[:40, :50]
    Image.fromarray(crop).save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), crop)
    Image.fromarray(crop).save(tmp_path / "a.jpg", quality=95)
    jpg = load_image(tmp_path / "a.jpg")
    assert jpg.shape == (40, 50, 3) and np.abs(jpg.astype(int) - crop).mean() < 8
    Image.fromarray(crop).convert("P").save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").shape == (40, 50, 3)


def test_load_grey_rgba_16bit(tmp_path, camera, astronaut):
    Image.fromarray(camera[:10, :12]).save(tmp_path / "g.png")
    assert load_image(tmp_path / "g.png").shape == (10, 12, 3)
    rgba = np.dstack([astronaut[:10, :10], np.full((10, 10), 255, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(load_image(tmp_path / "rgba.png"), astronaut[:10, :10])
    v16 = np.array([[0, 129, 386, 65535]], np.uint16)
    Image.fromarray(v16).save(tmp_path / "g16.png")
    np.testing.assert_array_equal(load_image(tmp_path / "g16.png")[0, :, 0], [0, 1, 2, 255])
    import tifffile

    rgb16 = np.array([[[0, 129, 386], [65535, 32896, 257]]], np.uint16)
    tifffile.imwrite(tmp_path / "c16.tif", rgb16)
    np.testing.assert_array_equal(load_image(tmp_path / "c16.tif"), [[[0, 1, 2], [255, 128, 1]]])


def _write_png16_rgb(path, arr):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    h, w, _ = arr.shape
    raw = b"".join(b"\x00" + arr[i].astype(">u2").tobytes() for i in range(h))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_16bit_colour_png_warns(tmp_path, caplog):
    _write_png16_rgb(tmp_path / "c16.png", np.array([[[0, 65535, 32896]]], np.uint16))
    with caplog.at_level(logging.WARNING):
        out = load_image(tmp_path / "c16.png")
    np.testing.assert_array_equal(out, [[[0, 255, 128]]])
    assert "16-bit colour PNG" in caplog.text


def test_exif_orientation_applied(tmp_path, astronaut):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.fromarray(astronaut[:20, :30]).save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").shape == (30, 20, 3)


def test_corrupt_truncated_missing(tmp_path, astronaut):
    (tmp_path / "junk.png").write_bytes(b"not an image at all" * 10)
    with pytest.raises(CorruptImageError, match="junk.png"):
        load_image(tmp_path / "junk.png")
    Image.fromarray(astronaut[:64, :64]).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptImageError, match="cut.png"):
        load_image(tmp_path / "cut.png")
    with pytest.raises(FileNotFoundError, match="nope.png"):
        load_image(tmp_path / "nope.png")


def test_mod_crop(astronaut):
    assert mod_crop(astronaut[:10, :11], 3).shape == (9, 9, 3)
    assert mod_crop(astronaut[:12, :12], 4).shape == (12, 12, 3)
    t = torch.zeros(2, 3, 10, 13)
    assert mod_crop(t, 4).shape == (2, 3, 8, 12)
    with pytest.raises(ValueError, match="integer"):
        mod_crop(astronaut, 2.5)
    with pytest.raises(ValueError, match="smaller"):
        mod_crop(astronaut[:2, :5], 3)


def test_tensor_roundtrip(astronaut):
    crop = astronaut[:17, :9]
    t = to_tensor(crop)
    assert t.shape == (3, 17, 9) and t.dtype == torch.float32 and t.max() <= 1
    np.testing.assert_array_equal(to_uint8(t), crop)
    np.testing.assert_array_equal(to_uint8(t[None])[0], crop)


def test_to_uint8_clamps_rounds_and_rejects_nan():
    t = torch.tensor([-0.1, 1.2, 0.2, 100.4 / 255, 100.6 / 255]).view(1, 1, 5)
    np.testing.assert_array_equal(to_uint8(t)[0, :, 0], [0, 255, 51, 100, 101])
    with pytest.raises(ValueError, match="NaN"):
        to_uint8(torch.full((3, 2, 2), float("nan")))
    with pytest.raises(ValueError, match="uint8"):
        to_tensor(np.zeros((4, 4, 3), np.float32))
