"""Keep every `datasets` cache write of the data tests inside a temporary folder."""

from __future__ import annotations

import datasets
import pytest


@pytest.fixture(autouse=True)
def _isolated_hf_datasets_cache(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.mktemp("hf_datasets_cache")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", root)
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", root / "downloads")
    monkeypatch.setattr(datasets.config, "EXTRACTED_DATASETS_PATH", root / "downloads" / "extracted")
