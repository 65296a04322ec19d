"""Distribution matching: the loss against a hand computation, its pixel gradient, the batched
path against the per-class one, and the engine (resume, 2 processes) with objective=dm."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from hf_srdistill.config import DataConfig, DistillConfig, DistillJobConfig, DMConfig, ModelConfig
from hf_srdistill.configio import dump_yaml
from hf_srdistill.data import imresize
from hf_srdistill.distill import distill
from hf_srdistill.distill.checkpoint import checkpoint_path
from hf_srdistill.distill.dm import EPS, activations, dm_match_and_backward
from hf_srdistill.models import build_model

ROOT = Path(__file__).resolve().parents[2]


def srcnn():
    torch.manual_seed(0)
    return build_model(ModelConfig(name="srcnn", scale=2, num_features=4)).double()


def hand_maps(m, x):
    """SRCNN's two ReLU maps written out with F.conv2d."""
    h1 = F.relu(F.conv2d(imresize(x, 2), m.extract.weight, m.extract.bias, padding=4))
    return [h1, F.relu(F.conv2d(h1, m.map.weight, m.map.bias, padding=2))]


def hand_loss(m, syn, real, cfg: DMConfig):
    """DM distance of one class: relative squared error of channel means (and Gram matrices)."""
    total = 0
    for name in cfg.inputs:
        a_in, b_in = (imresize(syn, 0.5), imresize(real, 0.5)) if name == "lr" else (syn, real)
        maps = list(zip(hand_maps(m, a_in), hand_maps(m, b_in)))[: cfg.layers]
        for fa, fb in maps:
            va = fa.transpose(0, 1).reshape(fa.shape[1], -1)  # channels x (images * positions)
            vb = fb.transpose(0, 1).reshape(fb.shape[1], -1)
            pairs = [(va.mean(1), vb.mean(1))]
            if cfg.moments == 2:
                pairs.append((va @ va.T / va.shape[1], vb @ vb.T / vb.shape[1]))
            for a, b in pairs:
                total = total + ((a - b) ** 2).sum() / ((b ** 2).sum() + EPS)
    return total


CFGS = [DMConfig(inputs=["lr", "hr"]), DMConfig(inputs=["lr"], moments=2), DMConfig(inputs=["hr"], layers=1)]


@pytest.mark.parametrize("cfg", CFGS, ids=["lr+hr", "lr-gram", "hr-layer1"])
def test_loss_and_pixel_gradient_equal_a_hand_computation(cfg, monkeypatch):
    m = srcnn()
    gen = torch.Generator().manual_seed(1)
    syn0 = torch.rand(2, 2, 3, 16, 16, generator=gen, dtype=torch.float64)
    real = torch.rand(2, 3, 3, 16, 16, generator=gen, dtype=torch.float64)

    def no_double_backward(*a, **k):
        raise AssertionError("DM must not call torch.autograd.grad (no gradient of a gradient)")

    leaf = syn0.clone().requires_grad_(True)
    with monkeypatch.context() as mp:
        mp.setattr(torch.autograd, "grad", no_double_backward)
        d = dm_match_and_backward(m, leaf, real, 2, cfg)
    assert all(p.grad is None for p in m.parameters())  # weights are fixed: no weight gradients

    hand_leaf = syn0.clone().requires_grad_(True)
    want = torch.stack([hand_loss(m, hand_leaf[c], real[c], cfg) for c in range(2)])
    torch.testing.assert_close(d, want.detach(), rtol=1e-6, atol=0)
    want.sum().backward()
    assert leaf.grad.abs().max() > 0
    torch.testing.assert_close(leaf.grad, hand_leaf.grad, rtol=1e-6, atol=1e-12)


def test_identical_statistics_give_zero_and_differ_otherwise():
    m = srcnn()
    real = torch.rand(1, 2, 3, 16, 16, dtype=torch.float64)
    same = real.clone().requires_grad_(True)  # the same images: identical statistics
    assert float(dm_match_and_backward(m, same, real, 2, DMConfig(moments=2))[0]) == pytest.approx(0, abs=1e-12)
    alike = torch.rand(1, 2, 3, 16, 16, dtype=torch.float64).requires_grad_(True)  # another uniform draw
    darker = alike.detach().mul(0.3).requires_grad_(True)
    assert 0 < dm_match_and_backward(m, alike, real, 2, DMConfig())[0] < dm_match_and_backward(m, darker, real, 2,
                                                                                                DMConfig())[0]


@pytest.mark.parametrize("cps,real_chunk", [(3, None), (1, None), (2, 1)])
def test_batched_equals_per_class_loop_and_chunking_changes_nothing(cps, real_chunk):
    m = srcnn()
    gen = torch.Generator().manual_seed(2)
    syn0 = torch.rand(3, 2, 3, 16, 16, generator=gen, dtype=torch.float64)
    real = torch.rand(3, 4, 3, 16, 16, generator=gen, dtype=torch.float64)
    cfg = DMConfig(moments=2)
    loop = syn0.clone().requires_grad_(True)
    d_loop = dm_match_and_backward(m, loop, real, 2, cfg, classes_per_step=1, batched=False)
    batched = syn0.clone().requires_grad_(True)
    d = dm_match_and_backward(m, batched, real, 2, cfg, classes_per_step=cps, real_chunk=real_chunk)
    torch.testing.assert_close(d, d_loop, rtol=1e-10, atol=0)
    torch.testing.assert_close(batched.grad, loop.grad, rtol=1e-9, atol=1e-15)


