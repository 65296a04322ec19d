"""A distilled mini set and an SRCNN trained on it, carded and reproduced through the real CLI."""

from __future__ import annotations

import pytest
from datasets import load_dataset
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCard, ModelCard

from hf_srdistill.cli import main
from hf_srdistill.hub.cards import write_dataset_card, write_model_card
from hf_srdistill.io import read_json


@pytest.mark.slow
def test_distil_train_evaluate_card_reproduce(tmp_path, capsys):
    data = ["--data.max_images=2", "--data.crop_size=64", "--data.step=64", f"--data.cache_dir={tmp_path}/cache"]
    set_dir, model_dir = tmp_path / "set", tmp_path / "model"
    assert main(["distill", *data, "--distill.image_size=32", "--distill.iterations=2", "--distill.batch_real=4",
                 "--distill.reference.num_features=8", f"--distill.output_dir={set_dir}"]) == 0

    card = DatasetCard.load(write_dataset_card(set_dir, "someone/mini-distilled"))
    ds = load_dataset(str(set_dir), split="train")
    info = DatasetInfosDict.from_dataset_card_data(card.data)["default"]
    assert len(ds) == 2 and ds.features == info.features and info.splits["train"].num_examples == 2
    prov = read_json(set_dir / "provenance.json")
    assert prov["source"]["fingerprint"] and prov["source"]["fingerprint"] in card.text

    assert main(["train", *data, f"--train.train_set={set_dir}", "--train.iterations=3", "--train.batch_size=2",
                 "--train.patch_size=16", "--model.num_features=8", f"--train.output_dir={model_dir}"]) == 0
    assert main(["evaluate", f"--model_path={model_dir}", f"--eval.output_dir={tmp_path}/eval",
                 "--eval.grid=false", "--eval.lpips=false"]) == 0
    measured = read_json(model_dir / "eval_results.json")
    mcard = ModelCard.load(write_model_card(model_dir, "someone/srcnn-x2", dataset_repo_id="someone/mini-distilled"))
    got = {(r.dataset_type, r.metric_type): r.metric_value for r in mcard.data.eval_results}
    assert got == {("mini", "psnr"): round(measured["results"]["mini"]["psnr"], 4),
                   ("mini", "ssim"): round(measured["results"]["mini"]["ssim"], 4)}
    assert mcard.data.datasets == ["someone/mini-distilled"]

    capsys.readouterr()
    assert main(["reproduce", str(set_dir), "--output-dir", str(tmp_path / "set_again")]) == 0
    assert "MATCH: reproduced distilled set" in capsys.readouterr().out
    assert main(["reproduce", str(model_dir), "--output-dir", str(tmp_path / "model_again")]) == 0
    assert "weights: all" in capsys.readouterr().out
