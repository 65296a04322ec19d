"""LPIPS wrapper: absent weights -> reported absent; present weights -> loaded from the cache only.

The backbone file here is a randomly initialised AlexNet written to a temporary TORCH_HOME.
That is acceptable only in these tests: they check the loading machinery (where the file is
looked for, that every backbone tensor comes from it, that nothing is downloaded, that the
value equals what lpips computes when torchvision loads the same file itself), never an
LPIPS value that means anything. Outside tests a checksum rejects such a file.
"""

from __future__ import annotations

import socket
import warnings

import numpy as np
import pytest
import torch
import torchvision

from hf_srdistill.metrics import LPIPSMetric
from hf_srdistill.metrics.lpips import ALEXNET_FILE, ALEXNET_URL, alexnet_checkpoint_path


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture(scope="module")
def random_alexnet(tmp_path_factory):
    torch.manual_seed(0)
    state = torchvision.models.alexnet(weights=None).state_dict()
    home = tmp_path_factory.mktemp("torch_home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, home / "hub" / "checkpoints" / ALEXNET_FILE)
    return home, state


def test_url_is_torchvisions() -> None:
    assert ALEXNET_URL == torchvision.models.AlexNet_Weights.IMAGENET1K_V1.url


def test_absent_weights_reported(tmp_path, monkeypatch, no_network, photo_pairs) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    metric = LPIPSMetric()
    assert not metric.available
    expected = tmp_path / "hub" / "checkpoints" / ALEXNET_FILE
    assert str(expected) in metric.missing_reason and ALEXNET_URL in metric.missing_reason
    _, sr, hr = photo_pairs[0]
    assert metric(sr, hr) is None
    assert metric.batch(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)) is None


def test_wrong_file_rejected_by_checksum(random_alexnet, monkeypatch, no_network) -> None:
    monkeypatch.setenv("TORCH_HOME", str(random_alexnet[0]))
    metric = LPIPSMetric()
    assert not metric.available and "SHA-256" in metric.missing_reason


def test_present_weights_load_from_cache(random_alexnet, monkeypatch, no_network, photo_pairs) -> None:
    home, state = random_alexnet
    monkeypatch.setenv("TORCH_HOME", str(home))
    assert alexnet_checkpoint_path() == home / "hub" / "checkpoints" / ALEXNET_FILE
    metric = LPIPSMetric(verify_hash=False)
    assert metric.available and metric.missing_reason is None
    backbone = metric.net.net.state_dict()
    assert len(backbone) == 10  # 5 convs x (weight, bias)
    for name, tensor in backbone.items():
        torch.testing.assert_close(tensor, state[f"features.{name.split('.', 1)[1]}"], atol=0, rtol=0)

    _, sr, hr = photo_pairs[0]
    assert metric(hr, hr.copy()) == 0.0
    value = metric(sr, hr)
    assert value is not None and value > 0

    # Independent route: lpips builds its backbone through torchvision, which finds the same
    # cached file by itself (download refused by the fixture) -> the same number.
    import lpips

    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=`
        warnings.simplefilter("ignore", UserWarning)
        reference = lpips.LPIPS(net="alex", version="0.1", verbose=False).eval()
    to_t = lambda x: torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None].float() / 255  # noqa: E731
    with torch.no_grad():
        expected = reference(to_t(sr), to_t(hr), normalize=True).item()
    assert value == pytest.approx(expected, rel=1e-5)
    assert metric(sr, hr, crop_border=4) != value


def test_absent_weights_are_reported_once_per_process(tmp_path, monkeypatch, no_network, caplog) -> None:
    import logging

    import hf_srdistill.metrics.lpips as lp

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(lp, "_WARNED", set())
    with caplog.at_level(logging.WARNING):
        for _ in range(3):  # e.g. the main job evaluates once per judge seed
            assert not LPIPSMetric().available
    assert [r.getMessage().startswith("LPIPS reported as absent") for r in caplog.records] == [True]
