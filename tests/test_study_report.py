"""Study figures: names in full (wrapped, never cut) and PSNR against IPC from hand-made records."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hf_srdistill import evaluate
from hf_srdistill.study_report import (_label, compose_evolution, family_of, plot_psnr_vs_ipc, psnr_ipc_series,
                                       qualitative_figure)

LONG = "latent_gan_inversion_ipc1_with_a_rather_long_experiment_name"


def _records():
    """bicubic and full at x2/x4, random and pixel_noise at IPC 1/10/50, two judges, two seeds."""
    recs = []
    for scale in (2, 4):
        recs.append({"set": "bicubic", "group": "baseline", "judge": "-", "scale": scale, "seed": 0,
                     "test_set": "set5", "psnr": 30.0 - scale, "ssim": 0.8, "lpips": None})
        for j_i, judge in enumerate(("srcnn", "edsr")):
            for seed in (0, 1):
                base = dict(group="baseline", judge=judge, scale=scale, seed=seed, test_set="set5", ssim=0.9, lpips=None)
                recs.append({**base, "set": "full", "psnr": 34.0 - scale + j_i})
                for ipc in (1, 10, 50):
                    psnr = 31.0 - scale + j_i + np.log10(ipc) + 0.2 * seed
                    recs.append({**base, "set": f"random_ipc{ipc}_96px", "psnr": psnr - 0.5})
                    noise = f"pixel_noise_ipc{ipc}" + ("_at_x4" if scale == 4 else "")
                    recs.append({**base, "group": "synthetic", "set": noise, "psnr": psnr})
    recs.append({"set": LONG, "group": "synthetic", "judge": "srcnn", "scale": 2, "seed": 0, "test_set": "set5",
                 "psnr": 29.0, "ssim": 0.85, "lpips": None})
    return recs


def test_family_of_reads_the_study_set_names():
    assert family_of("pixel_noise_ipc10") == ("pixel_noise", 10, None)
    assert family_of("random_ipc1_96px") == ("random", 1, 96)
    assert family_of("pixel_downscaled_ipc1_at_x4") == ("pixel_downscaled", 1, None)
    assert family_of("noise1", ipc=3) == ("noise1", 3, None) and family_of("full") == ("full", None, None)


def test_psnr_ipc_series_are_seed_means_per_family_judge_and_scale():
    data = psnr_ipc_series(_records())
    assert data["ipcs"] == [1, 10, 50] and data["test_sets"] == ["set5"]
    assert data["families"] == ["random", "pixel_noise", LONG.replace("_ipc1", "")]
    points = data["series"][("set5", "pixel_noise", "edsr", 4)]  # the _at_x4 rows join their family
    assert [p[0] for p in points] == [1, 10, 50]
    for ipc, mean, std in points:
        vals = [31.0 - 4 + 1 + np.log10(ipc) + 0.2 * s for s in (0, 1)]
        assert mean == pytest.approx(np.mean(vals)) and std == pytest.approx(np.std(vals, ddof=1))
    assert data["full"][("set5", "srcnn", 2)] == pytest.approx(32.0) and data["bicubic"][("set5", 4)] == 26.0


def test_plot_psnr_vs_ipc_writes_png_and_pdf_with_full_titles(tmp_path):
    got = plot_psnr_vs_ipc(_records(), tmp_path)
    assert got["png"] == tmp_path / "psnr_vs_ipc.png" and got["pdf"] == tmp_path / "psnr_vs_ipc.pdf"
    assert got["pdf"].read_bytes().startswith(b"%PDF")
    with Image.open(got["png"]) as img:
        assert img.format == "PNG" and img.width > 600 and img.height > 200
    family = LONG.replace("_ipc1", "")
    assert "\n" in got["titles"][2] and got["titles"][2].replace("\n", "") == family  # wrapped, not cut
    # one IPC only: nothing to plot against, nothing written
    single = [r for r in _records() if "ipc10" not in r["set"] and "ipc50" not in r["set"]]
    assert plot_psnr_vs_ipc(single, tmp_path / "one") is None and not (tmp_path / "one").exists()


def test_ipc_given_by_the_study_wins_over_the_name(tmp_path):
    recs = [{"set": name, "group": "synthetic", "judge": "srcnn", "scale": 2, "seed": 0, "test_set": "t",
             "psnr": p, "ssim": 0.9, "lpips": None} for name, p in (("a", 30.0), ("b", 31.0))]
    assert psnr_ipc_series(recs)["ipcs"] == []
    data = psnr_ipc_series(recs, ipcs={"a": 1, "b": 10})
    assert data["series"][("t", "a", "srcnn", 2)] == [(1, 30.0, None)] and data["ipcs"] == [1, 10]
    assert plot_psnr_vs_ipc(recs, tmp_path, ipcs={"a": 1, "b": 10})["png"].is_file()


def test_evolution_labels_keep_long_names(tmp_path):
    evo = tmp_path / "evo.png"
    Image.fromarray(np.zeros((32, 64, 3), np.uint8)).save(evo)
    short, long = _label("x", 64, 16), _label(LONG, 64, 16)
    assert long.shape[1] == 64 and long.shape[0] > 3 * short.shape[0]  # grows to hold every wrapped line
    fig = compose_evolution([(LONG, evo), ("x", evo)])
    assert fig.shape == (long.shape[0] + 32 + short.shape[0] + 32, 64, 3)


def test_qualitative_figure_labels_tiles_with_full_set_names(monkeypatch):
    import skimage.data

    drawn = []
    real = evaluate.comparison_grid

    def spy(*args, **kwargs):
        drawn.append(real(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(evaluate, "comparison_grid", spy)
    hr = skimage.data.astronaut()[:64, :64]
    rows = {"srcnn": {"full": "/nonexistent", LONG: "/nonexistent"}, "edsr_with_a_long_judge_name": {"full": "/nonexistent"}}
    img = qualitative_figure(rows, hr, 2, 48)
    assert len(drawn) == 2 and drawn[0].names == ["HR", "bicubic", "full", LONG]
    lines = drawn[0].labels[3].split("\n")
    assert lines[-1] == "no model" and "".join(lines[:-1]) == LONG  # the name in full
    assert img.shape[0] == sum(g.size[1] for g in drawn) and img.shape[1] > 4 * 48