def test_activations_follow_the_forward_order_and_stop_early():
    edsr = build_model(ModelConfig(name="edsr", scale=2, num_features=8, depth=3))
    x = torch.rand(2, 3, 8, 8)
    maps = activations(edsr, x)
    assert len(maps) == 3 and all(t.shape == (2, 8, 8, 8) for t in maps)  # one ReLU per residual block
    first = F.relu(edsr.body[0].body[0](edsr.head(x - edsr.rgb_mean)))
    torch.testing.assert_close(maps[0], first)
    assert len(activations(edsr, x, max_layers=2)) == 2
    with pytest.raises(ValueError, match="no activation module"):
        activations(torch.nn.Conv2d(3, 3, 1), x)


def test_bad_shapes_and_config_are_rejected():
    m = srcnn()
    with pytest.raises(ValueError, match="expected syn"):
        dm_match_and_backward(m, torch.rand(2, 3, 16, 16), torch.rand(2, 2, 3, 16, 16), 2, DMConfig())
    with pytest.raises(ValueError, match="distill.dm.inputs"):
        DMConfig(inputs=["lr", "sr"])
    with pytest.raises(ValueError, match="distill.dm.moments"):
        DMConfig(moments=3)
    with pytest.raises(ValueError, match="outer_loop must be 1"):
        DistillConfig(objective="dm", outer_loop=2)


# ---- the engine with objective=dm ---------------------------------------------------------

@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("dm_cache"))


def job(cache, out, **distill_kw) -> DistillJobConfig:
    base = dict(ipc=2, image_size=32, init="downscaled", objective="dm", iterations=4, batch_real=3, lr_img=1.0,
                checkpoint_every=2, snapshot_every=1, classes_per_step=2, output_dir=str(out),
                reference=ModelConfig(name="srcnn", scale=2, num_features=4))
    base.update(distill_kw)
    data = DataConfig(source="mini", max_images=3, crop_size=64, step=64, cache_dir=cache)
    return DistillJobConfig(data=data, distill=DistillConfig(**base))


def state(folder) -> dict[str, torch.Tensor]:
    return load_file(str(checkpoint_path(folder)))


def with_(cfg, **kw):
    return dataclasses.replace(cfg, distill=dataclasses.replace(cfg.distill, **kw))


def test_dm_run_moves_pixels_and_resume_equals_an_uninterrupted_run(cache, tmp_path):
    from datasets import load_dataset

    cfg = job(cache, tmp_path / "whole")
    whole = distill(cfg)
    assert len(load_dataset(str(whole), split="train")) == 6
    first = state(distill(with_(cfg, iterations=1, output_dir=str(tmp_path / "one"))))
    assert float((state(whole)["images"] - first["images"]).abs().max()) > 1e-4
    part = with_(cfg, iterations=2, output_dir=str(tmp_path / "part"))
    distill(part)
    resumed = state(distill(with_(part, iterations=4, resume=True)))
    for key in ("images", "momentum", "snapshots"):
        assert torch.equal(resumed[key], state(whole)[key]), key


def launch_two_processes(cfg: DistillJobConfig, config_file: Path) -> None:
    """`accelerate launch --multi_gpu --num_processes 2` on CPU: a real 2-process gloo group."""
    config_file.write_text(dump_yaml(cfg))
    launcher = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([str(launcher), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "scripts" / "distill.py"),
                           "--config", str(config_file)], capture_output=True, text=True, env=env, timeout=300,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_dm_two_processes_give_the_same_set_as_one(cache, tmp_path):
    """Class-agnostic k-means units (5 units over 2 pseudo-classes) sharded 2 + 3: one run covers
    the DM step, the sharding of units, and pseudo-classes computed by the main process (this
    clustering is not cached yet) and read by the other."""
    from hf_srdistill.config import ClusterConfig

    cfg = job(cache, tmp_path / "two", iterations=3, classes_per_step=1, ipc=1, grouping="kmeans", num_images=5,
              seed=11, clusters=ClusterConfig(num_clusters=2))
    launch_two_processes(cfg, tmp_path / "two.yaml")
    assert json.loads((tmp_path / "two" / "provenance.json").read_text())["extra"]["processes"] == 2
    two = state(tmp_path / "two")
    one = state(distill(with_(cfg, output_dir=str(tmp_path / "one"))))
    assert float((two["images"] - one["images"]).abs().max()) <= 1e-4
    assert torch.equal(two["snapshots"], one["snapshots"])


@pytest.mark.slow
def test_dm_drives_latent_codes_through_the_same_pixel_path(cache, tmp_path):
    """init=latent: DM's pixel gradient is pushed through a (tiny, untrained) VAE decoder."""
    from hf_srdistill.config import LatentConfig
    from hf_srdistill.distill.latent_glue import latent_state_path

    lat = LatentConfig(backend="vae", vae_channels=[8, 16], chunk_size=4, lr_latent=1.0)
    cfg = job(cache, tmp_path / "latent", init="latent", latent=lat, iterations=2, ipc=1, lr_img=1.0)
    out = distill(cfg)
    final = state(out)["images"]
    start = torch.load(latent_state_path(out), weights_only=False)["initial_images"]
    assert final.shape == (3, 3, 32, 32) and float((final - start).abs().max()) > 1e-4
