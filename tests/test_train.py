import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset, Image as ImageFeature
from PIL import Image

from hf_srdistill import train as train_mod
from hf_srdistill.data.set_folder import write_manifest
from hf_srdistill.config import DataConfig, ModelConfig, TrainConfig, TrainJobConfig
from hf_srdistill.data import load_mini
from hf_srdistill.configio import ConfigError
from hf_srdistill.models import load_model

ROOT = Path(__file__).resolve().parents[1]


def tiny_job(out, **train_kw) -> TrainJobConfig:
    kw = dict(iterations=6, batch_size=2, patch_size=24, checkpoint_every=3, output_dir=str(out))
    kw.update(train_kw)
    return TrainJobConfig(
        data=DataConfig(source="mini", crop_size=96, step=96, max_images=2),
        model=ModelConfig(name="srcnn", scale=2, num_features=8),
        train=TrainConfig(**kw),
    )


def _set_folder(folder, photos, replace=False):
    """A set folder as write_image_set leaves it (parquet + manifest)."""
    from hf_srdistill.distill.export import write_image_set

    x = torch.from_numpy(np.stack(photos)).permute(0, 3, 1, 2).float() / 255
    return write_image_set(folder, x, list(range(len(photos))), [f"p{i}" for i in range(len(photos))],
                           [0] * len(photos), tiny_job(folder))


def weights(folder):
    return {k: v.clone() for k, v in load_model(str(folder)).state_dict().items()}


def test_training_writes_a_loadable_model_and_provenance(tmp_path):
    out = train_mod.train_sr(tiny_job(tmp_path / "m"))
    assert (out / "model.safetensors").is_file() and (out / "provenance.json").is_file()
    assert not (out / "checkpoint").exists()  # finished runs clean up their resume state
    model = load_model(str(out))
    assert model.scale == 2


def _rows(folder):
    """history.csv without wall_s (the only column a resume may change)."""
    from hf_srdistill.history import read_history

    return [{k: v for k, v in row.items() if k != "wall_s"} for row in read_history(Path(folder) / "history.csv")]


def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    # log_every=2 with the checkpoint at step 3: the checkpoint falls between two logged steps
    reference = weights(train_mod.train_sr(tiny_job(tmp_path / "a", log_every=2)))

    real_save = train_mod.save_checkpoint

    def save_then_die(*args):
        real_save(*args)
        raise KeyboardInterrupt("simulated kill right after the step-3 checkpoint")

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train_sr(tiny_job(tmp_path / "b", log_every=2))
    assert (tmp_path / "b" / "checkpoint" / "trainer_state.json").is_file()
    assert [r["step"] for r in _rows(tmp_path / "b")] == ["2"]  # saved with the checkpoint
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    resumed = weights(train_mod.train_sr(tiny_job(tmp_path / "b", log_every=2)))
    for name, tensor in reference.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0)
    # the resumed file continues the old one: no row twice, none missing, same values to the bit
    assert _rows(tmp_path / "b") == _rows(tmp_path / "a")
    assert [r["step"] for r in _rows(tmp_path / "a")] == ["2", "4", "6"]


