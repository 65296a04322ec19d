"""The batched (vmap) matching path equals the per-class loop, and both equal finite differences."""

from __future__ import annotations

import pytest
import torch

from hf_srdistill.config import ModelConfig
from hf_srdistill.distill.matching import auto_chunk, batched_class_grads, loop_class_grads, match_and_backward
from hf_srdistill.models import build_model

K, IPC, B, S = 3, 2, 3, 16


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="srcnn", scale=2, num_features=4)).double()
    g = torch.Generator().manual_seed(1)
    syn = torch.rand(K * IPC, 3, S, S, generator=g, dtype=torch.float64)
    real = torch.rand(K, B, 3, S, S, generator=g, dtype=torch.float64)
    return model, syn, real


def _match(model, syn, real, **kw):
    leaf = syn.clone().requires_grad_(True)
    d = match_and_backward(model, leaf.view(K, IPC, 3, S, S), real, 2, **kw)
    return d, leaf.grad


@pytest.mark.parametrize("distance", ["cos", "layerwise", "mse"])
def test_batched_equals_per_class_loop(setup, distance):
    model, syn, real = setup
    d_loop, g_loop = _match(model, syn, real, distance=distance, batched=False, classes_per_step=K)
    for cps, real_chunk, syn_chunk in ((K, None, None), (2, None, None), (1, None, None), (K, 1, None), (K, 2, 1)):
        d, g = _match(model, syn, real, distance=distance, batched=True, classes_per_step=cps,
                      real_chunk=real_chunk, syn_chunk=syn_chunk)
        assert torch.allclose(d, d_loop, rtol=1e-10, atol=1e-12)
        assert torch.allclose(g, g_loop, rtol=1e-8, atol=1e-12 * float(g_loop.abs().max()))
    assert g_loop.abs().max() > 0
    assert all(p.grad is None for p in model.parameters())  # the matching step leaves the weights alone


def test_real_gradients_equal_autograd_of_each_class_alone(setup):
    model, _, real = setup
    from hf_srdistill.data import imresize

    batched = batched_class_grads(model, real, 2)
    for c in range(K):
        model.zero_grad()
        torch.nn.functional.mse_loss(model(imresize(real[c], 0.5)), real[c]).backward()
        for g, p in zip(batched, model.parameters()):
            assert torch.allclose(g[c], p.grad, rtol=1e-10, atol=1e-14)
    model.zero_grad(set_to_none=True)


@pytest.mark.parametrize("batched", [True, False])
def test_pixel_gradient_matches_finite_differences(setup, batched):
    """The gradient reaching the pixels (through the bicubic LR and the double backward)."""
    model, syn, real = setup
    _, grad = _match(model, syn, real, distance="cos", batched=batched, classes_per_step=K)

    def total(x):
        leaf = x.clone().requires_grad_(True)
        return float(match_and_backward(model, leaf.view(K, IPC, 3, S, S), real, 2, "cos", K, batched).sum())

    eps = 1e-6
    for idx in [(0, 0, 3, 4), (3, 1, 8, 8), (5, 2, 15, 0)]:
        plus, minus = syn.clone(), syn.clone()
        plus[idx] += eps
        minus[idx] -= eps
        fd = (total(plus) - total(minus)) / (2 * eps)
        assert fd == pytest.approx(float(grad[idx]), rel=1e-4, abs=1e-9)


def test_auto_chunk_is_one_class_per_call_on_cpu_and_the_whole_chunk_on_gpu():
    from hf_srdistill.distill.dm import real_forward_chunk

    assert auto_chunk("cpu") == 1 and auto_chunk("cuda") is None
    assert real_forward_chunk(16, "cpu") == 1 and real_forward_chunk(4, "cpu") is None
    assert real_forward_chunk(16, "cuda") is None


def test_one_class_per_call_equals_the_loop_bit_for_bit_in_float32():
    """The CPU default runs the loop's own kernels: the same set whatever path a rerun takes."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(name="srcnn", scale=2, num_features=8))
    g = torch.Generator().manual_seed(2)
    syn, real = torch.rand(K * IPC, 3, S, S, generator=g), torch.rand(K, 4, 3, S, S, generator=g)
    d_loop, g_loop = _match(model, syn, real, batched=False, classes_per_step=K)
    d_one, g_one = _match(model, syn, real, batched=True, classes_per_step=K, real_chunk=1, syn_chunk=1)
    assert torch.equal(d_one, d_loop) and torch.equal(g_one, g_loop)


def test_loop_and_batched_shapes(setup):
    model, _, real = setup
    a = batched_class_grads(model, real, 2)
    b = loop_class_grads(model, real, 2, create_graph=False)
    assert [t.shape for t in a] == [t.shape for t in b] == [(K, *p.shape) for p in model.parameters()]


def test_bad_shapes_are_rejected(setup):
    model, syn, real = setup
    with pytest.raises(ValueError, match="expected syn"):
        match_and_backward(model, syn.clone().requires_grad_(), real, 2)


@pytest.mark.parametrize("batched", [True, False])
def test_bf16_pixel_gradients_stay_within_the_stated_tolerance_of_fp32(batched):
    from hf_srdistill.distill.matching import precision

    torch.manual_seed(0)
    model = build_model(ModelConfig(name="srcnn", scale=2, num_features=16))
    g = torch.Generator().manual_seed(1)
    syn, real = torch.rand(2, 3, 32, 32, generator=g), torch.rand(2, 4, 3, 32, 32, generator=g)
    grads = {}
    for mode in ("fp32", "bf16", "tf32"):
        leaf = syn.clone().requires_grad_(True)
        with precision(mode, "cpu"):
            match_and_backward(model, leaf.view(2, 1, 3, 32, 32), real, 2, batched=batched)
        grads[mode] = leaf.grad
    ref, low = grads["fp32"], grads["bf16"]
    assert low.dtype == torch.float32
    assert 0 < float((low - ref).norm() / ref.norm()) < 0.1  # bf16 did run, and stays close (config doc)
    assert float(torch.nn.functional.cosine_similarity(low.flatten(), ref.flatten(), dim=0)) > 0.99
    assert torch.equal(grads["tf32"], ref)  # TF32 is a CUDA setting: a CPU step is plain fp32
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        with precision("fp16", "cpu"):
            pass

