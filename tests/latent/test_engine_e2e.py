"""`hf-srdistill distill` with distill.init=latent on the mini set, for each backend family.

Skipped (with the reason) while the distillation engine does not yet wire init=latent.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hf_srdistill.cli import main
from hf_srdistill.latent import decode_all, load_latents

from latent_support import SUPPORT, write_tiny_pickle

SMALL = ["--data.max_images=2", "--data.crop_size=96", "--data.step=96", "--distill.image_size=48",
         "--distill.iterations=2", "--distill.batch_real=2", "--distill.latent.chunk_size=2"]


def _run(config: str, out, extra: list[str]) -> None:
    rc = main(["distill", "--config", f"configs/{config}.yaml", f"--distill.output_dir={out}", *SMALL, *extra])
    assert rc == 0


@pytest.mark.slow
@pytest.mark.parametrize("config", ["latent_vae_mini", "latent_stylegan_tiny_mini"])
def test_latent_distillation_writes_a_set_with_decodable_latents(config, tmp_path, monkeypatch) -> None:
    from datasets import load_dataset

    monkeypatch.chdir(SUPPORT.parents[2])  # configs/ and the tiny generator's source tree are repo-relative
    extra = ["--distill.latent.vae_channels=[8,16]"]
    if "stylegan" in config:
        pkl = write_tiny_pickle(tmp_path / "net.pkl", img_resolution=16, channels=8)
        extra = [f"--distill.latent.generator={pkl}", "--distill.latent.invert_steps=3",
                 "--distill.latent.tune_steps=3", "--distill.latent.w_avg_samples=64"]
    out = tmp_path / "set"
    _run(config, out, extra)

    ds = load_dataset(str(out), split="train")
    hr = torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1).float() / 255 for im in ds["hr"]])
    backend = load_latents(out)
    assert backend.labels == list(ds["label"]) and len(ds) == 2
    # the stored HR images are the latents' decode, up to uint8 rounding
    assert (decode_all(backend) - hr).abs().max() <= 0.5 / 255 + 1e-4
    meta = json.loads((out / "latent_meta.json").read_text())
    assert meta["image_size"] == 48 and meta["generator_weights"] == "generator.safetensors"
    assert len(load_dataset(str(tmp_path / "set_inversion"), split="train")) == 2
