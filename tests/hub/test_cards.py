"""Cards render from real folders, parse back with huggingface_hub, and agree with load_dataset."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from datasets import load_dataset
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, ModelCard
from PIL import Image

from hf_srdistill.data.set_folder import write_manifest
from hf_srdistill.hub import FolderError, cards
from hf_srdistill.io import read_json, write_json
from hf_srdistill.provenance import read_provenance

from .conftest import CLASSES, make_model_folder, make_set_folder


def _code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_dataset_card_metadata_parses_and_matches_loader(tmp_path):
    folder, crops = make_set_folder(tmp_path / "set")
    path = cards.write_dataset_card(folder, repo_id="someone/mini-distilled")
    card = DatasetCard.load(path)
    meta = card.data
    assert meta.license == "other" and meta.license_name
    assert meta.task_categories == ["image-to-image"]
    assert {"super-resolution", "dataset-distillation", "synthetic"} <= set(meta.tags)
    assert meta.size_categories == ["n<1K"]

    configs = MetadataConfigs.from_dataset_card_data(meta)
    assert configs["default"]["data_files"] == [{"split": "train", "path": "data/*.parquet"}]
    info = DatasetInfosDict.from_dataset_card_data(meta)["default"]

    # load_dataset reads this same README (configs + dataset_info) and verifies split sizes
    ds = load_dataset(str(folder), split="train")
    assert ds.features == info.features
    assert info.splits["train"].num_examples == len(ds) == len(crops)
    assert ds.features["label"].names == CLASSES
    for row, (label, k, hr) in zip(ds, crops):
        assert row["label"] == label and row["ipc_index"] == k
        assert np.array_equal(np.asarray(row["hr"]), hr)
        assert row["lr_x2"].size == (hr.shape[1] // 2, hr.shape[0] // 2)


def test_dataset_card_body_reports_the_folder(tmp_path):
    folder, crops = make_set_folder(tmp_path / "set")
    text = cards.write_dataset_card(folder, repo_id="someone/mini-distilled").read_text()
    prov = read_provenance(folder)
    assert "fp-1234" in text and "scikit-image:data" in text
    assert f"{len(crops)} HR images ({len(CLASSES)} classes × IPC 2), 32×32 px" in text
    assert "`lr_x2`, `lr_x4`" in text and "`distill.seed=3`" in text
    assert "Gradient matching" in text and "1 − cosine" in text
    assert "| reduction_vs_subimages_pct | 98.00 % | 99.90 % | 99.90 % |" in text
    assert "| srcnn on distilled | mini (scikit-image photos) ×2 | 31.50 | 0.9012 | 0.1234 |" in text
    assert "![Synthetic images](samples.png)" in text and "evolution.png" not in text
    assert 'load_dataset("someone/mini-distilled", split="train")' in text
    assert "hf-srdistill train --train.train_set=someone/mini-distilled" in text
    # the full config block is the recorded config, not a paraphrase
    assert yaml.safe_load(_code_blocks(text, "yaml")[-1]) == prov["config"]


def test_dataset_card_usage_snippet_runs(tmp_path):
    folder, crops = make_set_folder(tmp_path / "set")
    text = cards.write_dataset_card(folder).read_text()  # no repo id: the snippet names the folder
    scope: dict = {}
    exec(_code_blocks(text, "python")[0], scope)
    assert np.array_equal(np.asarray(scope["hr"]), crops[0][2])


def test_dataset_card_without_optional_files(tmp_path):
    folder, _ = make_set_folder(tmp_path / "set", results=False)
    (folder / "size_report.json").unlink()
    (folder / "samples.png").unlink()
    prov = read_json(folder / "provenance.json")
    prov["source"]["license"], prov["source"]["license_note"] = None, None
    write_json(folder / "provenance.json", prov)
    write_manifest(folder, 6)  # the edit above is deliberate: re-seal the set
    text = cards.write_dataset_card(folder).read_text()
    assert "No `size_report.json`" in text
    assert "SR results" not in text and "![" not in text
    assert "licence was not recorded" in text
    assert DatasetCard.load(folder / "README.md").data.license == "other"


def test_dataset_card_licence_inherited(tmp_path):
    folder, _ = make_set_folder(tmp_path / "set")
    prov = read_json(folder / "provenance.json")
    prov["source"].update(kind="hub", id="someone/photos", license="cc-by-4.0", license_note=None)
    write_json(folder / "provenance.json", prov)
    write_manifest(folder, 6)  # the edit above is deliberate: re-seal the set
    meta = DatasetCard.load(cards.write_dataset_card(folder)).data
    assert meta.license == "cc-by-4.0" and meta.source_datasets == ["someone/photos"]


def test_card_from_the_distill_writer(tmp_path):
    """The folder distill/ really writes gets a card that load_dataset agrees with."""
    from hf_srdistill import config as C
    from hf_srdistill.distill.export import write_image_set

    cfg = C.DistillJobConfig(distill=C.DistillConfig(ipc=1, image_size=16))
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    folder = write_image_set(tmp_path / "set", images, [0, 1], ["a", "b"], [0, 0], cfg,
                             extra={"kind": "distilled"})
    cards.write_dataset_card(folder, "someone/x")
    info = DatasetInfosDict.from_dataset_card_data(DatasetCard.load(folder / "README.md").data)["default"]
    ds = load_dataset(str(folder), split="train")
    assert ds.features == info.features and len(ds) == 2


@pytest.mark.parametrize("distill, says", [
    ({}, "a reference SRCNN ×2 (a freshly initialised network at every iteration)"),
    ({"reference_path": "refs/a"}, "a reference SRCNN ×2 (the pretrained `refs/a`)"),
    ({"reference_pool": ["refs/a", "refs/b"], "max_change": 0.06},
     "each pretrained reference of the pool `refs/a`, `refs/b` in turn, at its own scale"),
])
def test_dataset_card_names_the_reference_and_the_bound(tmp_path, distill, says):
    from hf_srdistill import config as C
    from hf_srdistill.distill.export import write_image_set

    cfg = C.DistillJobConfig(distill=C.DistillConfig(ipc=1, image_size=16, **distill))
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    folder = write_image_set(tmp_path / "set", images, [0, 1], ["a", "b"], [0, 0], cfg, extra={"kind": "distilled"})
    text = cards.write_dataset_card(folder, "someone/x").read_text()
    assert says in text
    assert ("Every pixel stays within 0.06 of its initial value." in text) == ("max_change" in distill)


def test_dataset_folder_errors_name_what_is_missing(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FolderError, match=r"data/\*\.parquet[\s\S]*provenance\.json"):
        cards.write_dataset_card(tmp_path / "empty")
    assert not (tmp_path / "empty" / "README.md").exists()


def test_model_card_model_index_from_eval_results(tmp_path):
    folder, _ = make_model_folder(tmp_path / "model", train_set="someone/mini-distilled")
    card = ModelCard.load(cards.write_model_card(folder, repo_id="someone/srcnn-x2"))
    recorded = read_json(folder / "eval_results.json")["results"]
    got = {(r.dataset_type, r.metric_type): r.metric_value for r in card.data.eval_results}
    hub = {"mini": "mini", "set5": "eugenesiow/Set5"}  # dataset.type is the Hub id where one exists
    want = {(hub[s], m): round(v, 4) for s, ms in recorded.items() for m, v in ms.items() if v is not None}
    assert got == want  # LPIPS absent on set5 is left out, never invented
    set5 = next(r for r in card.data.eval_results if r.dataset_type == "eugenesiow/Set5")
    assert set5.dataset_name == "Set5" and set5.dataset_config == "bicubic_x2" and set5.dataset_split == "test"
    assert all(r.task_type == "image-to-image" for r in card.data.eval_results)
    assert card.data.model_name == "srcnn-x2"
    assert card.data.datasets == ["someone/mini-distilled"]
    assert "https://huggingface.co/datasets/someone/mini-distilled" in card.text
    assert "| Set5 ×2 | 33.21 | 0.9156 | absent |" in card.text


def test_model_card_local_training_set_and_no_evals(tmp_path):
    set_dir, _ = make_set_folder(tmp_path / "set")
    folder, _ = make_model_folder(tmp_path / "model", train_set=str(set_dir), evals=False)
    card = ModelCard.load(cards.write_model_card(folder))
    assert card.data.eval_results is None and card.data.datasets is None
    assert "not been evaluated yet" in card.text
    assert f"local set `{set_dir}`" in card.text and "scikit-image:data" in card.text
    linked = ModelCard.load(cards.write_model_card(folder, dataset_repo_id="someone/set"))
    assert linked.data.datasets == ["someone/set"]


@pytest.mark.parametrize("set_license, want", [("cc-by-4.0", "cc-by-4.0"), (None, "other")])
def test_model_licence_is_the_training_data_licence_at_save_and_push_time(tmp_path, set_license, want):
    """One rule in both places: the training data's licence when recorded, else other."""
    set_dir, _ = make_set_folder(tmp_path / "set")
    prov = read_json(set_dir / "provenance.json")
    prov["source"].update(id="someone/photos", license=set_license, license_note=None)
    write_json(set_dir / "provenance.json", prov)
    write_manifest(set_dir, 6)
    folder, _ = make_model_folder(tmp_path / "model", train_set=str(set_dir))
    saved = ModelCard.load(cards.write_model_card(folder)).data  # what training writes at its end
    pushed = cards.model_card(folder, repo_id="someone/srcnn-x2").data  # what push-model uploads
    assert saved.license == pushed.license == want
    assert saved.license_name == pushed.license_name == (None if set_license else "someone-photos-terms")


