"""Every registered model gets the same shape, round-trip and registry tests (tiny sizes)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from hf_srdistill.config import ModelConfig
from hf_srdistill.data.imresize import imresize
from hf_srdistill.models import MODELS, EDSR, SRCNN, VDSR, ModelNotFoundError, build_model, load_model

TINY = {"srcnn": dict(num_features=4), "vdsr": dict(num_features=4, depth=2),
        "edsr": dict(num_features=4, depth=2, res_scale=0.5)}


def tiny(name: str, scale: int = 2) -> nn.Module:
    torch.manual_seed(0)
    return MODELS[name](scale=scale, **TINY[name])


def test_registry_is_explicit() -> None:
    assert MODELS == {"srcnn": SRCNN, "vdsr": VDSR, "edsr": EDSR}
    assert set(TINY) == set(MODELS)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_shape(name: str, scale: int) -> None:
    model = tiny(name, scale)
    x = torch.rand(2, 3, 7, 9)
    y = model(x)
    assert y.shape == (2, 3, 7 * scale, 9 * scale)
    assert y.dtype == x.dtype and model.scale == scale
    y.square().mean().backward()  # differentiable end to end (distillation needs it)
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bad_input_and_scale(name: str) -> None:
    with pytest.raises(ValueError, match="scale"):
        MODELS[name](scale=5, **TINY[name])
    with pytest.raises(ValueError, match=r"\(N, 3, h, w\)"):
        tiny(name)(torch.rand(3, 8, 8))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_save_then_from_pretrained_is_exact(name: str, tmp_path) -> None:
    model = tiny(name, scale=3)
    with torch.no_grad():  # move away from the init so a fresh init cannot pass by chance
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model.save_pretrained(tmp_path)
    assert {"model.safetensors", "config.json"} <= set(os.listdir(tmp_path))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config == {"arch": name, "scale": 3, **TINY[name]}
    stored = load_file(tmp_path / "model.safetensors")
    assert set(stored) == set(model.state_dict())

    for restored in (type(model).from_pretrained(tmp_path), load_model(tmp_path)):
        assert type(restored) is type(model)
        sd, rd = model.state_dict(), restored.state_dict()
        assert sd.keys() == rd.keys()
        for k in sd:
            torch.testing.assert_close(rd[k], sd[k], atol=0, rtol=0)
        x = torch.rand(1, 3, 6, 5)
        model.eval(), restored.eval()
        with torch.no_grad():
            torch.testing.assert_close(restored(x), model(x), atol=0, rtol=0)


def test_loading_is_strict(tmp_path) -> None:
    """A checkpoint that does not fit must fail, not leave layers at their random init."""
    EDSR(scale=2, num_features=4, depth=2).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "depth": 3}))
    with pytest.raises(RuntimeError, match="Missing key"):
        load_model(tmp_path)


def test_build_model_uses_published_sizes_and_overrides() -> None:
    m = build_model(ModelConfig(name="srcnn", scale=3))
    assert isinstance(m, SRCNN) and m.scale == 3
    assert [c.kernel_size for c in m.modules() if isinstance(c, nn.Conv2d)] == [(9, 9), (5, 5), (5, 5)]
    assert [c.out_channels for c in m.modules() if isinstance(c, nn.Conv2d)] == [64, 32, 3]
    v = build_model(ModelConfig(name="vdsr"))
    assert sum(isinstance(c, nn.Conv2d) for c in v.modules()) == 20
    e = build_model(ModelConfig(name="edsr", scale=4))
    assert (e.depth, e.num_features, e.res_scale) == (16, 64, 1.0)
    big = build_model(ModelConfig(name="edsr", num_features=8, depth=3, res_scale=0.1))
    assert (big.depth, big.num_features, big.res_scale) == (3, 8, 0.1)
    assert len(big.body) == 3 + 1  # res-blocks + the conv closing the body


def test_build_model_errors() -> None:
    with pytest.raises(ValueError, match=r"'srcnn', 'vdsr', 'edsr'|\['edsr', 'srcnn', 'vdsr'\]"):
        build_model(ModelConfig(name="esrgan"))
    with pytest.raises(ValueError, match="model.depth=3 does not apply to srcnn"):
        build_model(ModelConfig(name="srcnn", depth=3))
    with pytest.raises(ValueError, match="model.res_scale=0.1 does not apply to vdsr"):
        build_model(ModelConfig(name="vdsr", res_scale=0.1))


def test_vdsr_is_residual_on_bicubic() -> None:
    model = VDSR(scale=2, num_features=4, depth=3)
    last = model.body[-1]
    nn.init.zeros_(last.weight), nn.init.zeros_(last.bias)
    x = torch.rand(1, 3, 8, 6)
    torch.testing.assert_close(model(x), imresize(x, 2), atol=0, rtol=0)


def test_edsr_mean_shift_and_upsampler() -> None:
    """Zeroed tail conv -> output is exactly the DIV2K mean; x4 uses two 2x pixel shuffles."""
    model = EDSR(scale=4, num_features=4, depth=1)
    shuffles = [m.upscale_factor for m in model.modules() if isinstance(m, nn.PixelShuffle)]
    assert shuffles == [2, 2]
    assert [m.upscale_factor for m in EDSR(scale=3, num_features=4, depth=1).modules()
            if isinstance(m, nn.PixelShuffle)] == [3]
    nn.init.zeros_(model.tail[-1].weight), nn.init.zeros_(model.tail[-1].bias)
    y = model(torch.rand(1, 3, 3, 3))
    expected = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1).expand(1, 3, 12, 12)
    torch.testing.assert_close(y, expected, atol=0, rtol=0)


def test_load_model_missing(tmp_path) -> None:
    with pytest.raises(ModelNotFoundError, match="no model folder"):
        load_model(tmp_path / "absent")
    SRCNN(scale=2, num_features=4).save_pretrained(tmp_path / "m")
    os.remove(tmp_path / "m" / "model.safetensors")
    with pytest.raises(ModelNotFoundError, match="missing model.safetensors"):
        load_model(tmp_path / "m")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"scale": 2}))
    (tmp_path / "other" / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="'arch' is None"):
        load_model(tmp_path / "other")


def test_load_model_from_hub_id(tmp_path, monkeypatch) -> None:
    """The Hub path, patched at huggingface_hub's download boundary with a local 'repo'."""
    repo = tmp_path / "repo"
    model = tiny("edsr", scale=2)
    model.save_pretrained(repo)
    calls = []

    def fake_download(repo_id, filename, revision=None, **_):
        calls.append((repo_id, filename, revision))
        if repo_id != "someone/edsr-tiny":
            from huggingface_hub.errors import LocalEntryNotFoundError
            raise LocalEntryNotFoundError(f"{repo_id} is not reachable and not cached")
        return str(repo / filename)

    monkeypatch.setattr("hf_srdistill.models.hf_hub_download", fake_download)
    monkeypatch.setattr("huggingface_hub.hub_mixin.hf_hub_download", fake_download)
    loaded = load_model("someone/edsr-tiny", revision="abc123")
    assert isinstance(loaded, EDSR)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v, atol=0, rtol=0)
    assert ("someone/edsr-tiny", "config.json", "abc123") in calls
    assert ("someone/edsr-tiny", "model.safetensors", "abc123") in calls
    with pytest.raises(ModelNotFoundError, match="neither a local model folder"):
        load_model("someone/missing")

    shutil.rmtree(repo)
    model.save_pretrained(repo)
    os.remove(repo / "model.safetensors")

    def no_weights(repo_id, filename, revision=None, **_):
        if filename != "config.json":
            from huggingface_hub.errors import EntryNotFoundError
            raise EntryNotFoundError(f"{filename} not in {repo_id}")
        return str(repo / filename)

    monkeypatch.setattr("hf_srdistill.models.hf_hub_download", no_weights)
    monkeypatch.setattr("huggingface_hub.hub_mixin.hf_hub_download", no_weights)
    with pytest.raises(ModelNotFoundError, match="weights"):
        load_model("someone/edsr-tiny")


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def test_published_sizes_by_hand_count() -> None:
    """Parameter counts of the default sizes, counted by hand from the papers' layer lists
    (EDSR: 1.37M baseline x2, 1.5M x4, 43M large x4, matching the paper's table)."""
    assert n_params(SRCNN()) == conv(3, 64, 9) + conv(64, 32, 5) + conv(32, 3, 5)  # 69,251
    assert n_params(VDSR()) == conv(3, 64, 3) + 18 * conv(64, 64, 3) + conv(64, 3, 3)  # 668,227

    def edsr(f: int, blocks: int, ups: list[int]) -> int:
        up = sum(conv(f, f * s * s, 3) for s in ups)
        return conv(3, f, 3) + 2 * blocks * conv(f, f, 3) + conv(f, f, 3) + up + conv(f, 3, 3)

    assert n_params(EDSR(scale=2)) == edsr(64, 16, [2]) == 1_369_859
    assert n_params(EDSR(scale=3)) == edsr(64, 16, [3])
    assert n_params(EDSR(scale=4)) == edsr(64, 16, [2, 2]) == 1_517_571
    large = build_model(ModelConfig(name="edsr", scale=4, num_features=256, depth=32, res_scale=0.1))
    assert n_params(large) == edsr(256, 32, [2, 2]) == 43_089_923
    assert large.body[0].res_scale == 0.1
