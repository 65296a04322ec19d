"""The embedded mini set: fixed split, RGB uint8, no overlap, pixels as scikit-image loads them."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data

from hf_srdistill.data.mini import MINI_SPLITS, load_mini


@pytest.fixture(scope="module")
def test_split():
    return load_mini("test")


def test_split_is_fixed_and_disjoint():
    assert list(MINI_SPLITS["train"]) == ["astronaut", "chelsea", "coffee", "rocket",
                                          "hubble_deep_field", "immunohistochemistry", "retina"]
    assert not set(MINI_SPLITS["train"]) & set(MINI_SPLITS["test"])
    assert not set(MINI_SPLITS["train"].values()) & set(MINI_SPLITS["test"].values())


def test_test_split_is_rgb_and_matches_skimage(test_split):
    assert [n for n, _ in test_split] == list(MINI_SPLITS["test"])
    for name, img in test_split:
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3, name
        # independent loader (skimage.data via imageio)
        ref = skimage.data.stereo_motorcycle()[0] if name == "motorcycle_left" else \
            getattr(skimage.data, name)()
        if ref.ndim == 2:
            ref = np.stack([ref] * 3, axis=-1)
        np.testing.assert_array_equal(img, ref, err_msg=name)


def test_train_split_shapes():
    train = dict(load_mini("train"))
    assert train["astronaut"].shape == (512, 512, 3)
    assert train["retina"].shape == (1411, 1411, 3)
    np.testing.assert_array_equal(train["chelsea"], skimage.data.chelsea())


def test_bad_split():
    with pytest.raises(ValueError, match="validation"):
        load_mini("validation")