def test_a_bare_save_pretrained_card_claims_no_licence_it_cannot_know(tmp_path):
    from hf_srdistill.models import build_model
    from hf_srdistill import config as C

    build_model(C.ModelConfig(name="srcnn", scale=2, num_features=4)).save_pretrained(tmp_path / "m")
    assert ModelCard.load(tmp_path / "m" / "README.md").data.license == "other"


def test_model_card_usage_snippet_restores_exact_weights(tmp_path, monkeypatch):
    folder, model = make_model_folder(tmp_path / "model")
    text = cards.write_model_card(folder).read_text()
    monkeypatch.chdir(tmp_path)  # the snippet upscales a real image file, photo.png
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save("photo.png")
    scope: dict = {}
    exec(_code_blocks(text, "python")[0], scope)
    assert scope["sr"].size == (48, 40) and scope["sr"].mode == "RGB"
    with Image.open("photo_x2.png") as saved:
        assert saved.size == (48, 40)
    assert "hf-srdistill upscale photo.png photo_x2.png --model" in text
    loaded = scope["model"].state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    from hf_srdistill.models import SRCNN

    again = SRCNN.from_pretrained(str(folder)).state_dict()
    assert all(torch.equal(again[k], v) for k, v in model.state_dict().items())


def test_card_templates_are_package_data():
    """The templates resolve inside the package, and pyproject ships that folder in wheels."""
    import tomllib

    from hf_srdistill.hub import card_text

    package = Path(card_text.__file__).parents[1]
    for name in ("dataset_card.md.j2", "model_card.md.j2"):
        path = Path(card_text.template(name))
        assert path.is_file() and path.parent == package / "hub" / "model_cards"
    with open(package.parent / "pyproject.toml", "rb") as f:
        data = tomllib.load(f)["tool"]["setuptools"]["package-data"]["hf_srdistill"]
    assert "hub/model_cards/*.j2" in data


@pytest.mark.parametrize("distill, says", [
    ({"objective": "dm"}, "**Distribution matching**"),
    ({"objective": "tm", "image_size": 48}, "**Trajectory matching**"),
    ({"grouping": "global", "num_images": 2}, "matched against real patches of the whole data"),
])
def test_dataset_card_describes_the_objective_it_was_made_with(tmp_path, distill, says):
    from hf_srdistill import config as C
    from hf_srdistill.distill.export import write_image_set

    cfg = C.DistillJobConfig(distill=C.DistillConfig(**{"ipc": 1, "image_size": 16, **distill}))
    s = cfg.distill.image_size
    images = torch.rand(2, 3, s, s, generator=torch.Generator().manual_seed(0))
    folder = write_image_set(tmp_path / "set", images, [0, 1], ["a", "b"], [0, 0], cfg, extra={"kind": "distilled"})
    text = (folder / "README.md").read_text()  # the card written with the set
    assert says in text and ("Gradient matching" in text) == (distill.get("objective", "gm") == "gm")
