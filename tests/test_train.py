import numpy as np
import pytest
import torch
from datasets import Dataset, Image as ImageFeature
from PIL import Image

from hf_srdistill import train as train_mod
from hf_srdistill.config import DataConfig, ModelConfig, TrainConfig, TrainJobConfig
from hf_srdistill.data import load_mini
from hf_srdistill.models import load_model


def tiny_job(out, **train_kw) -> TrainJobConfig:
    kw = dict(iterations=6, batch_size=2, patch_size=24, checkpoint_every=3, output_dir=str(out))
    kw.update(train_kw)
    return TrainJobConfig(
        data=DataConfig(source="mini", crop_size=96, step=96, max_images=2),
        model=ModelConfig(name="srcnn", scale=2, num_features=8),
        train=TrainConfig(**kw),
    )


def weights(folder):
    return {k: v.clone() for k, v in load_model(str(folder)).state_dict().items()}


def test_training_writes_a_loadable_model_and_provenance(tmp_path):
    out = train_mod.train_sr(tiny_job(tmp_path / "m"))
    assert (out / "model.safetensors").is_file() and (out / "provenance.json").is_file()
    assert not (out / "checkpoint").exists()  # finished runs clean up their resume state
    model = load_model(str(out))
    assert model.scale == 2


def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    reference = weights(train_mod.train_sr(tiny_job(tmp_path / "a")))

    real_save = train_mod.save_checkpoint

    def save_then_die(accelerator, ckpt, step):
        real_save(accelerator, ckpt, step)
        raise KeyboardInterrupt("simulated kill right after the step-3 checkpoint")

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train_sr(tiny_job(tmp_path / "b"))
    assert (tmp_path / "b" / "checkpoint" / "trainer_state.json").is_file()
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    resumed = weights(train_mod.train_sr(tiny_job(tmp_path / "b")))
    for name, tensor in reference.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0)


def test_trains_from_a_set_folder_loaded_with_datasets(tmp_path):
    photos = [img[:48, :48] for _, img in load_mini("train")[:3]]
    folder = tmp_path / "set"
    (folder / "data").mkdir(parents=True)
    ds = Dataset.from_dict({"hr": [Image.fromarray(p) for p in photos], "label": [0, 1, 2]})
    ds.cast_column("hr", ImageFeature()).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    loaded = train_mod.load_image_set(str(folder))
    assert len(loaded) == 3 and all(np.array_equal(a, b) for a, b in zip(loaded, photos))
    out = train_mod.train_sr(tiny_job(tmp_path / "m", train_set=str(folder), iterations=2))
    assert (out / "model.safetensors").is_file()


def test_a_set_without_hr_column_is_rejected(tmp_path):
    folder = tmp_path / "bad" / "data"
    folder.mkdir(parents=True)
    Dataset.from_dict({"x": [1]}).to_parquet(str(folder / "train-00000-of-00001.parquet"))
    with pytest.raises(ValueError, match="'hr' image column"):
        train_mod.load_image_set(str(tmp_path / "bad"))


def test_seeded_samples_depend_only_on_index():
    base = list(range(100))

    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return len(base)

        def __getitem__(self, i):
            return i, float(torch.rand(()))

    a = train_mod.SeededSamples(Noisy(), seed=1, total=50)
    b = train_mod.SeededSamples(Noisy(), seed=1, total=50)
    torch.manual_seed(123)  # global state must not matter
    assert [a[k] for k in (7, 3, 7)] == [b[k] for k in (7, 3, 7)]
    assert a[7] != train_mod.SeededSamples(Noisy(), seed=2, total=50)[7]
