"""Self-labelling figures: label text, wrapping that never drops a character, exact canvases."""

import numpy as np
import pytest

from hf_srdistill.figures import (fits_width, font_px_for, labelled_row_figure, render, text_strip, text_width,
                                  tile_label, wrap_text)


def test_tile_label_formats_name_psnr_and_ssim():
    assert tile_label("srcnn on distilled", 31.2, 0.90123) == "srcnn on distilled\nPSNR 31.20 dB / SSIM 0.9012"
    assert tile_label("oracle", float("inf"), 1.0) == "oracle\nPSNR ∞ dB / SSIM 1.0000"
    assert tile_label("HR") == "HR"
    # too narrow for one metrics line: PSNR and SSIM go on lines of their own, numbers unbroken
    narrow = tile_label("bicubic", 27.123, 0.8761, fits=fits_width(90, 9))
    assert narrow == "bicubic\nPSNR 27.12 dB\nSSIM 0.8761"


def test_long_names_wrap_in_full_and_every_line_fits():
    name = "srcnn on pixel_pretrained_ref_ipc1_at_x4"
    fits = fits_width(90, 9)
    lines = wrap_text(name, fits)
    assert len(lines) > 1 and all(fits(line) for line in lines)
    assert "".join(lines).replace(" ", "") == name.replace(" ", "")  # nothing cut
    assert lines[0].endswith("_") or lines[0].endswith("on")  # broken after a separator
    # a single token wider than the tile is broken between characters, still in full
    token = "x" * 60
    pieces = wrap_text(token, fits)
    assert "".join(pieces) == token and all(fits(p) for p in pieces)
    label = tile_label(name, 30.0, 0.9, fits=fits)
    assert label.split("\n")[-2:] == ["PSNR 30.00 dB", "SSIM 0.9000"]
    assert "".join(label.split("\n")[:-2]).replace(" ", "") == name.replace(" ", "")


def test_text_is_measured_and_font_follows_the_tile():
    assert text_width("WWWW", 10) > text_width("iiii", 10) > 0
    assert text_width("abc", 20) == pytest.approx(2 * text_width("abc", 10), rel=0.15)
    assert font_px_for(32) == 8 and font_px_for(96) == 9 and font_px_for(400) == 11


def test_labelled_row_keeps_tiles_pixel_for_pixel_and_draws_text_in_the_band():
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 256, (40, 120, 3), dtype=np.uint8)
    fig, band = labelled_row_figure(tiles, 40, ["a", "b\nc", "d"], 8)
    img = render(fig)
    assert img.shape == (40 + band, 120, 3)
    assert np.array_equal(img[:40], tiles)
    for i in range(3):  # ink under every tile, and the band's last row is clear (no clipped text)
        assert img[40:, 40 * i:40 * (i + 1)].min() < 128
    assert (img[-1] == 255).all()
    blank, _ = labelled_row_figure(tiles, 40, ["", "", ""], 8)
    assert (render(blank)[40:40 + band] == 255).all()


def test_text_strip_grows_instead_of_cutting():
    short, long = text_strip("x", 60, 14), text_strip("latent_gan_inversion_ipc1_with_a_long_tail", 60, 14)
    assert short.shape[0] >= 14 and short.shape[1:] == (60, 3) and long.shape[1] == 60 and long.shape[0] > 3 * short.shape[0]
    assert (long[-1] == 255).all() and long.min() < 128
