"""The dataset card of a distilled-set folder, rendered from model_cards/dataset_card.md.j2.

Every figure is read from the folder (parquet shards, provenance.json, size_report.json,
results.json), so a re-render after an evaluation refreshes the card and the card cannot
describe data the folder does not hold. The YAML header is filled by datasets' own metadata
writers (MetadataConfigs, DatasetInfosDict), the path `Dataset.push_to_hub` takes, so the
Hub viewer and `load_dataset` read the same configs and features.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from huggingface_hub import DatasetCard, DatasetCardData

from hf_srdistill.hub import card_text as T
from hf_srdistill.hub import folders as F
from hf_srdistill.io import write_text
from hf_srdistill.provenance import read_provenance

DATASET_TAGS = ["super-resolution", "dataset-distillation", "synthetic"]


def dataset_card(folder: str | Path, repo_id: str | None = None) -> DatasetCard:
    """Render the dataset card of a distilled-set folder (not written; see write_dataset_card)."""
    from datasets import DatasetInfo, SplitDict, SplitInfo
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs

    folder = F.check_dataset_folder(folder)
    prov = read_provenance(folder)
    summary = F.dataset_summary(folder)
    config = prov["config"]
    dcfg = config.get("distill", {})
    source = prov.get("source") or {}
    license_ = source.get("license") or "other"
    note = source.get("license_note") or (None if source.get("license") else
                                          "the source data's licence was not recorded; check its terms "
                                          "before reuse, the distilled images derive from it")

    card_data = DatasetCardData(
        license=license_, task_categories=["image-to-image"], task_ids=["super-resolution"],
        tags=list(DATASET_TAGS),
        size_categories=[F.size_category(summary.num_rows)],
        pretty_name=_dataset_title(prov, source),
        source_datasets=[source["id"]] if source.get("kind") == "hub" and source.get("id") else None)
    if license_ == "other":
        card_data.license_name = f"{T.slug(source.get('id') or 'source')}-terms"
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
        source_line=T.source_line(source),
        num_rows=summary.num_rows, num_classes=len(summary.class_names) or "?", ipc=dcfg.get("ipc"),
        image_size=summary.image_size, scales=scales, seeds_line=T.seeds_line(prov),
        license=license_, license_note=note, method=_method_text(prov, dcfg),
        reduction_rows=bool(reduction), reduction_table=T.report_table(reduction) if reduction else "",
        results_table=T.results_table(results) if results else T.read_text(folder / "table.md"),
        images=[(n, c) for n, c in (("samples.png", "Synthetic images"),
                                    ("evolution.png", "Evolution during distillation"),
                                    ("loss_curve.png", "Matching loss during distillation (history.csv)"))
                if (folder / n).is_file()],
        columns=_columns(summary), class_names=summary.class_names,
        class_names_line=T.short_list(summary.class_names),
        load_id=repo_id or str(folder),
        train_scale=scales[0] if scales else (dcfg.get("reference") or {}).get("scale", 2),
        source_rows=[(k, v) for k, v in source.items() if v is not None],
        **T.provenance_lines(prov), config_yaml=yaml.safe_dump(config, sort_keys=False))
    return DatasetCard.from_template(card_data, template_path=T.template("dataset_card.md.j2"), **context)


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
    one = f"a reference {str(ref.get('name', 'srcnn')).upper()} ×{ref.get('scale')}"
    if dcfg.get("reference_path"):
        reference = f"{one} (the pretrained `{dcfg['reference_path']}`)"
    elif dcfg.get("reference_pool"):
        pool = ", ".join(f"`{path}`" for path in dcfg["reference_pool"])
        reference = f"each pretrained reference of the pool {pool} in turn, at its own scale"
    else:
        reference = f"{one} (a freshly initialised network at every iteration)"
    bound = (f" Every pixel stays within {dcfg['max_change']} of its initial value."
             if dcfg.get("max_change") is not None else "")
    grouping = dcfg.get("grouping", "class")
    units = ("" if grouping == "class" else
             f" Classes are not source photos here: {dcfg.get('num_images')} images in matching units of "
             f"{dcfg.get('ipc')}, each matched against real patches of "
             f"{'the whole data' if grouping == 'global' else 'one k-means pseudo-class of the sub-images'}.")
    latent = dcfg.get("latent") or {}
    codes = (f" The optimised variables are a `{latent.get('backend')}` generator's codes "
             f"(`{latent.get('generator')}`), not pixels (GLaD-style latent distillation)."
             if dcfg.get("init") == "latent" else "")
    objective = dcfg.get("objective", "gm")
    if objective == "tm":
        tm = dcfg.get("tm") or {}
        experts = ", ".join(f"{str(m.get('name')).upper()} ×{m.get('scale')}" for m in tm.get("models") or [ref])
        return (f"**Trajectory matching** (MTT, Cazenavette et al. 2022) adapted to SR: expert {experts} "
                f"networks ({tm.get('num_experts')} run(s) each) were trained on the real data and their "
                f"parameters kept every {tm.get('expert_every')} steps. Each iteration starts a student at an "
                f"expert checkpoint, takes {tm.get('syn_steps')} differentiable {tm.get('student')} steps on "
                f"random {tm.get('patch_size')}-px crops of the synthetic images, and moves the pixels (and the "
                f"student's learnt lr) so the student lands where the expert was {tm.get('span')} checkpoints "
                f"later. Initialisation: `{dcfg.get('init')}`; {dcfg.get('iterations')} iterations, image "
                f"learning rate {dcfg.get('lr_img')} (SGD, momentum {dcfg.get('momentum')}).{bound}{units}")
    if objective == "dm":
        dm = dcfg.get("dm") or {}
        return (f"**Distribution matching** (Zhao & Bilen 2023) adapted to SR: the synthetic HR images are "
                f"optimised so that the per-channel feature means{' and Gram matrices' if dm.get('moments') == 2 else ''} "
                f"of {one} (a freshly initialised network at every iteration) on their "
                f"{' and '.join(dm.get('inputs') or ['lr'])} inputs match those of real patches of the same class. "
                f"Initialisation: `{dcfg.get('init')}`; {dcfg.get('iterations')} iterations, image learning "
                f"rate {dcfg.get('lr_img')} (SGD, momentum {dcfg.get('momentum')}), {dcfg.get('batch_real')} "
                f"real patches per class per step.{bound}{units}{codes}")
    distance = {"cos": "1 − cosine similarity over all weights (the published SR variant)",
                "layerwise": "Dataset Condensation's layer-wise cosine distance",
                "mse": "mean squared error between gradients"}.get(dcfg.get("distance"), dcfg.get("distance"))
    return (f"**Gradient matching** (Dataset Condensation, Zhao et al. 2021) adapted to SR: the "
            f"synthetic HR images are optimised so that the gradient of the SR loss "
            f"MSE(model(LR), HR) w.r.t. {reference} on the synthetic images matches the gradient on "
            f"real patches of the same class. Distance: {distance}. Initialisation: `{dcfg.get('init')}`; "
            f"{dcfg.get('iterations')} iterations, outer/inner loop {dcfg.get('outer_loop')}/"
            f"{dcfg.get('inner_loop')}, image learning rate {dcfg.get('lr_img')} (SGD, momentum "
            f"{dcfg.get('momentum')}), {dcfg.get('batch_real')} real patches per class per step.{bound}"
            f"{units}{codes}")


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
