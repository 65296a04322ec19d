"""The engine-facing glue: pixel gradient in, SGD step on the codes out; checkpoints."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hf_srdistill.config import LatentConfig
from hf_srdistill.latent import LatentSynthetic, build_backend


def _pixel_loss(images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Stands in for the engine's gradient-matching loss: any function of the pixels."""
    return F.mse_loss(images, target, reduction="sum")


def test_step_is_sgd_on_the_codes_with_the_decoded_pixel_gradient(photos, size) -> None:
    cfg = LatentConfig(backend="vae", vae_channels=[8, 16], chunk_size=3, lr_latent=0.05)
    syn = LatentSynthetic.build(cfg, photos, [0, 1, 2, 3], momentum=0.5)
    target = photos.flip(0)
    z0 = syn.backend.latents["z"].detach().clone()
    # reference: one full-batch autograd pass through decode, then plain SGD (first step: no momentum yet)
    z_ref = z0.clone().requires_grad_(True)
    grad_ref, = torch.autograd.grad(_pixel_loss(syn.backend.decode({"z": z_ref}), target), z_ref)

    images = syn.images()
    assert images.is_leaf and images.requires_grad and images.shape == (4, 3, size, size)
    torch.testing.assert_close(syn.initial_images, images.detach())
    _pixel_loss(images, target).backward()
    syn.step(images)
    expected = z0 - 0.05 * grad_ref
    scale = float(grad_ref.abs().max()) * 0.05
    torch.testing.assert_close(syn.backend.latents["z"].detach(), expected, rtol=1e-4, atol=1e-5 * scale)
    assert syn.images() is not images  # the cache was invalidated


def test_steps_lower_a_pixel_objective(photos) -> None:
    cfg = LatentConfig(backend="vae", vae_channels=[8, 16], chunk_size=3, lr_latent=0.02, train_generator=True)
    syn = LatentSynthetic.build(cfg, photos, [0, 1, 2, 3], momentum=0.5)
    target = torch.full_like(photos, 0.3)
    losses = []
    for _ in range(8):
        images = syn.images()
        loss = _pixel_loss(images, target)
        loss.backward()
        syn.step(images)
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_checkpoint_resume_continues_identically(photos, stylegan_cfg, size) -> None:
    from dataclasses import replace

    cfg = replace(stylegan_cfg, invert_steps=3, tune_steps=2, train_generator=True, lr_generator=1e-3)
    target = photos.mean(0, keepdim=True).expand_as(photos)

    def advance(s: LatentSynthetic) -> None:
        images = s.images()
        _pixel_loss(images, target).backward()
        s.step(images)

    a = LatentSynthetic.build(cfg, photos, [0, 1, 2, 3])
    advance(a)
    state = a.state_dict()
    b = LatentSynthetic.from_state_dict(cfg, size, state)
    assert b.backend.modified_generator == ["pivotal tuning"]
    torch.testing.assert_close(b.initial_images, a.initial_images)
    advance(a)
    advance(b)
    torch.testing.assert_close(b.images().detach(), a.images().detach(), rtol=1e-5, atol=1e-6)
    # the resumed run is not trivially equal to a fresh one: the generator and momentum moved
    fresh = build_backend(cfg, size)
    fresh.set_latents(state["latents"], state["labels"])
    assert (fresh.decode(fresh.latents) - a.images()).abs().max() > 1e-4
