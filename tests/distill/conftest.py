"""Tiny distillation jobs on three real photos (scikit-image's), small enough for CPU tests."""

from __future__ import annotations

import pytest

from hf_srdistill.config import DataConfig, DistillConfig, DistillJobConfig, ModelConfig


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One sub-image cache for the whole session: the store is built once."""
    return str(tmp_path_factory.mktemp("subimage_cache"))


@pytest.fixture
def tiny_job(cache_dir, tmp_path):
    """Factory: 3 classes, 64-px sub-images, 32-px synthetic images, a 4-feature SRCNN."""

    def make(**distill) -> DistillJobConfig:
        base = dict(ipc=2, image_size=32, init="downscaled", iterations=4, outer_loop=2, inner_loop=1,
                    batch_real=3, batch_net=4, lr_img=0.1, checkpoint_every=2, snapshot_every=1,
                    classes_per_step=2, reference=ModelConfig(name="srcnn", scale=2, num_features=4),
                    output_dir=str(tmp_path / "set"))
        base.update(distill)
        data = DataConfig(source="mini", max_images=3, crop_size=64, step=64, cache_dir=cache_dir)
        return DistillJobConfig(data=data, distill=DistillConfig(**base))

    return make


@pytest.fixture
def store(tiny_job):
    from hf_srdistill.data.grouped import SubImageStore

    return SubImageStore.build(tiny_job().data)


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny convolutions: a second thread only adds synchronisation, and CI cores are shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
