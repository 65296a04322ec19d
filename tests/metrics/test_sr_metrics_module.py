"""The `evaluate` module loads by path with no network and returns the functions' numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from hf_srdistill.metrics import psnr, ssim

SCRIPT = r"""
import json, socket, sys
import numpy as np

def refuse(*args, **kwargs):
    raise AssertionError("network access attempted")
socket.socket.connect = refuse

import evaluate
from hf_srdistill.metrics import SR_METRICS_PATH

data = np.load(sys.argv[1])
n = len(data.files) // 2
sr = [data[f"sr{i}"] for i in range(n)]
hr = [data[f"hr{i}"] for i in range(n)]
metric = evaluate.load(SR_METRICS_PATH)
out = {"y": metric.compute(predictions=sr, references=hr, crop_border=4)}
metric.add_batch(predictions=sr[:1], references=hr[:1])  # batches of different image sizes
for s, h in zip(sr[1:], hr[1:]):
    metric.add(predictions=s, references=h)
out["rgb"] = metric.compute(crop_border=3, test_y_channel=False, lpips=False)
print(json.dumps(out))
"""


def test_evaluate_load_offline_matches_functions(photo_pairs, tmp_path) -> None:
    pairs = [(sr, hr) for _, sr, hr in photo_pairs]
    pairs[1] = (pairs[1][0][:100, :150], pairs[1][1][:100, :150])  # sizes differ across images
    np.savez(tmp_path / "imgs.npz", **{f"sr{i}": s for i, (s, _) in enumerate(pairs)},
             **{f"hr{i}": h for i, (_, h) in enumerate(pairs)})
    env = {**os.environ, "HF_EVALUATE_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf_home"), "HF_MODULES_CACHE": str(tmp_path / "modules"),
           "TORCH_HOME": str(tmp_path / "torch_home")}
    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "imgs.npz")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])

    # the PNG round trip is lossless; only summation order (array layout) may differ
    y, rgb = out["y"], out["rgb"]
    assert y["num_images"] == rgb["num_images"] == 3
    assert y["psnr"] == pytest.approx(np.mean([psnr(s, h, 4) for s, h in pairs]), abs=1e-12)
    assert y["ssim"] == pytest.approx(np.mean([ssim(s, h, 4) for s, h in pairs]), abs=1e-12)
    assert rgb["psnr"] == pytest.approx(np.mean([psnr(s, h, 3, test_y_channel=False) for s, h in pairs]), abs=1e-12)
    assert rgb["ssim"] == pytest.approx(np.mean([ssim(s, h, 3, test_y_channel=False) for s, h in pairs]), abs=1e-12)
    # no AlexNet weights in the empty TORCH_HOME: reported absent, with the file to supply
    assert y["lpips"] is None and "alexnet-owt-7be5be79.pth" in y["lpips_missing_reason"]
    assert str(tmp_path / "torch_home") in y["lpips_missing_reason"]
    assert rgb["lpips"] is None and "lpips_missing_reason" not in rgb
