"""reproduce-study: table rendering and CSV round trip, resume, skips, and the bench scripts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from datasets import load_dataset
from PIL import Image

from hf_srdistill.data.set_folder import write_manifest
from hf_srdistill import study
from hf_srdistill.configio import ConfigError, load_config
from hf_srdistill.study_report import aggregate, format_tables, read_csv, write_tables

ROOT = Path(__file__).resolve().parents[1]


def _fake_records():
    """Two judges, bicubic, one baseline and one synthetic set, 3 seeds; LPIPS absent for one set."""
    rng = np.random.default_rng(0)
    recs = [{"set": "bicubic", "group": "baseline", "judge": "-", "scale": 2, "seed": 0, "test_set": t,
             "psnr": 28.0 + i, "ssim": 0.8, "lpips": None} for i, t in enumerate(["set5", "set14"])]
    for judge in ("srcnn", "edsr"):
        for name, group in (("random_ipc1_96px", "baseline"), ("pixel_noise_ipc1", "synthetic")):
            for seed in range(3):
                for t in ("set5", "set14"):
                    recs.append({"set": name, "group": group, "judge": judge, "scale": 2, "seed": seed, "test_set": t,
                                 "psnr": float(30 + rng.normal()), "ssim": float(0.85 + 0.01 * rng.normal()),
                                 "lpips": None if name.startswith("random") else float(0.2 + 0.01 * rng.normal())})
    return recs


def test_tables_render_and_csv_parses_back(tmp_path):
    recs = _fake_records()
    md = write_tables(tmp_path, recs, {"latent_x": "no generator"}, title="t")
    rows = read_csv(tmp_path / "tables.csv")
    assert len(rows) == 2 * 3 * 2  # judges x (bicubic + 2 sets) x test sets
    for row in rows:
        sel = [r for r in recs if r["set"] == row["set"] and r["test_set"] == row["test_set"]
               and r["judge"] in (row["judge"], "-")]
        for m in ("psnr", "ssim", "lpips"):
            vals = [r[m] for r in sel if r[m] is not None]
            if not vals:
                assert row[f"{m}_mean"] is None and row[f"{m}_std"] is None
                continue
            assert row[f"{m}_mean"] == pytest.approx(sum(vals) / len(vals), rel=1e-12)
            if len(vals) > 1:
                mean = sum(vals) / len(vals)
                sd = (sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) ** 0.5
                assert row[f"{m}_std"] == pytest.approx(sd, rel=1e-9)
        assert row["n"] == (1 if row["set"] == "bicubic" else 3)
    # layout: bicubic, then baselines, then synthetic rows, per (scale, judge) table
    assert [r["set"] for r in rows if r["judge"] == "edsr" and r["test_set"] == "set5"] == \
        ["bicubic", "random_ipc1_96px", "pixel_noise_ipc1"]
    srcnn_noise = next(r for r in rows if r["judge"] == "srcnn" and r["set"] == "pixel_noise_ipc1" and r["test_set"] == "set14")
    assert f"{srcnn_noise['psnr_mean']:.2f} ± {srcnn_noise['psnr_std']:.2f}" in md
    assert "## x2, srcnn judge" in md and "## x2, edsr judge" in md and "set14 LPIPS↓" in md
    assert "| baseline | random_ipc1_96px |" in md and "absent" in md and "latent_x: no generator" in md
    assert (tmp_path / "tables.md").read_text() == md


def test_a_single_seed_shows_no_spread():
    recs = [r for r in _fake_records() if r["seed"] == 0]
    table = format_tables(aggregate(recs)).split("Values:")[0]
    assert "±" not in table and "| synthetic | pixel_noise_ipc1 |" in table


@pytest.fixture()
def tiny_suite(tmp_path):
    """A suite over two real experiment configs (mini), plus a latent one and an x4 reuse."""
    exp = ROOT / "configs" / "study" / "mini"
    text = f"""
name: t
output_dir: {tmp_path / 'out'}
experiments:
  - {{name: noise1, config: {exp / 'pixel_noise_ipc1.yaml'}}}
  - {{name: down1, config: {exp / 'pixel_downscaled_ipc1.yaml'}}}
  - {{name: latent1, config: {exp / 'latent_gan_inversion_ipc1.yaml'}}}
  - {{name: down1_at_x4, set_from: down1, scales: [4]}}
  - {{name: latent1_at_x4, set_from: latent1, scales: [4]}}
