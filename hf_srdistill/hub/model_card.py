"""The model card of a trained-model folder, rendered from model_cards/model_card.md.j2.

The model-index (PSNR/SSIM/LPIPS per test set at the model's scale) comes from
eval_results.json through huggingface_hub's EvalResult, so `ModelCard.load(...).data.eval_results`
holds the measured numbers; the training data links to the distilled set's Hub repo.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from hf_srdistill.hub import card_text as T
from hf_srdistill.hub import folders as F
from hf_srdistill.io import write_text
from hf_srdistill.provenance import read_provenance


def model_card(folder: str | Path, repo_id: str | None = None, dataset_repo_id: str | None = None) -> ModelCard:
    """Render the model card of a trained-model folder, with model-index from eval_results.json."""
    folder = F.check_model_folder(folder)
    prov = read_provenance(folder)
    config = prov["config"]
    mcfg, tcfg = config.get("model", {}), config.get("train", {})
    evals = F.read_json_if_present(folder / "eval_results.json")
    scale = int((evals or {}).get("scale") or mcfg.get("scale", 2))
    name = repo_id.split("/")[-1] if repo_id else folder.resolve().name
    dataset_id = dataset_repo_id or _hub_train_set(tcfg.get("train_set"))
    set_prov = _set_provenance(tcfg.get("train_set"))
    train_source = set_prov.get("source") or {}
    set_kind = (set_prov.get("extra") or {}).get("kind", "distilled")
    license_, license_name = model_license(prov, set_prov)

    card_data = ModelCardData(
        model_name=name, license=license_, library_name="hf_srdistill",
        pipeline_tag="image-to-image", metrics=["psnr", "ssim", "lpips"],
        tags=["super-resolution", "image-to-image", "hf_srdistill", str(mcfg.get("name")),
              "pytorch_model_hub_mixin", "model_hub_mixin"]
        + (["dataset-distillation"] if tcfg.get("train_set") and set_kind == "distilled" else []),
        datasets=[dataset_id] if dataset_id else None,
        eval_results=eval_results(evals) or None)
    if license_name:
        card_data.license_name = license_name
    context = dict(
        title=f"{str(mcfg.get('name', 'sr')).upper()} ×{scale} — {name}",
        summary=(f"An image super-resolution model (×{scale}) trained with hf_srdistill "
                 f"{f'on a {set_kind} training set' if tcfg.get('train_set') else 'on real sub-images'}."),
        arch_line=_arch_line(mcfg), scale=scale, data_line=_data_line(tcfg, dataset_id, train_source, prov),
        seeds_line=T.seeds_line(prov), eval_table=_eval_table(evals) if evals else "",
        load_id=repo_id or str(folder), class_name=_class_name(mcfg.get("name")),
        train_rows=[(k, v) for k, v in tcfg.items() if k not in ("output_dir", "resume")],
        **T.provenance_lines(prov), config_yaml=yaml.safe_dump(config, sort_keys=False))
    return ModelCard.from_template(card_data, template_path=T.template("model_card.md.j2"), **context)


def write_model_card(folder: str | Path, repo_id: str | None = None, dataset_repo_id: str | None = None) -> Path:
    card = model_card(folder, repo_id, dataset_repo_id)
    path = Path(folder) / "README.md"
    write_text(path, str(card))
    return path


def model_license(prov: dict, set_prov: dict | None = None) -> tuple[str, str | None]:
    """The model's licence = its training data's, when recorded; else ``other``.

    The training data is the local set it was trained on (that set's source licence) or, for a
    model trained on real sub-images, the data source recorded in its provenance. The same rule
    gives the card written when training ends and the one push-model uploads.
    """
    train_set = (prov.get("config") or {}).get("train", {}).get("train_set")
    source = ((set_prov or {}).get("source") or {}) if train_set else (prov.get("source") or {})
    license_ = source.get("license") or "other"
    name = f"{T.slug(source.get('id') or 'training-data')}-terms" if license_ == "other" else None
    return license_, name


def eval_results(evals: dict | None) -> list[EvalResult]:
    """model-index entries: PSNR/SSIM (and LPIPS where measured) per test set at the model's scale."""
    if not evals:
        return []
    scale = int(evals["scale"])
    out = []
    for test_set, metrics in evals["results"].items():
        for metric, label in (("psnr", f"PSNR (Y, crop {scale})"), ("ssim", f"SSIM (Y, crop {scale})"),
                              ("lpips", "LPIPS (AlexNet)")):
            value = metrics.get(metric)
            if value is None:  # LPIPS absent: leave it out rather than publish a fake number
                continue
            out.append(EvalResult(
                task_type="image-to-image", task_name=f"Image Super-Resolution ×{scale}",
                dataset_type=T.TEST_SET_HUB_IDS.get(test_set, test_set),
                dataset_name=T.TEST_SET_NAMES.get(test_set, test_set),
                dataset_config=f"bicubic_x{scale}",
                dataset_split="validation" if test_set == "div2k-val" else "test",
                metric_type=metric, metric_name=label, metric_value=round(float(value), 4)))
    return out


def _eval_table(evals: dict) -> str:
    lines = ["| test set | PSNR (dB) ↑ | SSIM ↑ | LPIPS ↓ |", "|---|---|---|---|"]
    for test_set, m in evals["results"].items():
        lp = "absent" if m.get("lpips") is None else f"{m['lpips']:.4f}"
        lines.append(f"| {T.TEST_SET_NAMES.get(test_set, test_set)} ×{evals['scale']} | {m['psnr']:.2f} | "
                     f"{m['ssim']:.4f} | {lp} |")
    return "\n".join(lines)


def _arch_line(mcfg: dict) -> str:
    parts = [f"`{mcfg.get('name')}`"]
    for key in ("num_features", "depth", "res_scale"):
        if mcfg.get(key) is not None:
            parts.append(f"{key}={mcfg[key]}")
    return ", ".join(parts) + " (unlisted sizes are the published ones)"


def _hub_train_set(train_set: str | None) -> str | None:
    """A train_set that is not a local path but looks like user/name is a Hub dataset id."""
    if train_set and not Path(train_set).exists() and T.HUB_ID.match(train_set):
        return train_set
    return None


def _set_provenance(train_set: str | None) -> dict:
    """The provenance of the set the model was trained on, when that folder is at hand."""
    if train_set and Path(train_set).is_dir():
        try:
            return read_provenance(train_set)
        except (FileNotFoundError, ValueError):
            return {}
    return {}


def _data_line(tcfg: dict, dataset_id: str | None, train_source: dict, prov: dict) -> str:
    n = (prov.get("source") or {}).get("num_train_images")
    count = f" ({n} HR images)" if n else ""
    if dataset_id:
        return f"[`{dataset_id}`](https://huggingface.co/datasets/{dataset_id}){count}"
    if tcfg.get("train_set"):
        origin = f", distilled from `{train_source['id']}`" if train_source.get("id") else ""
        return f"local set `{tcfg['train_set']}`{count}{origin}"
    data = prov["config"].get("data", {})
    return f"all real sub-images of the `{data.get('source')}` source{count}"


def _class_name(name: str | None) -> str | None:
    try:
        from hf_srdistill.models import MODELS
    except ImportError:
        return None
    cls = MODELS.get(name or "")
    return cls.__name__ if cls is not None else None
