"""``distill.init=latent``: the loop's synthetic images are decoded from a generator's codes.

The loop keeps its pixel objective. Each matching step takes a fresh leaf from
``LatentSynthetic.images()``, backpropagates into its ``.grad`` as for pixels, and
``LatentSynthetic.step`` pushes that gradient through the decoder onto the codes (and the
generator weights, if trained). The codes start from the ``latent.init_from`` pixel init
(inverted or encoded by the backend), so a latent run starts where a pixel run would.

Single process only: pivotal tuning and ``train_generator`` change one generator shared by
all classes, which sharded processes would each change differently.

Resume: the codes, their optimiser and any changed generator weights live in
``checkpoint/latent_state.pt``, written (atomically) before ``state.safetensors`` so a
checkpoint never points at codes that are not on disk yet.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from hf_srdistill.config import DistillJobConfig
from hf_srdistill.distill.checkpoint import checkpoint_path
from hf_srdistill.distill.class_agnostic import initial_images, real_store, set_layout
from hf_srdistill.io import atomic_path


def latent_state_path(output_dir: str | Path) -> Path:
    return checkpoint_path(output_dir).with_name("latent_state.pt")


def latent_synthetic(cfg: DistillJobConfig, acc, store, lo: int, hi: int, resume: bool):
    """The codes of classes (or units) [lo, hi): resumed, or inverted/encoded from the pixel init."""
    from hf_srdistill.latent import LatentSynthetic

    d = cfg.distill
    if acc.num_processes > 1:
        raise NotImplementedError(f"distill.init=latent runs on one process, not {acc.num_processes}: the "
                                  "generator (pivotal tuning, latent.train_generator) is shared by all classes; "
                                  "launch without accelerate multi-process")
    if resume:
        path = latent_state_path(d.output_dir)
        if not path.is_file():
            raise FileNotFoundError(f"{checkpoint_path(d.output_dir)} is a latent run's checkpoint but its codes "
                                    f"{path} are missing; rerun without distill.resume")
        # our own file (optimizer state, init report): not a third-party pickle
        saved = torch.load(path, map_location="cpu", weights_only=False)
        return LatentSynthetic.from_state_dict(d.latent, d.image_size, saved, device=acc.device, seed=d.seed,
                                               momentum=d.momentum)
    start = initial_images(dataclasses.replace(d, init=d.latent.init_from), store, list(range(lo, hi)))
    labels = set_layout(store, d.ipc)[0][lo * d.ipc:hi * d.ipc]
    return LatentSynthetic.build(d.latent, start, labels, device=acc.device, seed=d.seed, momentum=d.momentum)


def save_latent_state(latent, output_dir: str | Path) -> None:
    with atomic_path(latent_state_path(output_dir)) as tmp:
        torch.save(latent.state_dict(), tmp)


def write_latent_outputs(cfg: DistillJobConfig, store, latent, out: Path, source: dict) -> None:
    """Codes next to the set, and ``<out>_inversion``: the decoded initial codes, undistilled.

    For stylegan_xl that second set is the "GAN inversion" baseline; for the VAEs it is the
    encode/decode round trip of the pixel init.
    """
    from hf_srdistill.distill.export import real_set_sizes, write_image_set

    latent.save(out)
    labels, ipc_index, names, grouping = set_layout(store, cfg.distill.ipc)
    write_image_set(out.with_name(out.name + "_inversion"), latent.initial_images, labels, names, ipc_index, cfg,
                    extra={"kind": "inversion", "grouping": grouping},
                    real_sizes=real_set_sizes(real_store(store), cfg.data), source=source)
