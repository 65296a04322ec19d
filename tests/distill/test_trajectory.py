"""Trajectory matching: aligned student crops, the differentiable unroll, experts stored once, resume."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from safetensors.torch import load_file

from hf_srdistill.config import DistillConfig, ModelConfig, TrajectoryConfig
from hf_srdistill.data import imresize
from hf_srdistill.data.set_folder import read_set_images
from hf_srdistill.distill import distill
from hf_srdistill.distill import trajectory as T
from hf_srdistill.distill.checkpoint import checkpoint_path
from hf_srdistill.models import build_model

TINY_TM = dict(num_experts=1, expert_steps=40, expert_every=10, expert_batch=4, expert_patch=24, max_start=2, span=2,
               syn_steps=2, batch_syn=2, patch_size=24, precond_batches=2)


@pytest.fixture
def tm_job(tiny_job, tmp_path):
    def make(**tm):
        cfg = tiny_job(objective="tm", iterations=4, checkpoint_every=2, lr_img=10.0,
                       tm=TrajectoryConfig(**{**TINY_TM, "expert_dir": str(tmp_path / "experts"), **tm}))
        return cfg
    return make


def test_whole_image_crops_pair_each_hr_with_its_own_lr():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 24, 24)
    lr, hr = T.student_crops(images, imresize(images, 0.5), 2, 3, 24, gen)
    # a square image's bicubic LR commutes with flips and transposes, so each pair must match exactly
    torch.testing.assert_close(lr, imresize(hr, 0.5), rtol=0, atol=1e-6)


def test_crops_are_aligned_at_the_scale():
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(2, 3, 32, 32)
    lr_all = imresize(images, 0.5)
    for _ in range(5):
        lr, hr = T.student_crops(images, lr_all, 2, 2, 16, gen)
        assert lr.shape == (2, 3, 8, 8) and hr.shape == (2, 3, 16, 16)
        for a in lr:  # every LR crop is a (transformed) window of one image's LR
            found = any(torch.equal(t(a), lr_all[i, :, y:y + 8, x:x + 8]) for i in range(2) for y in range(9)
                        for x in range(9) for t in (lambda z: z, lambda z: z.flip(-1), lambda z: z.flip(-2),
                                                    lambda z: z.transpose(-2, -1), lambda z: z.flip(-1).flip(-2),
                                                    lambda z: z.transpose(-2, -1).flip(-1),
                                                    lambda z: z.transpose(-2, -1).flip(-2),
                                                    lambda z: z.transpose(-2, -1).flip(-1).flip(-2)))
            assert found


def test_the_unroll_is_differentiable_in_the_pixels_and_the_lr():
    torch.manual_seed(0)
    net = build_model(ModelConfig(name="srcnn", scale=2, num_features=4)).double()
    net.requires_grad_(False)
    start = torch.cat([p.reshape(-1) for p in net.parameters()]).detach()
    target = start + 0.01 * torch.randn_like(start)
    images = torch.rand(2, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    log_lr = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)

    def loss_of(x, a):
        end, _ = T.unroll(net, start, x, a, 2, 2, 16, torch.Generator().manual_seed(3))
        return T.trajectory_loss(end, start, target)

    loss = loss_of(images, log_lr)
    loss.backward()
    direction = torch.randn_like(images)
    h = 1e-6
    numeric = (loss_of(images.detach() + h * direction, log_lr.detach())
               - loss_of(images.detach() - h * direction, log_lr.detach())) / (2 * h)
    assert float((images.grad * direction).sum().detach()) == pytest.approx(float(numeric), rel=1e-4)
    numeric_lr = (loss_of(images.detach(), log_lr.detach() + h) - loss_of(images.detach(), log_lr.detach() - h)) / (2 * h)
    assert float(log_lr.grad) == pytest.approx(float(numeric_lr), rel=1e-4)


def test_trajectory_loss_is_normalised_by_the_expert_distance():
    start, target = torch.zeros(4), torch.tensor([1.0, 2.0, 0.0, 0.0])
    assert float(T.trajectory_loss(start, start, target)) == pytest.approx(1.0)
    assert float(T.trajectory_loss(target, start, target)) == 0.0
    assert float(T.trajectory_loss((start + target) / 2, start, target)) == pytest.approx(0.25)


def test_a_tm_run_writes_a_set_reuses_its_experts_and_resumes_bit_identically(tm_job, monkeypatch):
    cfg = tm_job()
    folder = distill(cfg)
    images = read_set_images(folder)
    assert len(images) == 6 and images[0].shape == (32, 32, 3)
    once = load_file(str(checkpoint_path(folder)))

    # a second run with the same experts must not train them again
    import hf_srdistill.train as train_mod

    monkeypatch.setattr(train_mod, "train_sr", lambda *a, **k: pytest.fail("expert retrained"))
    from hf_srdistill.distill import checkpoint as ckpt_mod

    real = ckpt_mod.save_checkpoint
    def die_after_first(*args, **kw):
        real(*args, **kw)
        raise KeyboardInterrupt("simulated kill after the iteration-2 checkpoint")

    other = dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, output_dir=cfg.distill.output_dir + "_b"))
    monkeypatch.setattr(ckpt_mod, "save_checkpoint", die_after_first)
    with pytest.raises(KeyboardInterrupt):
        distill(other)
    monkeypatch.setattr(ckpt_mod, "save_checkpoint", real)
    resumed = dataclasses.replace(other, distill=dataclasses.replace(other.distill, resume=True))
    distill(resumed)
    again = load_file(str(checkpoint_path(resumed.distill.output_dir)))
    assert set(again) == set(once) and {"extra.log_lr", "momentum"} <= set(once)
    for name in ("images", "momentum", "extra.log_lr", "extra.grad_norms", "snapshots"):
        assert torch.equal(again[name], once[name]), name
    # history.csv (not tm_history.json): the columns every objective writes, then tm's own; the
    # resumed file is the uninterrupted one, no row twice or missing
    from hf_srdistill.history import read_history

    def rows(folder):
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in read_history(folder / "history.csv")]

    first = read_history(folder / "history.csv")
    assert list(first[0]) == ["iteration", "loss", "lr_img", "wall_s", "student_lr", "expert", "start", "span",
                              "grad_norm", "clipped"]
    assert [r["iteration"] for r in first] == ["1", "2", "3", "4"] and first[0]["expert"] == "srcnn_x2"
    assert rows(Path(resumed.distill.output_dir)) == rows(folder)
    assert not (folder / "tm_history.json").exists() and (folder / "loss_curve.png").is_file()


@pytest.mark.parametrize("bad, match", [
    (dict(patch_size=48), "patch_size=48 must be <= distill.image_size"),
    (dict(patch_size=15), "divisible by every expert's scale"),
])
def test_tm_settings_are_validated(bad, match):
    with pytest.raises(ValueError, match=match):
        DistillConfig(objective="tm", image_size=32, tm=TrajectoryConfig(**{**TINY_TM, **bad}))
    with pytest.raises(ValueError, match="exceeds expert_steps"):
        TrajectoryConfig(expert_steps=100, expert_every=10, max_start=9, span=2)
    with pytest.raises(ValueError, match="need 0 <= min_start < max_start"):
        TrajectoryConfig(**{**TINY_TM, "min_start": 2})
    with pytest.raises(ValueError, match="init=latent is not supported"):
        DistillConfig(objective="tm", init="latent", image_size=32, tm=TrajectoryConfig(**TINY_TM))
    with pytest.raises(ValueError, match="trains its own experts"):
        DistillConfig(objective="tm", reference_path="refs/srcnn", image_size=32, tm=TrajectoryConfig(**TINY_TM))


def test_min_start_matches_only_the_later_checkpoints(tm_job):
    from hf_srdistill.history import read_history

    cfg = tm_job(expert_steps=50, max_start=3, min_start=1)
    cfg = dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, iterations=6, lr_img=0.1))
    folder = distill(cfg)
    starts = {int(r["start"]) for r in read_history(folder / "history.csv")}
    assert starts and starts <= {1, 2}, starts
    assert "from expert steps 20-30" in T.describe(cfg)


def test_extra_spans_are_matched_in_turn_against_the_checkpoint_that_far_ahead(tm_job, monkeypatch):
    from hf_srdistill.history import read_history

    cfg = tm_job(span=2, extra_spans=[1])
    seen = []
    real = T.trajectory_loss
    def record(end, start, target):
        seen.append((start.clone(), target.clone()))
        return real(end, start, target)
    monkeypatch.setattr(T, "trajectory_loss", record)
    folder = distill(cfg)
    rows = read_history(folder / "history.csv")
    assert [r["span"] for r in rows] == ["2", "1", "2", "1"]
    stored = [load_file(str(f))["params"] for f in Path(cfg.distill.tm.expert_dir).rglob("trajectory.safetensors")]
    assert len(stored) == 1 and len(seen) == 4
    for (start, target), r in zip(seen, rows):  # each matching's target is span checkpoints after its start
        t, span = int(r["start"]), int(r["span"])
        assert torch.equal(start, stored[0][t]) and torch.equal(target, stored[0][t + span])
    assert "against 2 / 1 expert checkpoints (20 / 10 expert steps" in T.describe(cfg)
    with pytest.raises(ValueError, match="the longest span"):
        TrajectoryConfig(**{**TINY_TM, "extra_spans": [3]})
    with pytest.raises(ValueError, match="extra_spans must be positive"):
        TrajectoryConfig(**{**TINY_TM, "extra_spans": [0]})


def test_each_expert_architecture_learns_its_own_student_lr(tm_job, monkeypatch):
    from hf_srdistill.distill import checkpoint as ckpt_mod
    from hf_srdistill.history import read_history

    edsr = ModelConfig(name="edsr", scale=2, num_features=4, depth=1)
    cfg = tm_job(models=[ModelConfig(name="srcnn", scale=2, num_features=4), edsr])
    cfg = dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, iterations=6, lr_img=0.1))
    real = ckpt_mod.save_checkpoint
    def die(*args, **kw):  # killed after the iteration-2 checkpoint: the edsr lr is calibrated by then
        real(*args, **kw)
        raise KeyboardInterrupt
    monkeypatch.setattr(ckpt_mod, "save_checkpoint", die)
    with pytest.raises(KeyboardInterrupt):
        distill(cfg)
    monkeypatch.setattr(ckpt_mod, "save_checkpoint", real)
    folder = distill(dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, resume=True)))
    state = load_file(str(checkpoint_path(folder)))
    assert state["extra.log_lr"].shape == (2,) and state["extra.lr_calibrated"].all()
    rows = read_history(folder / "history.csv")
    assert [r["expert"] for r in rows] == ["srcnn_x2", "edsr_x2"] * 3
    lrs = {name: [float(r["student_lr"]) for r in rows if r["expert"] == name] for name in ("srcnn_x2", "edsr_x2")}
    # calibrated separately: the two architectures' lrs differ by far more than one lr_lr step,
    # while each architecture's own lr moves by at most ~lr_lr per matching (on a log scale),
    # also across the resume (a recalibration there would jump)
    assert abs(torch.tensor(lrs["srcnn_x2"][0] / lrs["edsr_x2"][0]).log()) > 0.1
    for seq in lrs.values():
        steps = torch.tensor(seq).log().diff().abs()
        assert (steps < 3 * cfg.distill.tm.lr_lr).all(), seq
    assert torch.allclose(state["extra.log_lr"].exp(), torch.tensor([lrs["srcnn_x2"][-1], lrs["edsr_x2"][-1]]))


def test_a_pixel_gradient_far_above_the_running_median_is_clipped(tm_job):
    from hf_srdistill.history import read_history

    runs = {}
    for clip in (1e-3, None):  # 1e-3 x the median clips every iteration once the median exists
        cfg = tm_job(clip_grad=clip)
        cfg = dataclasses.replace(cfg, distill=dataclasses.replace(
            cfg.distill, iterations=T.CLIP_WARMUP + 3, lr_img=0.1, output_dir=f"{cfg.distill.output_dir}_{clip}"))
        folder = distill(cfg)
        rows = read_history(folder / "history.csv")
        runs[clip] = read_set_images(folder)
        assert all(float(r["grad_norm"]) > 0 for r in rows)
        clipped = [r["clipped"] for r in rows]
        assert clipped == (["0"] * T.CLIP_WARMUP + ["1"] * 3 if clip else ["0"] * len(rows)), clipped
    assert any(not (a == b).all() for a, b in zip(runs[1e-3], runs[None]))


def test_a_finite_but_blown_up_unroll_is_retried_with_half_the_student_lr(tm_job, monkeypatch, caplog):
    from hf_srdistill.history import read_history

    real = T.trajectory_loss
    first = {}
    for max_loss in (10.0, None):
        calls = []

        def blown(end, start, target):  # the first unroll ends far away (loss 20), as an exploding student does
            loss = real(end, start, target)
            calls.append(1)
            return loss * (20.0 / float(loss.detach())) if len(calls) == 1 else loss

        monkeypatch.setattr(T, "trajectory_loss", blown)
        cfg = tm_job(max_loss=max_loss, lr_student=1e-3)
        cfg = dataclasses.replace(cfg, distill=dataclasses.replace(
            cfg.distill, iterations=1, lr_img=0.1, output_dir=f"{cfg.distill.output_dir}_{max_loss}"))
        with caplog.at_level("WARNING", logger=T.__name__):
            row = read_history(distill(cfg) / "history.csv")[0]
        first[max_loss] = (float(row["loss"]), float(row["student_lr"]), len(calls))
    (loss, lr, unrolls), (loss_off, lr_off, unrolls_off) = first[10.0], first[None]
    # guarded: the blown-up unroll is discarded and retried at half the student lr (then learnt,
    # moving at most ~lr_lr); unguarded: its loss is what the set is optimised on
    assert unrolls == 2 and loss < 10 and lr == pytest.approx(5e-4, rel=0.03)
    assert unrolls_off == 1 and loss_off == pytest.approx(20.0) and lr_off == pytest.approx(1e-3, rel=0.03)
    assert "diverged at iteration 0 (loss 20)" in caplog.text
    with pytest.raises(ValueError, match="max_loss must be > 1"):
        TrajectoryConfig(**{**TINY_TM, "max_loss": 1.0})


def test_probe_tm_prints_the_loss_per_student_lr_for_the_init_and_a_set(tm_job, tmp_path):
    import subprocess
    import sys

    from hf_srdistill.configio import dump_yaml

    cfg = tm_job(span=1, max_start=3)
    folder = distill(cfg)
    config = tmp_path / "tm.yaml"
    config.write_text(dump_yaml(cfg))
    script = Path(__file__).resolve().parents[2] / "scripts" / "probe_tm.py"
    run = subprocess.run([sys.executable, str(script), "--config", str(config), "--set", f"tm={folder}",
                          "--lr-factors", "1e-6", "0.5", "--repeats", "1", "--threads", "1"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    rows = [line.split(" | ") for line in run.stdout.splitlines() if line.startswith("| srcnn")]
    # starts 0, 1 and 2 (min_start 0, max_start 3, span 1 of 4 checkpoints), each for both sets
    assert [(r[1].split()[0], r[2]) for r in rows] == [(t, s) for t in "012" for s in ("init", "tm")]
    for r in rows:
        # a student that barely moves lands where it started: the share of the distance left is 1
        assert float(r[5]) == pytest.approx(1.0, abs=1e-3)
        assert float(r[3]) > 0 and float(r[-1].rstrip(" |")) > 0  # a distance, and a pixel-gradient norm

    wrong = subprocess.run([sys.executable, str(script), "--config", "distill_mini"], capture_output=True, text=True,
                           timeout=120)
    assert wrong.returncode == 2 and "probe_tm needs a tm recipe" in wrong.stderr


def test_calibrate_search_picks_the_halving_that_reaches_the_target():
    torch.manual_seed(0)
    net = build_model(ModelConfig(name="srcnn", scale=2, num_features=4)).requires_grad_(False)
    start, images = T._flat(net), torch.rand(3, 3, 32, 32)
    tm = TrajectoryConfig(**{**TINY_TM, "syn_steps": 3})
    best = 3e-3
    # the target is where 3 steps at `best` on these crops land: the search's candidate 4*best/4
    # unrolls on the same crops, so it reaches it exactly, and every other candidate does not
    target, _ = T.unroll(net, start, images, torch.tensor(best).log(), 3, tm.batch_syn, tm.patch_size,
                         torch.Generator().manual_seed(5))
    target = target.detach()
    assert T.search_student_lr(net, start, target, images, 4 * best, tm, None, seed=5) == best
    assert T.search_student_lr(net, start, target, images, 64 * best, tm, None, seed=5) == best
    # every candidate blows up: the smallest, for the retry rule to halve further
    assert T.search_student_lr(net, start, target, images, 1e30, tm, None, seed=5) == 1e30 / 2 ** T.SEARCH_HALVINGS


def test_a_tm_run_with_calibrate_search_starts_at_a_searched_lr(tm_job, caplog):
    import logging
    import re

    from hf_srdistill.history import read_history

    with caplog.at_level(logging.INFO, logger="hf_srdistill"):
        folder = distill(tm_job(calibrate="search"))
    found = re.findall(r"srcnn student lr ([0-9.e+-]+), the best", caplog.text)
    assert len(found) == 1  # calibrated once, at the architecture's first matching
    first = float(read_history(folder / "history.csv")[0]["student_lr"])
    # the history holds the lr after the first iteration's update: at most ~lr_lr away on a log scale
    assert abs(math.log(first / float(found[0]))) < 3 * TINY_TM.get("lr_lr", 0.01)
