"""Shared data fixtures: small real photos that scikit-image ships (no download)."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.data


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """512x512 RGB uint8 photo."""
    return skimage.data.astronaut()


@pytest.fixture(scope="session")
def camera() -> np.ndarray:
    """512x512 grey uint8 photo."""
    return skimage.data.camera()
