"""The main job's plumbing: what each set's job gets, and the verdict lines of its table."""

import dataclasses

import pytest

from hf_srdistill import pipeline
from hf_srdistill.config import MainJobConfig
from hf_srdistill.configio import load_config


def per_seed(distilled: list[float], others: dict[str, list[float]]) -> dict[int, dict]:
    rows = {"distilled": distilled, **others}
    return {s: {f"srcnn on {k}": {"mini": {"psnr": v[s]}} for k, v in rows.items()} for s in range(len(distilled))}


def test_the_verdict_is_against_the_set_the_distillation_started_from():
    runs = per_seed([30.5, 30.6], {"downscaled": [30.0, 30.1], "random": [30.45, 30.6]})
    from_crops = pipeline.distilled_deltas(runs, "srcnn on ", "random")
    assert "| mini | downscaled | +0.500 |" in from_crops and "| mini | random | +0.025 |" in from_crops
    # +0.025 against a spread of 0.106 (the larger std of the two rows): no win over its start
    assert "the distilled set did not beat its random init: +0.025 dB" in from_crops
    assert "downscaled init" not in from_crops
    from_photos = pipeline.distilled_deltas(runs, "srcnn on ", "downscaled")
    assert "the distilled set beat its downscaled init: +0.500 dB" in from_photos and "random init" not in from_photos


@pytest.fixture
def recorded(monkeypatch):
    """build_training_sets with every stage replaced by a recorder of the job it was given."""
    import hf_srdistill.distill as D
    import hf_srdistill.distill.coreset as C

    seen = {"references": 0}

    def references(cfg):
        seen["references"] += 1
        return ["refs/0_srcnn_x2", "refs/1_srcnn_x4"]

    monkeypatch.setattr(pipeline, "train_references", references)
    monkeypatch.setattr(D, "distill", lambda job: seen.setdefault("distill", job.distill) and "set")
    monkeypatch.setattr(D, "make_baseline_set", lambda kind, job: kind)
    monkeypatch.setattr(C, "make_coreset_set", lambda job, reference: seen.setdefault("scorer", reference))
    return seen


def main_job(tmp_path, *overrides):
    return load_config(MainJobConfig, "configs/main_mini.yaml", [f"--output_dir={tmp_path}", *overrides])


def test_a_tm_main_job_keeps_its_experts_beside_the_sets_and_the_references_for_the_coreset(tmp_path, recorded):
    pipeline.build_training_sets(main_job(tmp_path))  # the main job's default objective: tm
    d = recorded["distill"]
    assert d.reference_pool == [] and d.reference_path is None  # tm would not use them
    assert d.tm.expert_dir == str(tmp_path / "experts")
    assert recorded["scorer"] == "refs/0_srcnn_x2" and recorded["references"] == 1


def test_a_tm_main_job_without_a_coreset_trains_no_references(tmp_path, recorded):
    pipeline.build_training_sets(dataclasses.replace(main_job(tmp_path), sets=["distilled", "random"]))
    assert recorded["references"] == 0 and recorded["distill"].reference_pool == []


def test_a_gm_main_job_distils_against_the_references_it_trained(tmp_path, recorded):
    pipeline.build_training_sets(main_job(tmp_path, "--distill.objective=gm",
                                          "--reference_models=[{name: srcnn, scale: 2}, {name: srcnn, scale: 4}]"))
    assert recorded["distill"].reference_pool == ["refs/0_srcnn_x2", "refs/1_srcnn_x4"]
    assert recorded["distill"].tm.expert_dir is None
