"""Push functions: the real folder and card up to the HfApi method boundary, no network."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import DatasetCard, HfApi, ModelCard
from huggingface_hub.errors import HfHubHTTPError

from hf_srdistill.hub import FolderError, HubPushError, push, push_dataset, push_model
from hf_srdistill.hub.cli import main

from .conftest import SENTINEL_TOKEN, make_model_folder, make_set_folder


class FakeHub:
    """Records HfApi calls; `fail` maps a method name to the exception it raises once."""

    def __init__(self, monkeypatch):
        self.calls: list[tuple[str, dict]] = []
        self.tokens: list[str | None] = []
        self.fail: dict[str, Exception] = {}
        for name in ("create_repo", "create_branch", "upload_folder"):
            monkeypatch.setattr(HfApi, name, self._record(name))

    def _record(self, name):
        def method(api, *args, **kwargs):
            self.tokens.append(api.token)
            if name in self.fail:
                raise self.fail.pop(name)
            if args:
                kwargs["repo_id"] = args[0]
            self.calls.append((name, kwargs))
            if name == "upload_folder":
                files = sorted(p.relative_to(kwargs["folder_path"]).as_posix()
                               for p in Path(kwargs["folder_path"]).rglob("*") if p.is_file())
                kwargs["files_seen"] = files
                return type("Commit", (), {"commit_url": f"https://hf.co/{kwargs['repo_id']}/commit/abc"})()
        return method

    def named(self, name):
        return [kw for n, kw in self.calls if n == name]


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SENTINEL_TOKEN)
    return FakeHub(monkeypatch)


def _no_token_anywhere(folder: Path, *texts: str) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            assert SENTINEL_TOKEN.encode() not in path.read_bytes(), path
    for text in texts:
        assert SENTINEL_TOKEN not in text


def test_push_dataset_calls_hub_with_folder_and_card(tmp_path, hub, caplog, capsys):
    folder, crops = make_set_folder(tmp_path / "set")
    caplog.set_level(logging.DEBUG)
    url = push_dataset(folder, "someone/mini-distilled", private=True)
    assert url == "https://hf.co/someone/mini-distilled/commit/abc"
    (create,), (upload,) = hub.named("create_repo"), hub.named("upload_folder")
    assert create == {"repo_id": "someone/mini-distilled", "repo_type": "dataset", "private": True, "exist_ok": True}
    assert upload["repo_id"] == "someone/mini-distilled" and upload["repo_type"] == "dataset"
    assert upload["folder_path"] == str(folder) and upload["revision"] is None
    assert upload["commit_message"].startswith(f"Upload SR training set: {len(crops)} images (IPC 2) "
                                               f"from scikit-image:data")
    assert "README.md" in upload["files_seen"] and "data/train-00000-of-00001.parquet" in upload["files_seen"]
    assert not hub.named("create_branch")
    assert hub.tokens and set(hub.tokens) == {SENTINEL_TOKEN}  # taken from HF_TOKEN, passed to HfApi only
    card = DatasetCard.load(folder / "README.md")
    assert 'load_dataset("someone/mini-distilled"' in card.text
    _no_token_anywhere(folder, caplog.text, "".join(capsys.readouterr()))


def test_push_model_with_revision(tmp_path, hub, caplog):
    folder, _ = make_model_folder(tmp_path / "model")
    caplog.set_level(logging.DEBUG)
    push_model(folder, "someone/srcnn-x2", revision="v1", dataset_repo_id="someone/set")
    (branch,), (upload,) = hub.named("create_branch"), hub.named("upload_folder")
    assert branch == {"repo_id": "someone/srcnn-x2", "branch": "v1", "repo_type": "model", "exist_ok": True}
    assert upload["repo_type"] == "model" and upload["revision"] == "v1"
    assert upload["commit_message"].startswith("Upload srcnn x2 SR model")
    assert {"model.safetensors", "config.json", "provenance.json", "README.md"} <= set(upload["files_seen"])
    card = ModelCard.load(folder / "README.md")
    assert card.data.eval_results and card.data.datasets == ["someone/set"]
    _no_token_anywhere(folder, caplog.text)


def test_upload_skips_temp_and_resume_state(tmp_path, hub):
    folder, _ = make_set_folder(tmp_path / "set")
    push_dataset(folder, "someone/x")
    patterns = hub.named("upload_folder")[0]["ignore_patterns"]
    from huggingface_hub.utils import filter_repo_objects

    kept = list(filter_repo_objects(["data/a.parquet", ".README.md.x.tmp", "checkpoint/state.pt",
                                     "data/.hidden", "samples.png"], ignore_patterns=patterns))
    assert kept == ["data/a.parquet", "samples.png"]


def test_missing_token_is_a_clear_error(tmp_path, hub, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(push, "get_token", lambda: None)
    folder, _ = make_set_folder(tmp_path / "set")
    assert not (folder / "README.md").exists()
    with pytest.raises(HubPushError, match="no Hugging Face token found.*hf auth login.*HF_TOKEN"):
        push_dataset(folder, "someone/x")
    assert hub.calls == []
    assert not (folder / "README.md").exists()  # no card was written: nothing in the folder changed


def test_network_error_mid_upload_then_retry(tmp_path, hub):
    folder, _ = make_set_folder(tmp_path / "set")
    hub.fail["upload_folder"] = ConnectionError("connection reset by peer")
    with pytest.raises(HubPushError, match="interrupted.*No commit was made.*rerun"):
        push_dataset(folder, "someone/x")
    assert hub.named("upload_folder") == []  # nothing claimed as done
    assert push_dataset(folder, "someone/x").endswith("/commit/abc")  # the same call is the retry
    assert [kw["exist_ok"] for kw in hub.named("create_repo")] == [True, True]


@pytest.mark.parametrize("status, message", [(409, "another type than dataset"), (403, "no write access"),
                                             (401, "token was rejected")])
def test_hub_http_errors_are_explained(tmp_path, hub, status, message):
    folder, _ = make_set_folder(tmp_path / "set")
    response = httpx2.Response(status, request=httpx2.Request("POST", "https://huggingface.co/api/repos/create"))
    hub.fail["create_repo"] = HfHubHTTPError(f"{status} error", response=response)
    with pytest.raises(HubPushError, match=f"{message}.*Nothing was uploaded"):
        push_dataset(folder, "someone/x")
    assert hub.named("upload_folder") == []
    assert not (folder / "README.md").exists()  # the card is written only once the repo is open


def test_invalid_folder_fails_before_any_hub_call(tmp_path, hub):
    folder, _ = make_model_folder(tmp_path / "model")
    (folder / "model.safetensors").unlink()
    before = (folder / "README.md").read_text()
    with pytest.raises(FolderError, match="model.safetensors"):
        push_model(folder, "someone/x")
    assert hub.calls == [] and (folder / "README.md").read_text() == before


def test_cli_push_commands(tmp_path, hub, capsys):
    folder, _ = make_set_folder(tmp_path / "set")
    assert main(["push-dataset", str(folder), "--repo-id", "someone/x", "--private"]) == 0
    assert hub.named("create_repo")[0]["private"] is True
    assert "someone/x/commit/abc" in capsys.readouterr().out
    assert main(["push-model", str(folder), "--repo-id", "someone/x"]) == 2
    assert "model.safetensors" in capsys.readouterr().err