def test_history_rows_written_past_the_checkpoint_are_dropped_on_resume(tmp_path, monkeypatch):
    """Killed after the history was saved but before its checkpoint: the rows past the last
    checkpoint are redone once, not kept twice."""
    train_mod.train_sr(tiny_job(tmp_path / "a", iterations=9, log_every=2))
    real_save = train_mod.save_checkpoint
    calls = {"n": 0}

    def die_before_the_second(*args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill between history.csv and the step-6 checkpoint")
        real_save(*args)

    monkeypatch.setattr(train_mod, "save_checkpoint", die_before_the_second)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train_sr(tiny_job(tmp_path / "b", iterations=9, log_every=2))
    assert [r["step"] for r in _rows(tmp_path / "b")] == ["2", "4", "6"]  # ahead of the step-3 checkpoint
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    train_mod.train_sr(tiny_job(tmp_path / "b", iterations=9, log_every=2))
    assert _rows(tmp_path / "b") == _rows(tmp_path / "a")
    assert [r["step"] for r in _rows(tmp_path / "a")] == ["2", "4", "6", "8", "9"]


def test_history_loss_curve_and_full_model_card_are_written_when_training_ends(tmp_path):
    from huggingface_hub import ModelCard

    from hf_srdistill.history import read_history
    from hf_srdistill.hub.cards import model_card

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "eval_results.json").write_text('{"scale": 2, "results": {}}')  # of an older model
    out = train_mod.train_sr(tiny_job(tmp_path / "m", iterations=7, log_every=3))
    assert not (out / "eval_results.json").exists()  # it would put the old numbers in the model-index
    rows = read_history(out / "history.csv")
    assert list(rows[0]) == ["step", "loss", "lr", "wall_s"]
    assert [int(r["step"]) for r in rows] == [3, 6, 7]  # every log_every steps, and the last
    assert float(rows[0]["lr"]) == pytest.approx(1e-3 * (0.01 + 0.99 * (1 + np.cos(np.pi * 2 / 7)) / 2))
    assert all(float(r["loss"]) > 0 for r in rows)
    walls = [float(r["wall_s"]) for r in rows]
    assert walls == sorted(walls) and walls[0] >= 0
    with Image.open(out / "loss_curve.png") as im:
        assert im.format == "PNG" and im.size[0] > 100
    card = ModelCard.load(out / "README.md")  # the full card, not the mixin's stub
    assert "## Training" in card.text and "not been evaluated yet" in card.text
    # one licence rule at save time and at push time: the training data's (mini: "other")
    pushed = model_card(out, repo_id="someone/srcnn")
    assert card.data.license == pushed.data.license == "other"
    assert card.data.license_name == pushed.data.license_name == "scikit-image-data-terms"
    assert "huggingface.co" not in card.text


def test_an_unknown_tracker_is_a_config_error():
    from hf_srdistill.configio import from_dict

    with pytest.raises(ValueError, match=r"train.log_with: unknown tracker 'tensorbored'; choose from .*tensorboard"):
        TrainConfig(log_with=["tensorbored"])
    with pytest.raises(ValueError, match="distill.log_with: unknown tracker 'nope'"):
        from hf_srdistill.config import DistillConfig

        DistillConfig(log_with=["nope"])
    with pytest.raises(ValueError, match="unknown tracker"):
        from_dict(TrainJobConfig, {"train": {"log_with": ["tensorbored"]}})


