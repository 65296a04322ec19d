"""Paired patches: alignment with the whole-image LR, augmentation, determinism, bad sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from hf_srdistill.data.images import to_tensor
from hf_srdistill.data.imresize import imresize
from hf_srdistill.data.patches import PairedPatchDataset


def _locate(patch: torch.Tensor, img: torch.Tensor, step: int):
    p = patch.shape[-1]
    for y in range(0, img.shape[-2] - p + 1, step):
        for x in range(0, img.shape[-1] - p + 1, step):
            if torch.equal(img[:, y:y + p, x:x + p], patch):
                return y, x
    return None


def _undo(t: torch.Tensor, hflip: bool, vflip: bool, rot: bool) -> torch.Tensor:
    if rot:
        t = t.transpose(-2, -1)
    if vflip:
        t = t.flip(-2)
    if hflip:
        t = t.flip(-1)
    return t


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_pairs_align_with_whole_image_lr(astronaut, scale):
    img = astronaut[50:99, 60:113]  # 49x53: not a multiple of any scale
    hr_full = to_tensor(img)[:, : 49 - 49 % scale, : 53 - 53 % scale]
    lr_full = imresize(hr_full, 1 / scale)  # LR of the whole mod-cropped image
    ds = PairedPatchDataset([img], patch_size=6 * scale, scale=scale, augment=False, length=5)
    torch.manual_seed(0)
    for i in range(5):
        lr, hr = ds[i]
        p = ds.patch_size
        assert lr.shape == (3, p // scale, p // scale) and hr.shape == (3, p, p) and lr.dtype == torch.float32
        loc = _locate(hr, hr_full, 1)
        assert loc is not None and loc[0] % scale == 0 and loc[1] % scale == 0
        y, x = loc[0] // scale, loc[1] // scale
        torch.testing.assert_close(lr, lr_full[:, y:y + p // scale, x:x + p // scale], rtol=0, atol=0)
    # the border of a crop's own downscale differs: the LR really comes from the whole image
    assert not torch.allclose(imresize(hr, 1 / scale), lr, atol=1e-4)


def test_mod_crop_drops_the_remainder(astronaut):
    img = astronaut[:31, :37]
    ds = PairedPatchDataset([img], patch_size=30, scale=3, augment=False, length=20)
    hr_full = to_tensor(img)
    for i in range(20):
        _, hr = ds[i]
        loc = _locate(hr, hr_full[:, :30, :36], 3)
        assert loc is not None and loc[0] == 0


def test_augmentation_keeps_pairs_aligned(astronaut):
    img = astronaut[200:240, 200:244]
    hr_full = to_tensor(img)
    lr_full = imresize(hr_full, 1 / 2)
    ds = PairedPatchDataset([img], patch_size=8, scale=2, augment=True, length=200)
    torch.manual_seed(1)
    seen = set()
    for i in range(len(ds)):
        lr, hr = ds[i]
        for combo in [(h, v, r) for h in (0, 1) for v in (0, 1) for r in (0, 1)]:
            loc = _locate(_undo(hr, *combo), hr_full, 2)
            if loc is not None:
                y, x = loc[0] // 2, loc[1] // 2
                if torch.equal(_undo(lr, *combo), lr_full[:, y:y + 4, x:x + 4]):
                    seen.add(combo)
                    break
        else:
            raise AssertionError(f"sample {i} is not an aligned dihedral view of the image")
    assert len(seen) == 8


def test_deterministic_under_seed_and_workers(astronaut, camera):
    images = [astronaut[:64, :64], np.stack([camera[:48, :56]] * 3, -1)]
    ds = PairedPatchDataset(images, patch_size=16, scale=2, length=8)

    def run_plain():
        torch.manual_seed(7)
        return [ds[i] for i in range(len(ds))]
    a, b = run_plain(), run_plain()
    assert all(torch.equal(x[1], y[1]) for x, y in zip(a, b))

    def run_loader():
        loader = DataLoader(ds, batch_size=4, shuffle=True, num_workers=2,
                            generator=torch.Generator().manual_seed(3))
        return torch.cat([hr for _, hr in loader])
    torch.testing.assert_close(run_loader(), run_loader(), rtol=0, atol=0)


def test_length_and_tensor_input(astronaut):
    img = astronaut[:40, :40]
    ds = PairedPatchDataset([img, to_tensor(img)], patch_size=20, scale=4, length=10)
    assert len(ds) == 10
    torch.manual_seed(5)
    a = ds[2]  # image 0 (uint8)
    torch.manual_seed(5)
    b = ds[3]  # image 1 (same pixels, as a float tensor)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    with pytest.raises(IndexError):
        ds[10]


def test_bad_inputs(astronaut):
    with pytest.raises(ValueError, match="multiple of the scale 3"):
        PairedPatchDataset([astronaut], patch_size=32, scale=3)
    with pytest.raises(ValueError, match="image 1 of size 20x64 is smaller than the patch size 24"):
        PairedPatchDataset([astronaut[:64, :64], astronaut[:20, :64]], patch_size=24, scale=2)
    with pytest.raises(ValueError, match="at least one"):
        PairedPatchDataset([], patch_size=24, scale=2)
    with pytest.raises(ValueError, match=r"\(3,H,W\) float"):
        PairedPatchDataset([torch.zeros(3, 32, 32, dtype=torch.uint8)], patch_size=8, scale=2)[0]

    class Lazy:  # a lazy sequence: sizes are checked on access, not up front
        def __len__(self):
            return 1

        def __getitem__(self, i):
            return astronaut[:10, :10]
    lazy = PairedPatchDataset(Lazy(), patch_size=16, scale=2)
    with pytest.raises(ValueError, match="image 0 of size 10x10"):
        lazy[0]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_window_lr_equals_the_whole_image_lr_at_borders_and_inside(astronaut, scale):
    from hf_srdistill.data.imresize import bicubic_downscale, bicubic_downscale_window

    side = 60 * scale
    hr = to_tensor(astronaut[:side, 7:7 + side])
    lr_full = bicubic_downscale(hr, scale)
    for top, left in [(0, 0), (0, 60 - 8), (60 - 8, 13), (21, 30)]:
        got = bicubic_downscale_window(hr, scale, top, left, 8)
        torch.testing.assert_close(got, lr_full[:, top:top + 8, left:left + 8], rtol=0, atol=2e-6)


@pytest.mark.parametrize("scale", [2, 4])
def test_large_images_give_the_samples_of_the_whole_image_path(astronaut, monkeypatch, scale):
    import hf_srdistill.data.patches as patches

    img = astronaut[:256, :248]
    samples = {}
    for ratio in (1000, 10**9):  # 10**9: every image is resized whole
        monkeypatch.setattr(patches, "WINDOW_MIN_PIXELS", ratio)
        ds = PairedPatchDataset([img], patch_size=8 * scale, scale=scale, augment=True, length=6)
        torch.manual_seed(5)
        samples[ratio] = [ds[i] for i in range(6)]
    for (lr_a, hr_a), (lr_b, hr_b) in zip(samples[1000], samples[10**9]):
        assert torch.equal(hr_a, hr_b)
        torch.testing.assert_close(lr_a, lr_b, rtol=0, atol=2e-6)
