"""The embedded default: real photographs that scikit-image ships inside its wheel.

No download is ever needed (files are read from ``skimage/data``; pooch is not used). The
split is fixed so results are comparable across runs: the seven colour photos train, and
seven held-out photos (one colour, six grey, converted to RGB) test. ``motorcycle_right``
is left out on purpose: it is the stereo partner of ``motorcycle_left`` and would leak the
test scene into training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hf_srdistill.data.errors import DataNotFoundError
from hf_srdistill.data.images import load_image

__all__ = ["MINI_SPLITS", "mini_data_dir", "load_mini"]

# name -> file in skimage/data (names follow the skimage.data function names)
MINI_SPLITS: dict[str, dict[str, str]] = {
    "train": {
        "astronaut": "astronaut.png",
        "chelsea": "chelsea.png",
        "coffee": "coffee.png",
        "rocket": "rocket.jpg",
        "hubble_deep_field": "hubble_deep_field.jpg",
        "immunohistochemistry": "ihc.png",
        "retina": "retina.jpg",
    },
    "test": {
        "motorcycle_left": "motorcycle_left.png",
        "camera": "camera.png",
        "coins": "coins.png",
        "moon": "moon.png",
        "brick": "brick.png",
        "grass": "grass.png",
        "gravel": "gravel.png",
    },
}


def mini_data_dir() -> Path:
    import skimage

    return Path(skimage.__file__).resolve().parent / "data"


def load_mini(split: str = "train") -> list[tuple[str, np.ndarray]]:
    """``[(name, HWC uint8 RGB)]`` for the fixed ``train`` or ``test`` split, in a fixed order."""
    if split not in MINI_SPLITS:
        raise ValueError(f"mini split must be one of {sorted(MINI_SPLITS)}, got {split!r}")
    root = mini_data_dir()
    out = []
    for name, filename in MINI_SPLITS[split].items():
        path = root / filename
        if not path.is_file():
            raise DataNotFoundError(f"mini photo {name!r} not found at {path}; reinstall "
                                    "scikit-image (its wheel ships these files)")
        out.append((name, load_image(path)))
    return out
