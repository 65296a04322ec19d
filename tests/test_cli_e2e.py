"""The real CLI, end to end, on the embedded default shrunk to seconds."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets import load_dataset

pytestmark = pytest.mark.slow


def test_main_job_writes_table_grid_sets_and_models(tmp_path):
    out = tmp_path / "main"
    cmd = [sys.executable, "-m", "hf_srdistill.cli", "main", "--config", "configs/main_mini.yaml",
           f"--output_dir={out}", "--data.max_images=2", "--data.crop_size=96", "--data.step=96",
           "--distill.iterations=2", "--distill.image_size=48", "--distill.batch_real=2",
           "--distill.snapshot_every=1", "--model.num_features=8", "--train.iterations=4",
           "--train.batch_size=2", "--train.patch_size=24", "--eval.lpips=false",
           "--reference_train.iterations=2", "--reference_train.batch_size=2", "--reference_train.patch_size=24",
           "--distill.tm.expert_steps=4", "--distill.tm.expert_every=1", "--distill.tm.min_start=0",
           "--distill.tm.max_start=2", "--distill.tm.expert_batch=2", "--distill.tm.expert_patch=24",
           "--distill.tm.syn_steps=2", "--distill.tm.batch_syn=2", "--distill.tm.patch_size=24",
           "--distill.tm.precond_batches=2"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]

    results = json.loads((out / "results.json").read_text())["results"]
    rows = ["bicubic"] + [f"srcnn on {k}" for k in ("distilled", "full", "downscaled", "random", "coreset")]
    assert list(results) == rows
    assert 20 < results["bicubic"]["mini"]["psnr"] < 60  # real photos, x2: a sane floor
    for row in rows:  # 4 training steps make poor models: only check real, finite numbers
        assert 0 < results[row]["mini"]["psnr"] < 60 and -1 < results[row]["mini"]["ssim"] <= 1
    table = (out / "table.md").read_text()
    assert all(f"| {row} |" in table for row in rows) and "| bicubic |" in proc.stdout

    with Image.open(out / "grid.png") as grid:  # HR, bicubic, 5 models: square tiles over a label band
        band, labels = int(grid.text["label_band"]), json.loads(grid.text["labels"])
        assert band > 0 and grid.width == 7 * (grid.height - band) == 7 * int(grid.text["tile"])
    assert labels[0] == "HR" and labels[1].startswith("bicubic\n")
    assert all(label.replace("\n", " ").startswith(row) and "PSNR" in label for row, label in zip(rows, labels[1:]))
    assert (out / "grid.pdf").read_bytes().startswith(b"%PDF")
    distilled = load_dataset(str(out / "sets" / "distilled"), split="train")
    assert distilled.num_rows == 2 and distilled[0]["hr"].size == (48, 48)
    assert all((out / "models" / "distilled" / f"seed{k}" / "model.safetensors").is_file() for k in (0, 1))
    # two judge seeds: the table says how the distilled set did against its init, with the spread
    per_seed = json.loads((out / "results_per_seed.json").read_text())
    assert list(per_seed) == ["0", "1"]
    assert results["srcnn on full"]["mini"]["psnr"] == pytest.approx(
        np.mean([per_seed[k]["srcnn on full"]["mini"]["psnr"] for k in ("0", "1")]))
    assert "| mini | downscaled |" in table and "| mini | random |" in table and "| mini | coreset |" in table
    assert "On mini, the distilled set beat its downscaled init" in table or "did not beat its downscaled" in table
    assert "the coreset of the same size" in table
    # the coreset was scored by the reference the job trained, not a scorer of its own
    scorer = json.loads((out / "sets" / "coreset" / "provenance.json").read_text())["extra"]["scorer"]
    assert scorer == {"kind": "pretrained", "path": str(out / "reference")}
    # the distillation matched trajectories of its own expert, stored beside the sets
    prov = json.loads((out / "sets" / "distilled" / "provenance.json").read_text())
    assert prov["config"]["distill"]["objective"] == "tm" and prov["config"]["distill"]["reference_pool"] == []
    assert prov["config"]["distill"]["tm"]["expert_dir"] == str(out / "experts")
    assert list((out / "experts").glob("*/expert.json"))
    start = load_dataset(str(out / "sets" / "downscaled"), split="train")
    change = max(float(np.abs(np.asarray(a["hr"], np.float64) - np.asarray(b["hr"], np.float64)).max())
                 for a, b in zip(distilled, start))
    assert change > 0  # the set moved from its start