def test_tensorboard_tracking(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed in this environment")
    out = train_mod.train_sr(tiny_job(tmp_path / "m", log_with=["tensorboard"], log_every=2))
    assert list((out / "logs").rglob("events.out.tfevents.*"))


def test_a_tracker_that_is_not_installed_is_refused_before_training(tmp_path, monkeypatch):
    from accelerate import tracking

    monkeypatch.setattr(tracking, "get_available_trackers", lambda: [])
    monkeypatch.setattr(train_mod, "training_images", lambda cfg: pytest.fail("work started"))
    with pytest.raises(ConfigError, match=r"train.log_with: wandb is not installed \(pip install wandb\)"):
        train_mod.train_sr(tiny_job(tmp_path / "m", log_with=["wandb"]))


def test_trackers_get_the_config_every_history_row_and_the_end(tmp_path, monkeypatch):
    """Accelerate's tracker API end to end, with a recording tracker in place of a real one."""
    from accelerate.tracking import GeneralTracker

    from hf_srdistill.history import read_history

    class Recorder(GeneralTracker):
        name, requires_logging_directory, main_process_only = "recorder", False, True

        def __init__(self):
            super().__init__()
            self.config, self.logged, self.finished = None, [], False

        @property
        def tracker(self):
            return self

        def store_init_configuration(self, values):
            self.config = values

        def log(self, values, step=None, **kwargs):
            self.logged.append((step, values))

        def finish(self):
            self.finished = True

    rec = Recorder()
    monkeypatch.setattr(train_mod, "accelerator_kwargs", lambda names, out, key: {"log_with": [rec]})
    out = train_mod.train_sr(tiny_job(tmp_path / "m", log_with=["tensorboard"], log_every=2))
    assert rec.config["train.log_every"] == 2 and rec.config["model.name"] == "srcnn"
    assert rec.config["train.train_set"] == "None"  # flattened to scalars every tracker accepts
    rows = read_history(out / "history.csv")
    assert [s for s, _ in rec.logged] == [int(r["step"]) for r in rows] == [2, 4, 6]
    assert [v["loss"] for _, v in rec.logged] == [float(r["loss"]) for r in rows]
    assert set(rec.logged[0][1]) == {"loss", "lr", "wall_s"}
    assert rec.finished


def test_trains_from_a_set_folder_loaded_with_datasets(tmp_path):
    photos = [img[:48, :48] for _, img in load_mini("train")[:3]]
    folder = tmp_path / "set"
    (folder / "data").mkdir(parents=True)
    ds = Dataset.from_dict({"hr": [Image.fromarray(p) for p in photos], "label": [0, 1, 2]})
    ds.cast_column("hr", ImageFeature()).to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    write_manifest(folder, 3)
    loaded = train_mod.load_image_set(str(folder))
    assert len(loaded) == 3 and all(np.array_equal(a, b) for a, b in zip(loaded, photos))
    out = train_mod.train_sr(tiny_job(tmp_path / "m", train_set=str(folder), iterations=2))
    assert (out / "model.safetensors").is_file()


def test_a_set_without_hr_column_is_rejected(tmp_path):
    folder = tmp_path / "bad" / "data"
    folder.mkdir(parents=True)
    Dataset.from_dict({"x": [1]}).to_parquet(str(folder / "train-00000-of-00001.parquet"))
    write_manifest(tmp_path / "bad", 1)
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
    state = torch.get_rng_state()
    assert [a[k] for k in (7, 3, 7)] == [b[k] for k in (7, 3, 7)]
    assert torch.equal(torch.get_rng_state(), state)  # ... and is left as it was
    assert a[7] != train_mod.SeededSamples(Noisy(), seed=2, total=50)[7]


def test_the_lr_schedule_ends_where_it_should(tmp_path):
    out = train_mod.train_sr(tiny_job(tmp_path / "m", iterations=8, lr=1e-3))
    extra = json.loads((out / "provenance.json").read_text())["extra"]
    assert extra["scheduler_steps"] == 8 and extra["final_lr"] == pytest.approx(1e-5)


def test_two_processes_follow_the_one_process_lr_schedule(tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` on CPU: the cosine schedule steps once per step."""
    from hf_srdistill.configio import dump_yaml

    config = tmp_path / "train.yaml"
    config.write_text(dump_yaml(tiny_job(tmp_path / "two", iterations=40, checkpoint_every=100)))
    launcher = Path(sys.executable).with_name("accelerate")
    proc = subprocess.run([str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "scripts" / "train.py"),
                           "--config", str(config)], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    extra = json.loads((tmp_path / "two" / "provenance.json").read_text())["extra"]
    assert extra["processes"] == 2
    assert extra["scheduler_steps"] == 40 and extra["final_lr"] == pytest.approx(1e-5)
    # one history for the run (the main process's), the loss averaged over both processes
    assert [r["step"] for r in _rows(tmp_path / "two")] == ["10", "20", "30", "40"]


def _kill_at_first_checkpoint(monkeypatch):
    real_save = train_mod.save_checkpoint

    def save_then_die(*args):
        real_save(*args)
        raise KeyboardInterrupt("simulated kill after a checkpoint")

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_die)
    return real_save


@pytest.mark.parametrize("change, key", [({"lr": 5e-4}, "train.lr"), ({"seed": 7}, "train.seed"),
                                         ({"iterations": 9}, "train.iterations")])
def test_resume_refuses_a_checkpoint_of_another_config(tmp_path, monkeypatch, change, key):
    real_save = _kill_at_first_checkpoint(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train_sr(tiny_job(tmp_path / "m"))
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    with pytest.raises(ConfigError, match=rf"different config \({key}\).*train.resume=false"):
        train_mod.train_sr(tiny_job(tmp_path / "m", **change))
    # asked to start over, it does, and records the values it really used
    out = train_mod.train_sr(tiny_job(tmp_path / "m", resume=False, **change))
    prov = json.loads((out / "provenance.json").read_text())
    name, value = next(iter(change.items()))
    assert prov["config"]["train"][name] == value


def test_resume_refuses_another_train_set_with_the_same_path(tmp_path, monkeypatch):
    folder = _set_folder(tmp_path / "set", [img[:48, :48] for _, img in load_mini("train")[:2]])
    real_save = _kill_at_first_checkpoint(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train_sr(tiny_job(tmp_path / "m", train_set=str(folder)))
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    _set_folder(folder, [img[48:96, 48:96] for _, img in load_mini("train")[:2]], replace=True)
    with pytest.raises(ConfigError, match="train_set_digest"):
        train_mod.train_sr(tiny_job(tmp_path / "m", train_set=str(folder)))


@pytest.mark.parametrize("killed", ["between the renames", "after the swap"])
def test_a_kill_during_the_checkpoint_swap_is_recovered(tmp_path, monkeypatch, killed):
    reference = weights(train_mod.train_sr(tiny_job(tmp_path / "a", iterations=9)))
    real_rename = Path.rename
    seen = {"n": 0}

    def dying_rename(self, target):
        # renames per checkpoint: checkpoint -> checkpoint.old (from the 2nd on), checkpoint.tmp -> checkpoint
        seen["n"] += 1
        if killed == "between the renames" and seen["n"] == 2:  # 2nd checkpoint: old moved, new not yet in
            real_rename(self, target)
            raise KeyboardInterrupt("simulated kill between the renames")
        out = real_rename(self, target)
        if killed == "after the swap" and seen["n"] == 3:
            (Path(target).with_name("checkpoint.old")).mkdir(exist_ok=True)  # the rmtree never ran
            raise KeyboardInterrupt("simulated kill after the swap")
        return out

    monkeypatch.setattr(Path, "rename", dying_rename)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train_sr(tiny_job(tmp_path / "b", iterations=9))
    monkeypatch.setattr(Path, "rename", real_rename)
    assert (tmp_path / "b" / "checkpoint.old").exists()
    resumed = weights(train_mod.train_sr(tiny_job(tmp_path / "b", iterations=9)))
    assert not (tmp_path / "b" / "checkpoint.old").exists()
    for name, tensor in reference.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0)


def test_an_unwritable_output_folder_fails_before_training(tmp_path, monkeypatch):
    from hf_srdistill.io import UnwritableError

    if os.geteuid() == 0:  # root ignores permission bits: make the folder's parent a file instead
        (tmp_path / "file").write_text("")
        out = tmp_path / "file" / "m"
    else:
        (tmp_path / "ro").mkdir(mode=0o555)
        out = tmp_path / "ro" / "m"
    monkeypatch.setattr(train_mod, "training_images", lambda cfg: pytest.fail("work started"))
    with pytest.raises(UnwritableError, match="train.output_dir .* is not writable"):
        train_mod.train_sr(tiny_job(out))


def test_stale_tmp_files_of_killed_writes_are_removed(tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    (out / ".provenance.json.abc123.tmp").write_text("half")
    train_mod.train_sr(tiny_job(out))
    assert not list(out.glob(".*.tmp"))


def test_callback_sees_the_model_at_the_chosen_steps(tmp_path):
    seen = []
    train_mod.train_sr(tiny_job(tmp_path / "m", iterations=7), callback=lambda step, m: seen.append(
        (step, m.training)), callback_every=3)
    assert seen == [(3, False), (6, False), (7, False)]


def test_cli_reports_a_refused_run_in_one_line(tmp_path, capsys):
    from hf_srdistill.cli import main as cli_main

    folder = _set_folder(tmp_path / "set", [img[:48, :48] for _, img in load_mini("train")[:2]])
    (folder / "manifest.json").unlink()
    capsys.readouterr()
    assert cli_main(["train", f"--train.train_set={folder}", f"--train.output_dir={tmp_path / 'm'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no manifest.json" in err[0] and err[0].startswith("hf-srdistill train: error:")
