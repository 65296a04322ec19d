"""The conv FLOP counter against hand counts and torch's own flop counter."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hf_srdistill.models import EDSR, SRCNN, count_conv_flops


def test_srcnn_hand_count() -> None:
    # SRCNN x3, n1=4, n2=2 on a 5x6 LR batch of 2: every conv runs at the upsampled 15x18.
    pixels = 2 * 15 * 18
    macs = pixels * (4 * 3 * 9 * 9 + 2 * 4 * 5 * 5 + 3 * 2 * 5 * 5)
    assert count_conv_flops(SRCNN(scale=3, num_features=4), (2, 3, 5, 6)) == 2 * macs
    assert count_conv_flops(SRCNN(scale=3, num_features=4), (3, 5, 6)) == macs


def test_edsr_hand_count_and_torch_counter() -> None:
    # EDSR x2, F=4, 1 block, on 1x3x4x5 (20 LR px): head, 2 block convs, body conv, up conv
    # (F -> 4F at LR size), then the last conv at HR size (80 px).
    model = EDSR(scale=2, num_features=4, depth=1)
    lr_px, hr_px = 20, 80
    macs = lr_px * (4 * 3 * 9 + 3 * (4 * 4 * 9) + 16 * 4 * 9) + hr_px * (3 * 4 * 9)
    assert count_conv_flops(model, (1, 3, 4, 5)) == 2 * macs
    with FlopCounterMode(display=False) as counter:  # torch counts convs as 2 x MACs too
        model(torch.zeros(1, 3, 4, 5))
    assert counter.get_total_flops() == 2 * macs


def test_bad_shape() -> None:
    with pytest.raises(ValueError, match="lr_shape"):
        count_conv_flops(SRCNN(), (8, 8))
