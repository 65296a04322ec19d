"""Sub-image grid: hand-worked counts, crops equal slices, bad sizes."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hf_srdistill.data.subimages import count_subimages, extract_subimages, subimage_positions


def test_typical_div2k_photo_by_hand():
    # 1356 rows: 0,240,480,720 fit (720+480=1200 <= 1356); 156 px left > 0 -> add 876: 5.
    # 2040 cols: 0..1440 step 240 fit (7); 1920 leaves 120 > 0 -> add 1560: 8.  5 * 8 = 40.
    tops, lefts = subimage_positions(1356, 2040)
    assert tops == [0, 240, 480, 720, 876]
    assert lefts == [0, 240, 480, 720, 960, 1200, 1440, 1560]
    assert count_subimages(1356, 2040) == 40


@pytest.mark.parametrize("h,w,crop,step,thresh,expected", [
    (480, 480, 480, 240, 0, 1),      # exactly one crop, nothing left over
    (720, 480, 480, 240, 0, 2),      # 0, 240 and 240 + 480 = 720: no extra
    (721, 480, 480, 240, 0, 3),      # 1 px left over > 0 -> extra crop at 241
    (721, 480, 480, 240, 1, 2),      # 1 px left over is not > thresh 1
    (1020, 2040, 480, 240, 0, 4 * 8),  # rows 0,240,480 end 960; 60 left -> 540
    (10, 10, 4, 3, 0, 9),            # 0,3,6 ends 10: no extra
    (11, 10, 4, 3, 0, 4 * 3),        # rows 0,3,6 end 10, 1 left -> 7
])
def test_count_formula(h, w, crop, step, thresh, expected):
    assert count_subimages(h, w, crop, step, thresh) == expected


def test_count_matches_brute_force():
    # an independent statement of the rule: a start is kept if it is on the step grid and
    # fits, plus the flush-right start when the grid misses more than thresh pixels.
    def brute(n, crop, step, thresh):
        grid = [s for s in range(n) if s % step == 0 and s + crop <= n]
        return len(grid) + (1 if n - (grid[-1] + crop) > thresh else 0)

    rng = np.random.default_rng(0)
    for _ in range(200):
        crop = int(rng.integers(1, 40))
        step = int(rng.integers(1, 40))
        thresh = int(rng.integers(0, 10))
        h, w = (int(v) for v in rng.integers(crop, 200, size=2))
        assert count_subimages(h, w, crop, step, thresh) == brute(h, crop, step, thresh) * brute(
            w, crop, step, thresh)


def test_crops_equal_slices(astronaut):
    img = astronaut[:300, :250]
    crops = extract_subimages(img, crop_size=128, step=64)
    # rows 0,64,128 (ends 256, 44 left -> 172); cols 0,64 (ends 192, 58 left -> 122)
    starts = [(t, l) for t in (0, 64, 128, 172) for l in (0, 64, 122)]
    assert len(crops) == len(starts) == count_subimages(300, 250, 128, 64)
    for crop, (t, l) in zip(crops, starts):
        assert crop.flags["C_CONTIGUOUS"] and crop.dtype == np.uint8
        np.testing.assert_array_equal(crop, img[t:t + 128, l:l + 128])


def test_pil_and_grey_input(camera):
    crops = extract_subimages(Image.fromarray(camera[:100, :100]), crop_size=50, step=50)
    assert len(crops) == 4 and crops[3].shape == (50, 50, 3)  # PIL input comes back as RGB
    np.testing.assert_array_equal(crops[3][..., 1], camera[50:100, 50:100])
    grey = extract_subimages(camera[:100, :100], crop_size=50, step=50)
    assert grey[3].shape == (50, 50)  # arrays are cropped as they are


def test_image_smaller_than_crop():
    with pytest.raises(ValueError, match="100x479"):
        extract_subimages(np.zeros((100, 479, 3), np.uint8), crop_size=480)
    with pytest.raises(ValueError, match="step"):
        count_subimages(500, 500, 480, 0)
