"""reproduce: recorded config -> same runner -> real comparison of the two artifacts."""

from __future__ import annotations

import io
from pathlib import Path

import httpx2
import numpy as np
import shutil

import pytest
import torch
from PIL import Image

from hf_srdistill.data.set_folder import write_manifest
from hf_srdistill import config as C
from hf_srdistill.configio import to_dict
from hf_srdistill.hub import reproduce as R
from hf_srdistill.hub.cli import main
from hf_srdistill.io import write_json
from hf_srdistill.provenance import collect_provenance, read_provenance

from .conftest import make_model_folder, make_set_folder


def _perturb_one_pixel(folder, row: int = 4, delta: int = 3):
    """Rewrite the shard with one pixel of one hr image changed by `delta`."""
    import pyarrow.parquet as pq

    path = folder / "data" / "train-00000-of-00001.parquet"
    table = pq.read_table(path)
    cells = table.column("hr").to_pylist()
    arr = np.asarray(Image.open(io.BytesIO(cells[row]["bytes"]))).copy()
    arr[5, 7, 1] = (int(arr[5, 7, 1]) + delta) % 256
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    cells[row] = {"bytes": buf.getvalue(), "path": None}
    import pyarrow as pa

    idx = table.column_names.index("hr")
    table = table.set_column(idx, table.schema.field("hr"), pa.array(cells, type=table.schema.field("hr").type))
    pq.write_table(table, path)


@pytest.fixture
def runs(monkeypatch):
    """Replace the distill/train runner with one that records the config it got."""
    seen = []

    def install(build):
        def runner_for(command):
            def run(cfg):
                seen.append((command, cfg))
                return build(cfg)
            return run
        monkeypatch.setattr(R, "runner_for", runner_for)
        return seen
    return install


def test_recorded_config_round_trips_and_redirects_output(tmp_path):
    cfg = C.TrainJobConfig(model=C.ModelConfig(scale=3), train=C.TrainConfig(iterations=7, seed=5))
    command, again = R.recorded_config(collect_provenance(cfg), tmp_path / "out")
    assert command == "train"
    want = to_dict(cfg)
    want["train"].update(output_dir=str(tmp_path / "out"), resume=False)
    assert to_dict(again) == want


def test_recorded_config_rejects_unknown_class_and_missing_train_set(tmp_path):
    with pytest.raises(ValueError, match="config class 'Nope'"):
        R.recorded_config({"config_class": "Nope", "config": {}}, tmp_path)
    prov = collect_provenance(C.TrainJobConfig(train=C.TrainConfig(train_set=str(tmp_path / "gone" / "set" / "x"))))
    with pytest.raises(FileNotFoundError, match="--train.train_set="):
        R.recorded_config(prov, tmp_path)
    command, cfg = R.recorded_config(prov, tmp_path, ["--train.train_set=someone/set"])
    assert cfg.train.train_set == "someone/set"


def test_distilled_set_bit_identical_rerun_matches(tmp_path, runs):
    original, _ = make_set_folder(tmp_path / "orig")
    seen = runs(lambda cfg: make_set_folder(Path(cfg.distill.output_dir))[0])
    verdict = R.reproduce(str(original), tmp_path / "rerun")
    assert verdict.match, verdict.report()
    assert "hr: all 6 images bit-identical" in verdict.report()
    (command, cfg), = seen
    assert command == "distill" and cfg.distill.ipc == 2 and cfg.distill.seed == 3
    assert cfg.distill.output_dir == str(tmp_path / "rerun")


def test_one_changed_pixel_is_a_mismatch(tmp_path, runs, capsys):
    original, _ = make_set_folder(tmp_path / "orig")

    def build(cfg):
        folder = make_set_folder(Path(cfg.distill.output_dir))[0]
        _perturb_one_pixel(folder, delta=3)
        return folder
    runs(build)
    assert main(["reproduce", str(original), "--output-dir", str(tmp_path / "rerun")]) == 1
    out = capsys.readouterr().out
    assert out.startswith("MISMATCH: reproduced distilled set")
    assert "hr: 1 of 6 images differ (max |diff| 3/255)" in out
    assert "lr_x2: all 6 images bit-identical" in out


def test_label_change_is_a_mismatch(tmp_path):
    a, _ = make_set_folder(tmp_path / "a")
    b, _ = make_set_folder(tmp_path / "b")
    prov = read_provenance(b)
    import pyarrow.parquet as pq
    import pyarrow.compute as pc

    path = b / "data" / "train-00000-of-00001.parquet"
    table = pq.read_table(path)
    idx = table.column_names.index("ipc_index")
    table = table.set_column(idx, table.schema.field("ipc_index"), pc.add(table.column("ipc_index"), 1).cast("int32"))
    pq.write_table(table, path)
    verdict = R.compare_sets(a, b)
    assert not verdict.match and "ipc_index: 6 of 6 values differ" in verdict.report()
    assert prov  # the folder is otherwise intact


