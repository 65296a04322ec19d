"""Held-out photos (the mini test split) with bicubic-x4 reconstructions as realistic SR errors."""

from __future__ import annotations

import numpy as np
import pytest

from hf_srdistill.data.imresize import imresize_uint8
from hf_srdistill.data.mini import load_mini

HELD_OUT = ("motorcycle_left", "camera", "coins")


@pytest.fixture(scope="session")
def photo_pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    """[(name, sr, hr)]: 192x256 HR crops and their x4 bicubic down-up versions (HWC uint8)."""
    photos = dict(load_mini("test"))
    pairs = []
    for name in HELD_OUT:
        hr = photos[name][40:232, 60:316]
        sr = imresize_uint8(imresize_uint8(hr, 0.25), 4)
        pairs.append((name, sr, hr))
    return pairs
