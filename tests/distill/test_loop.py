"""The distillation loop: reruns, resume, the NaN guard, 2 processes, pretrained reference, baselines."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from hf_srdistill.config import ModelConfig
from hf_srdistill.configio import dump_yaml
from hf_srdistill.distill import DistillationDiverged, distill, make_baseline_set
from hf_srdistill.distill import loop as loop_mod
from hf_srdistill.distill.checkpoint import checkpoint_path, load_checkpoint
from hf_srdistill.distill.synthetic import init_images

ROOT = Path(__file__).resolve().parents[2]


def _state(folder) -> dict[str, torch.Tensor]:
    return load_file(str(checkpoint_path(folder)))


def _with(cfg, **distill):
    return dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, **distill))


def test_run_writes_a_loadable_set_and_reruns_are_identical(tiny_job, tmp_path):
    from datasets import load_dataset

    cfg = tiny_job()
    folder = distill(cfg)
    ds = load_dataset(str(folder), split="train")
    assert len(ds) == 6 and ds["label"] == [0, 0, 1, 1, 2, 2] and ds["ipc_index"] == [0, 1] * 3
    with Image.open(folder / "evolution.png") as evo, Image.open(folder / "samples.png") as samples:
        assert evo.size[0] > samples.size[0] // 2 and samples.size[0] > 2 * 32
    state = _state(folder)
    assert state["snapshot_iters"].tolist() == [0, 1, 2, 3]  # the final snapshot is added at export
    init = init_images(cfg.distill, _store(cfg), [0, 1, 2])
    assert (state["images"] - init).abs().max() > 1e-4  # distillation moved the pixels
    assert 0 <= float(state["images"].min()) and float(state["images"].max()) <= 1

    again = distill(_with(cfg, output_dir=str(tmp_path / "again")))
    assert torch.equal(_state(again)["images"], state["images"])
    assert torch.equal(_state(again)["momentum"], state["momentum"])


def test_bf16_matching_moves_the_set_like_fp32_and_is_recorded(tiny_job, tmp_path):
    import yaml

    fp32 = _state(distill(tiny_job(lr_img=10.0)))["images"]
    folder = distill(tiny_job(lr_img=10.0, precision="bf16", output_dir=str(tmp_path / "bf16")))
    bf16 = _state(folder)["images"]
    init = init_images(tiny_job().distill, _store(tiny_job()), [0, 1, 2])
    step32, step16 = (fp32 - init).flatten(), (bf16 - init).flatten()
    assert not torch.equal(bf16, fp32)
    assert float(torch.nn.functional.cosine_similarity(step32, step16, dim=0)) > 0.9
    assert yaml.safe_load((folder / "config.yaml").read_text())["distill"]["precision"] == "bf16"


@pytest.mark.skipif(not (shutil.which("g++") or shutil.which("clang++")),
                    reason="torch.compile on a CPU needs a C++ compiler")
def test_a_compiled_matching_step_moves_the_set_as_eager_does(tiny_job, tmp_path):
    cfg = tiny_job(iterations=2, outer_loop=1, classes_per_step=3, lr_img=10.0)
    eager = _state(distill(cfg))["images"]
    from torch._dynamo.utils import counters

    counters.clear()
    folder = distill(_with(cfg, compile=True, output_dir=str(tmp_path / "compiled")))
    assert counters["stats"]["unique_graphs"] > 0  # dynamo did compile the step
    moved = float((eager - init_images(cfg.distill, _store(cfg), [0, 1, 2])).abs().max())
    assert moved > 1e-3  # the pixels moved, so equal sets say something
    assert float((_state(folder)["images"] - eager).abs().max()) < 1e-3 * moved
    assert json.loads((folder / "provenance.json").read_text())["extra"]["arithmetic"]["compile"] is True


def _store(cfg):
    from hf_srdistill.data.grouped import SubImageStore

    return SubImageStore.build(cfg.data)


@pytest.mark.parametrize("max_change", [None, 0.02])  # a bounded run rebuilds its bounds on resume
def test_resume_equals_an_uninterrupted_run(tiny_job, tmp_path, max_change):
    cfg = tiny_job(max_change=max_change, lr_img=1e3 if max_change else 0.1)
    whole = _state(distill(_with(cfg, output_dir=str(tmp_path / "whole"))))
    part = _with(cfg, output_dir=str(tmp_path / "part"), iterations=2)
    distill(part)  # "interrupted" after iteration 2 (its checkpoint)
    resumed = _state(distill(_with(cfg, output_dir=part.distill.output_dir, resume=True)))
    assert torch.equal(resumed["images"], whole["images"])
    assert torch.equal(resumed["momentum"], whole["momentum"])
    assert torch.equal(resumed["snapshots"], whole["snapshots"])
    assert _rows(part.distill.output_dir) == _rows(tmp_path / "whole")


def _rows(folder):
    """history.csv without wall_s (the only column a resume may change)."""
    from hf_srdistill.history import read_history

    return [{k: v for k, v in row.items() if k != "wall_s"} for row in read_history(Path(folder) / "history.csv")]


def test_history_and_loss_curve_survive_a_kill(tiny_job, tmp_path, monkeypatch):
    from hf_srdistill.history import read_history

    cfg = tiny_job()
    whole = distill(_with(cfg, output_dir=str(tmp_path / "whole")))
    rows = read_history(whole / "history.csv")
    assert list(rows[0]) == list(loop_mod.HISTORY_COLUMNS)
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]  # one row per iteration
    assert all(float(r["lr_img"]) == 0.1 and r["reference_scale"] == "2" for r in rows)
    assert float(rows[0]["loss_per_unit"]) == pytest.approx(float(rows[0]["loss"]) / 3)
    with Image.open(whole / "loss_curve.png") as im:
        assert im.format == "PNG"
    assert "![Matching loss during distillation (history.csv)](loss_curve.png)" in (whole / "README.md").read_text()

    real = loop_mod.save_checkpoint

    def die_after(*args, **kw):
        real(*args, **kw)
        raise KeyboardInterrupt("simulated kill after the iteration-2 checkpoint")

    killed = _with(cfg, output_dir=str(tmp_path / "killed"))
    monkeypatch.setattr(loop_mod, "save_checkpoint", die_after)
    with pytest.raises(KeyboardInterrupt):
        distill(killed)
    assert [r["iteration"] for r in _rows(tmp_path / "killed")] == ["1", "2"]
    monkeypatch.setattr(loop_mod, "save_checkpoint", real)
    distill(_with(killed, resume=True))
    assert _rows(tmp_path / "killed") == _rows(whole)


def test_resume_with_other_arithmetic_says_so(tiny_job, tmp_path, capsys):
    from safetensors import safe_open

    from hf_srdistill.distill.checkpoint import checkpoint_path

    cfg = _with(tiny_job(), iterations=2)
    distill(cfg)
    with safe_open(str(checkpoint_path(cfg.distill.output_dir)), framework="pt") as f:
        saved = json.loads(f.metadata()["arithmetic"])
    assert saved == {"device": "cpu", "batched": True, "classes_per_step": cfg.distill.classes_per_step,
                     "real_chunk": 1, "syn_chunk": 1}  # auto_chunk on a CPU: one class per call
    capsys.readouterr()
    distill(_with(cfg, iterations=3, resume=True))  # same arithmetic: silent
    assert "other arithmetic" not in capsys.readouterr().err
    distill(_with(cfg, iterations=4, resume=True, syn_chunk=2))
    assert "resuming with other arithmetic (syn_chunk 1 -> 2)" in capsys.readouterr().err


def test_auto_classes_per_step_is_chosen_from_free_memory_and_changes_no_pixel(tiny_job, tmp_path, monkeypatch):
    import hf_srdistill.peak_memory as pm

    fixed = distill(_with(tiny_job(), iterations=2, classes_per_step=1, output_dir=str(tmp_path / "fixed")))
    chosen = {}
    for name, free in (("roomy", 1 << 50), ("tight", 1)):
        monkeypatch.setattr(pm, "free_memory", lambda device, free=free: free)
        folder = distill(_with(tiny_job(), iterations=2, classes_per_step=0, output_dir=str(tmp_path / name)))
        chosen[name] = json.loads((folder / "provenance.json").read_text())["extra"]["arithmetic"]["classes_per_step"]
        # the probe touches neither the set nor the run's random streams
        assert torch.equal(_state(folder)["images"], _state(fixed)["images"]), name
    assert chosen == {"roomy": 3, "tight": 1}  # all 3 classes in one chunk, or one at a time


def test_chunk_that_fits_keeps_half_the_free_memory():
    from hf_srdistill.peak_memory import chunk_that_fits, free_memory

    assert chunk_that_fits(100, 1000, 32) == 5
    assert chunk_that_fits(100, 1000, 3) == 3 and chunk_that_fits(10**9, 1000, 32) == 1
    assert chunk_that_fits(0, 1000, 8) == 8  # a probe that measured nothing does not divide by zero
    assert free_memory("cpu") > 0


def test_resume_refuses_a_checkpoint_of_another_config(tiny_job, tmp_path):
    from hf_srdistill.configio import ConfigError

    cfg = _with(tiny_job(), iterations=2)
    distill(cfg)
    with pytest.raises(ConfigError, match="lr_img"):
        distill(_with(cfg, lr_img=0.5, resume=True))


def test_non_finite_loss_saves_the_last_good_state_and_names_iteration_and_class(tiny_job, monkeypatch):
    cfg = tiny_job()
    real_match = loop_mod.match_and_backward
    calls = {"n": 0}

    def poisoned(model, syn, real, *args, **kw):
        out = real_match(model, syn, real, *args, **kw)
        calls["n"] += 1
        # 2 matching steps per iteration, classes chunked [0, 1] then [2]: call 9 = iteration 2, first chunk
        if calls["n"] == 9:
            out = out.clone()
            out[1] = float("nan")
        return out

    monkeypatch.setattr(loop_mod, "match_and_backward", poisoned)
    with pytest.raises(DistillationDiverged, match=r"iteration 2, class 1 \('chelsea'\), matching step 0"):
        distill(cfg)
    state = load_checkpoint(checkpoint_path(cfg.distill.output_dir), cfg, _store(cfg).fingerprint)
    assert state.iteration == 2
    assert torch.isfinite(state.images).all()
    assert not (Path(cfg.distill.output_dir) / "data").exists()
    # the saved state is the one an honest run had after 2 iterations
    monkeypatch.setattr(loop_mod, "match_and_backward", real_match)
    honest = distill(_with(cfg, iterations=2, output_dir=cfg.distill.output_dir + "_honest"))
    assert torch.equal(_state(honest)["images"], state.images)


def test_pretrained_reference_and_other_distances_run(tiny_job, tmp_path):
    from hf_srdistill.models import build_model

    cfg = tiny_job(iterations=1, ipc=1, distance="layerwise", init="noise")
    build_model(cfg.distill.reference).save_pretrained(tmp_path / "ref")
    folder = distill(_with(cfg, reference_path=str(tmp_path / "ref")))
    assert _state(folder)["images"].shape == (3, 3, 32, 32)


def test_a_pool_cycles_through_its_references_by_iteration(tiny_job):
    from hf_srdistill.models import build_model

    cfg = tiny_job()
    pool = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        pool.append(build_model(cfg.distill.reference))
    for iteration, expected in [(0, 0), (1, 1), (2, 0), (7, 1)]:
        got = loop_mod.reference_model(cfg, iteration, pool, "cpu")
        assert got is not pool[expected]  # a copy: inner-loop training never touches the pool
        assert torch.equal(got.state_dict()["extract.weight"], pool[expected].state_dict()["extract.weight"])


def test_a_pool_reference_is_matched_at_its_own_scale(tiny_job, tmp_path):
    """A x4 model in the pool gives the set a x4-only reference_path run gives: its scale rules."""
    from hf_srdistill.models import build_model

    x4 = ModelConfig(name="srcnn", scale=4, num_features=4)
    torch.manual_seed(0)
    build_model(x4).save_pretrained(tmp_path / "ref_x4")
    cfg = tiny_job(iterations=2, outer_loop=2)  # distill.reference stays x2
    pooled = _state(distill(_with(cfg, reference_pool=[str(tmp_path / "ref_x4")])))["images"]
    alone = _state(distill(_with(cfg, reference_path=str(tmp_path / "ref_x4"), reference=x4,
                                 output_dir=str(tmp_path / "alone"))))["images"]
    at_x2 = _state(distill(_with(cfg, reference_path=None, output_dir=str(tmp_path / "random"))))["images"]
    assert torch.equal(pooled, alone)
    assert not torch.equal(pooled, at_x2)


def test_a_pool_model_whose_scale_does_not_divide_the_image_is_refused(tiny_job, tmp_path):
    from hf_srdistill.configio import ConfigError
    from hf_srdistill.models import build_model

    build_model(ModelConfig(name="srcnn", scale=4, num_features=4)).save_pretrained(tmp_path / "ref_x4")
    cfg = tiny_job(image_size=34, reference_pool=[str(tmp_path / "ref_x4")])
    with pytest.raises(ConfigError, match=r"ref_x4 is a x4 model, but distill.image_size=34"):
        distill(cfg)


def test_reference_pool_and_reference_path_are_exclusive():
    from hf_srdistill.config import DistillConfig

    with pytest.raises(ValueError, match="set only one of them"):
        DistillConfig(reference_path="a", reference_pool=["b"])


@pytest.mark.parametrize("init", ["real", "set", "channels_last"])
def test_a_run_from_real_crops_or_a_set_folder_moves_its_start(tiny_job, tmp_path, init, monkeypatch):
    cfg = _with(tiny_job(), init="real", max_change=0.1)
    if init == "channels_last":  # any permuted start (not only the store's crops): the loop copies it contiguous
        start_of = loop_mod.initial_images
        monkeypatch.setattr(loop_mod, "initial_images",
                            lambda *a: start_of(*a).contiguous(memory_format=torch.channels_last))
    start = make_baseline_set("random", _with(cfg, output_dir=str(tmp_path / "random")))
    if init == "set":
        cfg = _with(cfg, init="set", init_set=str(start))
    init_crops = init_images(cfg.distill, _store(cfg), [0, 1, 2])
    assert init_crops.is_contiguous()
    images = _state(distill(_with(cfg, output_dir=str(tmp_path / init))))["images"]
    change = (images - init_crops).abs()
    assert 1e-4 < float(change.max()) <= 0.1 + 1e-6


def test_max_change_keeps_every_pixel_within_its_distance_of_the_init(tiny_job, tmp_path):
    cfg = tiny_job(lr_img=1e4)  # a step far larger than the bound: the projection must do the work
    init = init_images(cfg.distill, _store(cfg), [0, 1, 2])
    with pytest.raises(DistillationDiverged, match="saturated pixels"):  # unbounded, this step blows the set out
        distill(cfg)
    bounded = _state(distill(_with(cfg, max_change=0.02, output_dir=str(tmp_path / "bounded"))))["images"]
    change = (bounded - init).abs()
    assert float(change.max()) <= 0.02 + 1e-6 and float(change.max()) > 0.019  # the bound is reached, not passed
    assert 0 <= float(bounded.min()) and float(bounded.max()) <= 1


@pytest.mark.parametrize("bad, match", [({"max_change": 0.0}, "max_change must be in"),
                                        ({"max_change": 0.1, "init": "latent"}, "unset max_change")])
def test_max_change_is_validated(bad, match):
    from hf_srdistill.config import DistillConfig

    with pytest.raises(ValueError, match=match):
        DistillConfig(**bad)


def test_two_processes_give_the_same_set_as_one(tiny_job, tmp_path):
    """`accelerate launch --multi_gpu --num_processes 2` on CPU: a real 2-process gloo group."""
    cfg = tiny_job(iterations=3, classes_per_step=1)
    one = _state(distill(cfg))
    config = tmp_path / "tiny.yaml"
    two_dir = tmp_path / "two"
    config.write_text(dump_yaml(_with(cfg, output_dir=str(two_dir))))
    launcher = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "scripts" / "distill.py"),
                           "--config", str(config)], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    assert json.loads((two_dir / "provenance.json").read_text())["extra"]["processes"] == 2
    two = _state(two_dir)
    assert float((two["images"] - one["images"]).abs().max()) <= 1e-4
    assert torch.equal(two["snapshots"], one["snapshots"])


@pytest.mark.parametrize("kind", ["downscaled", "random"])
def test_baseline_sets_are_the_undistilled_starts(tiny_job, kind):
    from datasets import load_dataset

    cfg = tiny_job()
    folder = make_baseline_set(kind, cfg)
    ds = load_dataset(str(folder), split="train")
    start = init_images(dataclasses.replace(cfg.distill, init={"downscaled": "downscaled", "random": "real"}[kind]),
                        _store(cfg), [0, 1, 2])
    want = (start.clamp(0, 1) * 255 + 0.5).floor().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    got = np.stack([np.asarray(im) for im in ds["hr"]])
    assert np.array_equal(got, want)
    import json

    assert json.loads((folder / "provenance.json").read_text())["extra"]["kind"] == kind
    with pytest.raises(ValueError, match="unknown baseline set 'coreset'"):
        make_baseline_set("coreset", cfg)


@pytest.mark.parametrize("lr_img", [1e30, 1e6])
def test_an_absurd_step_size_stops_with_a_named_error_instead_of_a_blown_out_set(tiny_job, lr_img):
    cfg = _with(tiny_job(), lr_img=lr_img, outer_loop=1)
    with pytest.raises(DistillationDiverged, match=r"saturated pixels .* at iteration 0, class \d.*distill.lr_img"):
        distill(cfg)
    assert not (Path(cfg.distill.output_dir) / "data").exists()


def test_a_normal_run_is_not_flagged_as_saturated(tiny_job):
    distill(_with(tiny_job(), iterations=2))  # lr_img 0.1 moves pixels without pinning them


def test_a_corrupt_checkpoint_names_the_file_and_the_way_out(tiny_job):
    from hf_srdistill.configio import ConfigError

    cfg = _with(tiny_job(), iterations=2)
    distill(cfg)
    path = checkpoint_path(cfg.distill.output_dir)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ConfigError, match=r"state.safetensors is unreadable .*distill.resume=false"):
        distill(_with(cfg, resume=True))


def test_an_unwritable_output_folder_fails_before_any_work(tiny_job, tmp_path, monkeypatch):
    from hf_srdistill.io import UnwritableError

    (tmp_path / "file").write_text("")
    monkeypatch.setattr(loop_mod, "group_store", lambda *a: pytest.fail("work started"))
    with pytest.raises(UnwritableError, match="distill.output_dir .* is not writable"):
        distill(_with(tiny_job(), output_dir=str(tmp_path / "file" / "set")))


def test_stale_tmp_files_of_a_killed_run_are_removed(tiny_job):
    cfg = _with(tiny_job(), iterations=2)
    ckpt_dir = checkpoint_path(cfg.distill.output_dir).parent
    ckpt_dir.mkdir(parents=True)
    (ckpt_dir / ".state.safetensors.x1.tmp").write_bytes(b"half")
    (ckpt_dir.parent / ".provenance.json.x2.tmp").write_text("half")
    distill(cfg)
    assert not list(ckpt_dir.glob(".*.tmp")) and not list(ckpt_dir.parent.glob(".*.tmp"))