def _model_runner(tmp_path, delta: float):
    def build(cfg):
        out = Path(cfg.train.output_dir)
        folder, model = make_model_folder(out, evals=False)
        if delta:
            with torch.no_grad():
                next(model.parameters()).add_(delta)
            model.save_pretrained(out)
        return folder
    return build


def test_model_identical_weights_match(tmp_path, runs):
    original, _ = make_model_folder(tmp_path / "orig")
    runs(_model_runner(tmp_path, 0.0))
    verdict = R.reproduce(str(original), tmp_path / "rerun")
    assert verdict.match and "bit-identical" in verdict.report()


@pytest.mark.parametrize("shift, ok", [(0.004, True), (0.05, False)])
def test_model_weight_drift_judged_by_eval_tolerance(tmp_path, runs, monkeypatch, shift, ok):
    original, _ = make_model_folder(tmp_path / "orig")
    recorded = {"mini": {"psnr": 29.876, "ssim": 0.8543, "lpips": 0.2101},
                "set5": {"psnr": 33.21, "ssim": 0.9156, "lpips": None}}
    remeasured = {"mini": {"psnr": 29.876 + shift, "ssim": 0.8543, "lpips": 0.2101},
                  "set5": {"psnr": 33.21, "ssim": 0.9156, "lpips": None}}
    monkeypatch.setattr(R, "_evaluate", lambda folder, sets, scale, root: remeasured if sets == list(recorded) else {})
    runs(_model_runner(tmp_path, 1e-3))
    verdict = R.reproduce(str(original), tmp_path / "rerun", tol=R.Tolerance(psnr=0.01))
    text = verdict.report()
    assert verdict.match is ok, text
    assert "weights differ: max |diff| 0.001" in text
    assert f"model / mini psnr: recorded 29.8760, re-run {29.876 + shift:.4f} ({'within' if ok else 'outside'}" in text


def test_model_drift_without_recorded_evals_is_a_mismatch(tmp_path, runs):
    original, _ = make_model_folder(tmp_path / "orig", evals=False)
    runs(_model_runner(tmp_path, 1e-3))
    verdict = R.reproduce(str(original), tmp_path / "rerun")
    assert not verdict.match and "cannot be judged" in verdict.report()


def test_compare_results_hand_worked():
    tol = R.Tolerance(psnr=0.05, ssim=1e-3, lpips=1e-3)
    a = {"results": {"m": {"s": {"psnr": 30.0, "ssim": 0.9, "lpips": None}}}}
    assert R.compare_results(a, {"results": {"m": {"s": {"psnr": 30.049, "ssim": 0.9009, "lpips": None}}}},
                             tol, "t").match
    assert not R.compare_results(a, {"results": {"m": {"s": {"psnr": 30.051, "ssim": 0.9, "lpips": None}}}},
                                 tol, "t").match
    assert not R.compare_results(a, {"results": {"m": {"s": {"psnr": 30.0, "ssim": 0.9, "lpips": 0.2}}}},
                                 tol, "t").match
    assert not R.compare_results(a, {"results": {"m": {}}}, tol, "t").match


def test_reproduce_cli_errors(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["reproduce", str(tmp_path / "empty")]) == 2
    assert "provenance.json" in capsys.readouterr().err
    folder, _ = make_set_folder(tmp_path / "set")
    assert main(["reproduce", str(folder), "stray"]) == 2
    write_json(folder / "provenance.json", {**read_provenance(folder), "config_class": "Other"})
    write_manifest(folder, 6)  # the edit above is deliberate: re-seal the set
    assert main(["reproduce", str(folder)]) == 2


def test_reproduce_checks_there_is_something_to_compare_before_rerunning(tmp_path, runs):
    from hf_srdistill.hub.folders import FolderError
    from hf_srdistill.hub.reproduce import reproduce

    folder, _ = make_set_folder(tmp_path / "set", results=False)
    shutil.rmtree(folder / "data")
    seen = runs(lambda cfg: tmp_path / "rerun")
    with pytest.raises(FolderError, match="nothing to compare"):
        reproduce(str(folder), tmp_path / "rerun")
    assert seen == []


def test_resolve_artifact_from_hub_tries_dataset_then_model(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    folder, _ = make_model_folder(tmp_path / "snap")
    tried = []

    def fake_snapshot(repo_id, repo_type=None, **kwargs):
        tried.append((repo_id, repo_type))
        if repo_type == "dataset":
            request = httpx2.Request("GET", f"https://huggingface.co/api/datasets/{repo_id}")
            raise RepositoryNotFoundError("404", response=httpx2.Response(404, request=request))
        return str(folder)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    assert R.resolve_artifact("someone/srcnn-x2") == folder
    assert tried == [("someone/srcnn-x2", "dataset"), ("someone/srcnn-x2", "model")]

    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda *a, **k: (_ for _ in ()).throw(ConnectionError("offline")))
    with pytest.raises(FileNotFoundError, match="dataset: ConnectionError: offline; model: ConnectionError"):
        R.resolve_artifact("someone/gone")
