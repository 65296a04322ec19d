"""Dataset and model cards rendered from the artifact folder itself.

Every figure on a card is read from a file in the folder (parquet shards, provenance.json,
size_report.json, results.json, eval_results.json), so re-rendering after an evaluation
refreshes the card, and a card can never describe data the folder does not hold. The YAML
header is built with huggingface_hub's card-data classes and datasets' own metadata writers,
the same path `Dataset.push_to_hub` takes, so the Hub viewer and `load_dataset` agree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import DatasetCard, DatasetCardData, EvalResult, ModelCard, ModelCardData

from hf_srdistill.hub import folders as F
from hf_srdistill.io import write_text
from hf_srdistill.provenance import read_provenance

TEMPLATES = Path(__file__).resolve().parents[2] / "model_cards"
DATASET_TAGS = ["super-resolution", "dataset-distillation", "synthetic"]
TEST_SET_NAMES = {"mini": "mini (scikit-image photos)", "set5": "Set5", "set14": "Set14",
                  "div2k-val": "DIV2K validation"}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _template(name: str) -> str:
    path = TEMPLATES / name
    if not path.is_file():
        raise FileNotFoundError(f"card template {path} is missing; model_cards/ must sit next to the "
                                f"hf_srdistill package (install from the source checkout)")
    return str(path)


# ---- dataset card ----------------------------------------------------------------------

def dataset_card(folder: str | Path, repo_id: str | None = None) -> DatasetCard:
    """Render the dataset card of a distilled-set folder (not written; see write_dataset_card)."""
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs

    folder = F.check_dataset_folder(folder)
    prov = read_provenance(folder)
    summary = F.dataset_summary(folder)
    config = prov["config"]
    dcfg, data = config.get("distill", {}), config.get("data", {})
    source = prov.get("source") or {}
    license_ = source.get("license") or "other"
    note = source.get("license_note") or (None if source.get("license") else
                                          "the source data's licence was not recorded; check its terms "
                                          "before reuse, the distilled images derive from it")

    card_data = DatasetCardData(
        license=license_, task_categories=["image-to-image"], tags=list(DATASET_TAGS),
        size_categories=[F.size_category(summary.num_rows)],
        pretty_name=_dataset_title(prov, source),
        source_datasets=[source["id"]] if source.get("kind") == "hub" and source.get("id") else None)
    if license_ == "other":
        card_data.license_name = f"{_slug(source.get('id') or 'source')}-terms"
    MetadataConfigs({"default": {"data_files": [{"split": "train", "path": F.DATA_GLOB}]}}
                    ).to_dataset_card_data(card_data)
    splits = SplitDict()
    splits.add(SplitInfo(name="train", num_bytes=summary.num_bytes, num_examples=summary.num_rows))
    info = DatasetInfo(features=summary.features, splits=splits, download_size=summary.download_size,
                       dataset_size=summary.num_bytes)
    DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)

    reduction = F.read_json_if_present(folder / "size_report.json")
    results = F.read_json_if_present(folder / "results.json")
    scales = summary.scales
    context = dict(
        title=_dataset_title(prov, source),
        summary=_dataset_summary_line(prov, source, dcfg),
        source_line=_source_line(source),
        num_rows=summary.num_rows, num_classes=len(summary.class_names) or "?", ipc=dcfg.get("ipc"),
        image_size=summary.image_size, scales=scales, seeds_line=_seeds_line(prov),
        license=license_, license_note=note, method=_method_text(prov, dcfg),
        reduction_rows=bool(reduction), reduction_table=_report_table(reduction) if reduction else "",
        results_table=_results_table(results) if results else _read_text(folder / "table.md"),
        images=[(n, c) for n, c in (("samples.png", "Synthetic images"),
                                    ("evolution.png", "Evolution during distillation"))
                if (folder / n).is_file()],
        columns=_columns(summary), class_names=summary.class_names,
        class_names_line=_short_list(summary.class_names),
        load_id=repo_id or str(folder),
        train_scale=scales[0] if scales else (dcfg.get("reference") or {}).get("scale", 2),
        source_rows=[(k, v) for k, v in source.items() if v is not None],
        **_provenance_lines(prov), config_yaml=yaml.safe_dump(config, sort_keys=False))
    return DatasetCard.from_template(card_data, template_path=_template("dataset_card.md.j2"), **context)


def write_dataset_card(folder: str | Path, repo_id: str | None = None) -> Path:
    """Render and atomically write folder/README.md; returns its path."""
    card = dataset_card(folder, repo_id)
    path = Path(folder) / "README.md"
    write_text(path, str(card))
    return path


def _dataset_title(prov: dict, source: dict) -> str:
    kind = (prov.get("extra") or {}).get("kind", "distilled")
    ipc = prov["config"].get("distill", {}).get("ipc")
    return f"{source.get('id') or 'SR data'} — {kind} SR training set, IPC {ipc}"


def _dataset_summary_line(prov: dict, source: dict, dcfg: dict) -> str:
    kind = (prov.get("extra") or {}).get("kind", "distilled")
    what = {"distilled": "A synthetic super-resolution training set distilled",
            "random": "A baseline training set of real sub-images drawn at random",
            "downscaled": "A baseline training set of whole photos downscaled"}.get(kind, f"A {kind} set made")
    return (f"{what} from `{source.get('id') or 'unrecorded source'}`: {dcfg.get('ipc')} image(s) per "
            f"class, one class per source photo. Use it like any SR training set: the `hr` column is "
            f"the target and LR inputs come from bicubic downscaling.")


def _method_text(prov: dict, dcfg: dict) -> str:
    kind = (prov.get("extra") or {}).get("kind", "distilled")
    if kind != "distilled":
        return (f"This is the `{kind}` baseline of the study: no optimisation, the images are taken "
                f"from the real data (see the config below), so trained models can be compared "
                f"against the distilled set at the same image budget.")
    ref = dcfg.get("reference") or {}
    ref_from = f"the pretrained `{dcfg['reference_path']}`" if dcfg.get("reference_path") else \
        "a freshly initialised network at every iteration"
    distance = {"cos": "1 − cosine similarity over all weights (the published SR variant)",
                "layerwise": "Dataset Condensation's layer-wise cosine distance",
                "mse": "mean squared error between gradients"}.get(dcfg.get("distance"), dcfg.get("distance"))
    return (f"**Gradient matching** (Dataset Condensation, Zhao et al. 2021) adapted to SR: the "
            f"synthetic HR images are optimised so that the gradient of the SR loss "
            f"MSE(model(LR), HR) w.r.t. a reference {str(ref.get('name', 'srcnn')).upper()} ×{ref.get('scale')} "
            f"({ref_from}) on the synthetic images matches the gradient on real patches of the same "
            f"class. Distance: {distance}. Initialisation: `{dcfg.get('init')}`; "
            f"{dcfg.get('iterations')} iterations, outer/inner loop {dcfg.get('outer_loop')}/"
            f"{dcfg.get('inner_loop')}, image learning rate {dcfg.get('lr_img')} (SGD, momentum "
            f"{dcfg.get('momentum')}), {dcfg.get('batch_real')} real patches per class per step.")


def _columns(summary: F.DatasetSummary) -> list[tuple[str, str, str]]:
    meaning = {"hr": "synthetic high-resolution image (the training target)",
               "label": "class = the source photo the image was distilled from",
               "ipc_index": "index of the image within its class"}
    rows = []
    for name, feature in summary.features.items():
        scale = name[4:] if name.startswith("lr_x") else None
        text = f"bicubic ×{scale} downscale of `hr`" if scale else meaning.get(name, "")
        kind = feature.dtype if type(feature).__name__ == "Value" else type(feature).__name__
        rows.append((name, kind, text))
    return rows


# ---- model card ------------------------------------------------------------------------

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

    card_data = ModelCardData(
        model_name=name, license=train_source.get("license") or "other", library_name="hf_srdistill",
        pipeline_tag="image-to-image", metrics=["psnr", "ssim", "lpips"],
        tags=["super-resolution", "image-to-image", "hf_srdistill", str(mcfg.get("name")),
              "pytorch_model_hub_mixin", "model_hub_mixin"]
        + (["dataset-distillation"] if tcfg.get("train_set") and set_kind == "distilled" else []),
        datasets=[dataset_id] if dataset_id else None,
        eval_results=eval_results(evals) or None)
    if card_data.license == "other":
        card_data.license_name = f"{_slug(train_source.get('id') or 'training-data')}-terms"
    context = dict(
        title=f"{str(mcfg.get('name', 'sr')).upper()} ×{scale} — {name}",
        summary=(f"An image super-resolution model (×{scale}) trained with hf_srdistill "
                 f"{f'on a {set_kind} training set' if tcfg.get('train_set') else 'on real sub-images'}."),
        arch_line=_arch_line(mcfg), scale=scale, data_line=_data_line(tcfg, dataset_id, train_source, prov),
        seeds_line=_seeds_line(prov), eval_table=_eval_table(evals) if evals else "",
        load_id=repo_id or str(folder), class_name=_class_name(mcfg.get("name")),
        train_rows=[(k, v) for k, v in tcfg.items() if k not in ("output_dir", "resume")],
        **_provenance_lines(prov), config_yaml=yaml.safe_dump(config, sort_keys=False))
    return ModelCard.from_template(card_data, template_path=_template("model_card.md.j2"), **context)


def write_model_card(folder: str | Path, repo_id: str | None = None, dataset_repo_id: str | None = None) -> Path:
    card = model_card(folder, repo_id, dataset_repo_id)
    path = Path(folder) / "README.md"
    write_text(path, str(card))
    return path


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
                dataset_type=test_set, dataset_name=TEST_SET_NAMES.get(test_set, test_set),
                dataset_config=f"bicubic_x{scale}", dataset_split="test",
                metric_type=metric, metric_name=label, metric_value=round(float(value), 4)))
    return out


def _eval_table(evals: dict) -> str:
    lines = ["| test set | PSNR (dB) ↑ | SSIM ↑ | LPIPS ↓ |", "|---|---|---|---|"]
    for test_set, m in evals["results"].items():
        lp = "absent" if m.get("lpips") is None else f"{m['lpips']:.4f}"
        lines.append(f"| {TEST_SET_NAMES.get(test_set, test_set)} ×{evals['scale']} | {m['psnr']:.2f} | "
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
    if train_set and not Path(train_set).exists() and HUB_ID.match(train_set):
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


# ---- shared ----------------------------------------------------------------------------

def _provenance_lines(prov: dict) -> dict[str, Any]:
    git = prov.get("git") or {}
    hw = prov.get("hardware") or {}
    wall = prov.get("wall_time_s")
    return dict(
        git_line=(f"`{git['commit'][:12]}`" + (" (with uncommitted changes)" if git.get("dirty") else ""))
        if git.get("commit") else "",
        wall_time=f"{wall:.0f} s" if wall is not None else "",
        hardware_line=", ".join(hw.get("cuda") or []) or f"{hw.get('cpu_count')} CPU cores "
                                                           f"({hw.get('cpu_model') or 'unknown CPU'})")


def _seeds_line(prov: dict) -> str:
    seeds = prov.get("seeds") or {}
    return ", ".join(f"`{k}={v}`" for k, v in seeds.items()) or "not recorded"


def _source_line(source: dict) -> str:
    if not source:
        return "not recorded"
    rev = f" @ `{source['revision']}`" if source.get("revision") else ""
    fp = f", fingerprint `{source['fingerprint']}`" if source.get("fingerprint") else ""
    return f"`{source.get('id')}`{rev}{fp}"


def _report_table(report: dict) -> str:
    """A nested {row: {col: value}} report as one table; flat values as key/value rows."""
    nested = {k: v for k, v in report.items() if isinstance(v, dict)}
    flat = {k: v for k, v in report.items() if not isinstance(v, dict)}
    lines = []
    if nested:
        cols = list(dict.fromkeys(c for row in nested.values() for c in row))
        lines += ["| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        lines += [f"| {k} | " + " | ".join(_fmt(row.get(c), pct=k.endswith("_pct")) for c in cols) + " |"
                  for k, row in nested.items()]
    if flat:
        lines += (["", ] if lines else []) + ["| quantity | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in flat.items()]
    return "\n".join(lines)


def _results_table(results: dict) -> str:
    """results.json of evaluate/pipeline: {scale, results: {method: {test_set: metrics}}}."""
    scale = results.get("scale")
    lines = ["| model | test set | PSNR (dB) ↑ | SSIM ↑ | LPIPS ↓ |", "|---|---|---|---|---|"]
    for method, per_set in results["results"].items():
        for test_set, m in per_set.items():
            lp = "absent" if m.get("lpips") is None else f"{m['lpips']:.4f}"
            lines.append(f"| {method} | {TEST_SET_NAMES.get(test_set, test_set)} ×{scale} | "
                         f"{m['psnr']:.2f} | {m['ssim']:.4f} | {lp} |")
    return "\n".join(lines)


def _fmt(value: Any, pct: bool = False) -> str:
    if pct and isinstance(value, (int, float)):
        return f"{value:.2f} %"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)


def _short_list(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:limit])
    return shown + (f" … and {len(names) - limit} more" if len(names) > limit else "")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "source"


def _read_text(path: Path) -> str:
    return path.read_text() if path.is_file() else ""