baselines: [full, random, coreset]
judges: [{{name: srcnn, num_features: 4}}, {{name: edsr, num_features: 4, depth: 1}}]
eval: {{test_sets: [mini], lpips: false}}
seeds: [0, 1]
qualitative_crop: 32
"""
    (tmp_path / "suite.yaml").write_text(text)
    return tmp_path / "suite.yaml"


def test_resume_skips_finished_runs(tiny_suite, monkeypatch):
    calls = {"set": [], "run": [], "reference": 0}

    def fake_build(plan, folder, store, reference, suite, latent_job):
        calls["set"].append(plan.key)
        if plan.job.distill.init == "latent":
            raise study.SkipSet("generator not on this machine")
        (folder / "data").mkdir(parents=True, exist_ok=True)
        (folder / "data" / "train-00000-of-00001.parquet").write_bytes(b"")
        write_manifest(folder, 0)  # a set counts as built once its manifest is written

    def fake_train_eval(run_dir, job, tests, lpips_metric, device):
        calls["run"].append(str(run_dir))
        return {t: {"psnr": 30.0 + job.train.seed, "ssim": 0.9, "lpips": None} for t in tests}

    def fake_train_sr(cfg):
        calls["reference"] += 1
        Path(cfg.train.output_dir).mkdir(parents=True)
        (Path(cfg.train.output_dir) / "model.safetensors").write_bytes(b"")

    photo = ("p", skimage.data.astronaut()[:64, :64])
    monkeypatch.setattr(study, "build_set", fake_build)
    monkeypatch.setattr(study, "train_and_evaluate", fake_train_eval)
    monkeypatch.setattr("hf_srdistill.train.train_sr", fake_train_sr)
    monkeypatch.setattr("hf_srdistill.data.load_test_set", lambda name, root=None: [photo])
    monkeypatch.setattr("hf_srdistill.data.grouped.SubImageStore.build", classmethod(lambda cls, cfg: None))

    suite = load_config(study.SuiteConfig, tiny_suite)
    first = study.run_study(suite, tiny_suite.parent)
    # sets: random, coreset (budget ipc1/96), noise1, down1, latent1 (skipped); full needs no build
    assert sorted(calls["set"]) == sorted(["random_ipc1_96px", "coreset_ipc1_96px", "noise1", "down1", "latent1"])
    # runs: full/random/coreset at x2 and x4, noise1/down1 at x2, down1_at_x4: 9 set-scales x 2 judges x 2 seeds
    assert len(calls["run"]) == 9 * 2 * 2 and calls["reference"] == 1
    assert set(first["skipped"]) == {"latent1", "latent1_at_x4"}
    out = Path(suite.output_dir)
    rows = read_csv(out / "tables.csv")
    assert {r["set"] for r in rows} >= {"bicubic", "full", "down1_at_x4"}
    assert all(r["psnr_mean"] == pytest.approx(30.5) for r in rows if r["set"] != "bicubic")
    assert Image.open(out / "qualitative_x4.png").size[0] > 0 and "latent1" in (out / "tables.md").read_text()
    assert not (out / "psnr_vs_ipc.png").exists()  # every set here is IPC 1: no curve to draw

    calls.update(set=[], run=[], reference=0)
    study.run_study(suite, tiny_suite.parent)
    assert calls == {"set": ["latent1"], "run": [], "reference": 0}  # only the skipped set is retried

    (out / "runs" / "down1" / "edsr_x2_seed1" / "eval.json").unlink()
    (out / "sets" / "noise1" / "data" / "train-00000-of-00001.parquet").unlink()
    calls.update(set=[], run=[])
    again = study.run_study(suite, tiny_suite.parent)
    assert sorted(calls["set"]) == ["latent1", "noise1"] and calls["run"] == [str(out / "runs" / "down1" / "edsr_x2_seed1")]
    assert json.loads((out / "results.json").read_text())["records"] == again["records"]

    changed = load_config(study.SuiteConfig, tiny_suite, ["--train.iterations=7"])
    with pytest.raises(ConfigError, match="another recipe.*train"):
        study.run_study(changed, tiny_suite.parent)


def test_recipe_changes_ignore_output_fields_and_fields_added_at_their_default():
    defaults = {"distill": {"lr_img": 0.01, "init_set": None, "checkpoint_every": 50}}
    old = {"distill": {"lr_img": 0.01, "checkpoint_every": 50}}  # written before init_set existed
    assert study.recipe_changes(old, {"distill": {"lr_img": 0.01, "init_set": None, "checkpoint_every": 5}},
                                defaults) == []
    assert study.recipe_changes(old, {"distill": {"lr_img": 0.02, "init_set": "x", "checkpoint_every": 50}},
                                defaults) == ["distill.init_set", "distill.lr_img"]
    assert study.recipe_changes({"judges": [1]}, {}, {}) == ["judges"]
    # a memory bound is not a recipe: a bench from before classes_per_step=0 (auto) stays reusable
    assert study.recipe_changes({"distill": {"classes_per_step": 32}}, {"distill": {"classes_per_step": 0}}, {}) == []


def test_cli_reports_missing_config(capsys):
    assert study.main(["reproduce-study", "--config", "/nonexistent/suite.yaml"]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_every_shipped_suite_plans():
    for suite_file in (ROOT / "configs" / "study").glob("*/suite.yaml"):
        suite = load_config(study.SuiteConfig, suite_file)
        plans = study.plan_sets(suite, suite_file.parent)
        assert {p.key for p in plans if p.group == "synthetic"} == {e.name for e in suite.experiments}


def test_bench_scripts_run_with_the_smallest_flags(tmp_path):
    env_py = sys.executable
    data = subprocess.run([env_py, str(ROOT / "scripts" / "bench_data.py"), "--sizes", "1", "2", "--width", "300",
                           "--height", "200", "--crop-size", "96", "--step", "48", "--workdir", str(tmp_path / "d")],
                          capture_output=True, text=True, timeout=300)
    assert data.returncode == 0, data.stderr[-2000:]
    assert "| images |" in data.stdout and "peak RSS" in data.stdout
    quality = subprocess.run([env_py, str(ROOT / "scripts" / "bench_quality.py"), "--quick",
                              "--sets", "full", "downscaled", "random", "coreset", "mosaic", "mixed", "representative",
                              "oracle",
                              "--half-budget-run", "--output-dir", str(tmp_path / "q")],
                             capture_output=True, text=True, timeout=600)
    assert quality.returncode == 0, quality.stderr[-3000:]
    result = json.loads((tmp_path / "q" / "bench_quality.json").read_text())
    sets = {r["set"] for r in result["records"]}
    assert sets >= {"distilled", "full", "downscaled", "random", "coreset", "mosaic", "mixed", "representative",
                    "oracle"}
    # the full-data judges' own half-budget runs (one per judge), scored at their end
    assert sorted(h["judge"] for h in result["half_budget"]) == ["edsr", "srcnn"]
    half = next(h for h in result["half_budget"] if h["judge"] == "srcnn")
    full_val = next(c["points"][-1]["val_psnr"] for c in result["curves"]
                    if c["set"] == "full" and c["judge"] == "srcnn")
    half_curve = json.loads(next((tmp_path / "q" / "runs" / "full_half_budget").glob("srcnn_*/curve.json")).read_text())
    assert half["half_step"] == half_curve["points"][-1]["step"] == 1 and half["budget"] == 3
    assert half["gain_db"] == pytest.approx(full_val - half_curve["points"][-1]["val_psnr"])
    assert "Separate half-budget runs" in quality.stdout
    mosaic = json.loads((tmp_path / "q" / "sets" / "mosaic" / "provenance.json").read_text())
    assert mosaic["extra"]["kind"] == "mosaic" and mosaic["extra"]["tiles"] == 2
    representative = json.loads((tmp_path / "q" / "sets" / "representative" / "provenance.json").read_text())
    assert representative["extra"]["kind"] == "representative"
    # the oracle row is the test photos downscaled like the init, not the training photos
    oracle = json.loads((tmp_path / "q" / "sets" / "oracle" / "provenance.json").read_text())
    assert oracle["config"]["data"]["split"] == "test" and oracle["extra"]["kind"] == "downscaled"
    hr = [[np.asarray(im) for im in load_dataset(str(tmp_path / "q" / "sets" / k), split="train")["hr"]]
          for k in ("oracle", "downscaled")]
    assert len(hr[0]) == len(hr[1]) and all(a.shape == b.shape and (a != b).any() for a, b in zip(*hr))
    assert all(np.isfinite(r["psnr"]) for r in result["records"])
    assert (tmp_path / "q" / "tables.csv").is_file() and "| set |" in quality.stdout

    # a finished set judged as a row of its own: the random set again scores as the random row
    random_set = str(tmp_path / "q" / "sets" / "random")
    again = subprocess.run([env_py, str(ROOT / "scripts" / "bench_quality.py"), "--quick", "--sets", "random",
                            "--set", f"random_again={random_set}", "--no-distill",
                            "--output-dir", str(tmp_path / "q")],
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    records = json.loads((tmp_path / "q" / "bench_quality.json").read_text())["records"]
    psnr = {r["set"]: r["psnr"] for r in records if r["judge"] == "srcnn"}
    assert set(psnr) == {"random", "random_again"}  # --no-distill: the distilled row is not judged
    assert psnr["random_again"] == pytest.approx(psnr["random"], abs=1e-6)
    wrong = subprocess.run([env_py, str(ROOT / "scripts" / "bench_quality.py"), "--quick", "--sets", "random",
                            "--distill-override", "distill.image_size=32", "--set", f"r={random_set}",
                            "--output-dir", str(tmp_path / "q2")], capture_output=True, text=True, timeout=600)
    assert wrong.returncode != 0 and "--set r: 2 images of side 48" in wrong.stderr
    assert "budget is 2 images of 32 px" in wrong.stderr
    escape = subprocess.run([env_py, str(ROOT / "scripts" / "bench_quality.py"), "--quick", "--sets", "random",
                             "--set", f"../r={random_set}", "--output-dir", str(tmp_path / "q3")],
                            capture_output=True, text=True, timeout=600)
    assert escape.returncode != 0 and "expected a new NAME=FOLDER (NAME: letters, digits" in escape.stderr
    agnostic = subprocess.run([env_py, str(ROOT / "scripts" / "bench_quality.py"), "--quick",
                               "--sets", "representative", "--distill-config", str(ROOT / "configs" / "distill_agnostic_mini.yaml"),
                               "--output-dir", str(tmp_path / "q4")], capture_output=True, text=True, timeout=600)
    assert agnostic.returncode == 2 and "needs grouping=class" in agnostic.stderr
    assert not (tmp_path / "q4").exists()  # refused before anything was built
