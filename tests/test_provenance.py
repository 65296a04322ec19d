"""Provenance records: required keys, real values, no secrets, atomic round trip."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata

import pytest

from hf_srdistill import config as C
from hf_srdistill import provenance as P
from hf_srdistill.configio import to_dict

SENTINEL = "hf_SENTINELtokenVALUE0123456789abcdef"


def test_record_has_required_keys_and_real_values(monkeypatch):
    cfg = C.DistillJobConfig(distill=C.DistillConfig(seed=7, ipc=3))
    monkeypatch.setattr(sys, "argv", ["hf-srdistill", "distill", "--distill.ipc=3"])
    source = P.describe_source(cfg.data, fingerprint="abc123")
    rec = P.collect_provenance(cfg, source=source, wall_time_s=1.5, extra={"note": "x"})

    assert set(P.REQUIRED_KEYS) <= set(rec)
    assert rec["config"] == to_dict(cfg)
    assert rec["config_class"] == "DistillJobConfig"
    assert rec["seeds"] == {"distill.seed": 7}
    assert rec["packages"]["torch"] == metadata.version("torch")
    assert rec["packages"]["python"] == ".".join(map(str, sys.version_info[:3]))
    assert rec["command_line"] == ["hf-srdistill", "distill", "--distill.ipc=3"]
    assert rec["source"]["fingerprint"] == "abc123" and rec["source"]["id"] == "scikit-image:data"
    assert rec["source"]["license"] == "other" and rec["source"]["license_note"]
    assert rec["wall_time_s"] == 1.5 and rec["extra"] == {"note": "x"}
    assert rec["hardware"]["cpu_count"] >= 1
    assert rec["created_utc"].endswith("+00:00")


def test_seeds_found_in_every_section():
    cfg = C.MainJobConfig()
    seeds = P.find_seeds(to_dict(cfg))
    assert seeds == {"distill.seed": 0, "train.seed": 0}


def test_git_state_matches_git_or_is_none():
    state = P.git_state()
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=P.__file__.rsplit("/", 1)[0],
                              capture_output=True, text=True).stdout.strip()
    except OSError:
        head = ""
    if head:
        assert state["commit"] == head and isinstance(state["dirty"], bool)
    else:
        assert state is None


def test_git_state_outside_repo_does_not_fail(monkeypatch, tmp_path):
    monkeypatch.setattr(P, "__file__", str(tmp_path / "provenance.py"))
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert P.git_state() is None


def test_no_secrets_in_record_or_file(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", SENTINEL)
    monkeypatch.setattr(sys, "argv", ["x", "--token", SENTINEL, f"--hub_token={SENTINEL}", "plain"])
    rec = P.collect_provenance(C.TrainJobConfig(), source={"id": "a/b", "auth_token": SENTINEL},
                               extra={"msg": f"pushed with {SENTINEL}", "tokenizer": "kept"})
    text = json.dumps(rec)
    assert SENTINEL not in text
    assert rec["command_line"] == ["x", "--token", P.REDACTED, f"--hub_token={P.REDACTED}", "plain"]
    assert rec["extra"]["tokenizer"] == "kept"
    assert "HF_TOKEN" not in text  # environment is never captured

    path = P.write_provenance(tmp_path, rec)
    assert SENTINEL not in path.read_text()
    assert P.read_provenance(tmp_path) == json.loads(path.read_text())
    assert [p.name for p in tmp_path.iterdir()] == ["provenance.json"]  # no temp file left


def test_token_pattern_redacted_without_env(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert P.scrub({"a": ["see hf_abcdefghijklmnopqrstuvwxyz here"]}) == {"a": [f"see {P.REDACTED} here"]}


def test_read_provenance_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="provenance.json"):
        P.read_provenance(tmp_path)
    (tmp_path / "provenance.json").write_text(json.dumps({"schema": P.SCHEMA}))
    with pytest.raises(ValueError, match="lacks config_class"):
        P.read_provenance(tmp_path)
