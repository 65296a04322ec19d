"""Gradient distances against hand computations in numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_srdistill.distill.objectives import (cos_distance, get_distance, layerwise_distance,
                                             mse_distance)


def _grads(seed: int, k: int = 3):
    g = torch.Generator().manual_seed(seed)
    # conv weight (K,4,2,3,3), its bias (K,4), a linear weight (K,5,4)
    return [torch.randn(k, 4, 2, 3, 3, generator=g, dtype=torch.float64),
            torch.randn(k, 4, generator=g, dtype=torch.float64),
            torch.randn(k, 5, 4, generator=g, dtype=torch.float64)]


def test_cos_is_one_minus_cosine_over_all_weights():
    a, b = _grads(0), _grads(1)
    got = cos_distance(a, b).numpy()
    for c in range(3):
        x = np.concatenate([t[c].numpy().ravel() for t in a])
        y = np.concatenate([t[c].numpy().ravel() for t in b])
        assert got[c] == pytest.approx(1 - x @ y / (np.linalg.norm(x) * np.linalg.norm(y)), abs=1e-6)  # EPS=1e-6 in the denominator, as DC


def test_layerwise_sums_per_output_channel_distances_and_ignores_biases():
    a, b = _grads(2), _grads(3)
    got = layerwise_distance(a, b).numpy()
    for c in range(3):
        want = 0.0
        for t_a, t_b in ((a[0], b[0]), (a[2], b[2])):  # the bias (a[1]) is not part of DC's distance
            for o in range(t_a.shape[1]):
                x, y = t_a[c, o].numpy().ravel(), t_b[c, o].numpy().ravel()
                want += 1 - x @ y / (np.linalg.norm(x) * np.linalg.norm(y))
        assert got[c] == pytest.approx(want, abs=1e-6)  # EPS=1e-6 in the denominator, as DC
    b[1] = b[1] * -7.0 + 3.0
    assert np.allclose(layerwise_distance(a, b).numpy(), got)


def test_mse_is_sum_of_squared_differences():
    a, b = _grads(4), _grads(5)
    got = mse_distance(a, b).numpy()
    for c in range(3):
        assert got[c] == pytest.approx(sum(float(((x[c] - y[c]) ** 2).sum()) for x, y in zip(a, b)))


def test_hand_worked_values():
    one = [torch.tensor([[[[1.0, 0.0]]], [[[1.0, 0.0]]]])]  # K=2, one 1x1x2 "conv" weight
    other = [torch.tensor([[[[0.0, 2.0]]], [[[-3.0, 0.0]]]])]
    assert torch.allclose(cos_distance(one, other), torch.tensor([1.0, 2.0]), atol=1e-5)
    assert torch.allclose(layerwise_distance(one, other), torch.tensor([1.0, 2.0]), atol=1e-5)
    assert torch.allclose(mse_distance(one, other), torch.tensor([5.0, 16.0]))
    assert torch.allclose(cos_distance(one, one), torch.zeros(2), atol=1e-5)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="equal length"):
        cos_distance(_grads(0), _grads(0)[:2])
    with pytest.raises(ValueError, match="shapes differ"):
        mse_distance([torch.zeros(2, 3)], [torch.zeros(3, 3)])
    with pytest.raises(ValueError, match="unknown gradient distance 'l1'"):
        get_distance("l1")
