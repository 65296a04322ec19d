"""Test support shared by the latent tests (a uniquely named module: `conftest` is not importable
reliably when several test folders have one)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

SUPPORT = Path(__file__).parent / "support"


def write_tiny_pickle(path: Path, **kwargs) -> Path:
    """Pickle a tiny generator whose classes live in the bare module ``tiny_stylegan_net``.

    The module is imported from SUPPORT only for pickling and then forgotten, so loading
    must go through ``latent.source_dir`` like an official StyleGAN-XL pickle.
    """
    sys.path.insert(0, str(SUPPORT))
    try:
        importlib.import_module("tiny_stylegan_net").write_pickle(str(path), **kwargs)
    finally:
        sys.path.remove(str(SUPPORT))
        sys.modules.pop("tiny_stylegan_net", None)
    return path
