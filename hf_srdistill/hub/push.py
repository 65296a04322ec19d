"""Push a distilled-set folder or a trained-model folder to the Hugging Face Hub.

The folder and the token are checked first, then `create_repo(exist_ok=True)`; only once
the repo is open is the card refreshed, then one `upload_folder` commit. A commit is all-or-nothing on the Hub, so a failure part way
leaves nothing claimed as done and re-running the same command is the retry.

The token comes only from where huggingface_hub looks (an explicit argument, HF_TOKEN, the
cached `hf auth login`); it is passed to HfApi and never written, printed or logged.
"""

from __future__ import annotations

import logging
from pathlib import Path

from huggingface_hub import HfApi, get_token
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from hf_srdistill import __version__
from hf_srdistill.hub import cards
from hf_srdistill.hub import folders as F
from hf_srdistill.provenance import read_provenance

logger = logging.getLogger(__name__)


class HubPushError(RuntimeError):
    """A push that did not complete; the message says why and what to do."""


def push_dataset(folder: str | Path, repo_id: str, private: bool = False, revision: str | None = None,
                 token: str | None = None) -> str:
    """Upload a distilled-set folder as a dataset repo; returns the commit URL."""
    folder = F.check_dataset_folder(folder)
    token = _require_token(token)
    prov, summary = read_provenance(folder), F.dataset_summary(folder)
    source = (prov.get("source") or {}).get("id") or "unrecorded source"
    ipc = prov["config"].get("distill", {}).get("ipc")
    message = f"Upload SR training set: {summary.num_rows} images (IPC {ipc}) from {source}"
    return _push(folder, repo_id, "dataset", private, revision, token, message,
                 lambda: cards.write_dataset_card(folder, repo_id))


def push_model(folder: str | Path, repo_id: str, private: bool = False, revision: str | None = None,
               token: str | None = None, dataset_repo_id: str | None = None) -> str:
    """Upload a trained-model folder as a model repo; returns the commit URL.

    dataset_repo_id links the card to the Hub repo of the set the model was trained on,
    when the recorded train_set is a local folder that was pushed separately.
    """
    folder = F.check_model_folder(folder)
    token = _require_token(token)
    if not (folder / "eval_results.json").is_file():
        logger.warning("%s has no eval_results.json: the card will carry no metrics "
                       "(run `hf-srdistill evaluate --model_path=%s` first)", folder, folder)
    model = read_provenance(folder)["config"].get("model", {})
    message = f"Upload {model.get('name')} x{model.get('scale')} SR model"
    return _push(folder, repo_id, "model", private, revision, token, message,
                 lambda: cards.write_model_card(folder, repo_id, dataset_repo_id))


def _require_token(token: str | None) -> str:
    token = token or get_token()
    if not token:
        raise HubPushError("no Hugging Face token found: run `hf auth login` or set the HF_TOKEN "
                           "environment variable to a token with write access, then retry")
    return token


def _push(folder: Path, repo_id: str, repo_type: str, private: bool, revision: str | None,
          token: str, message: str, write_card) -> str:
    """Open the repo, then refresh the card, then upload: a push that cannot start changes nothing."""
    api = HfApi(token=token)
    message = f"{message} (hf_srdistill {__version__})"
    where = f"{repo_type} repo {repo_id}"
    try:
        api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
    except HfHubHTTPError as err:
        raise HubPushError(f"could not create or open the {where}: {_explain(err, repo_id, repo_type)}. "
                           f"Nothing was uploaded.") from err
    except Exception as err:  # network/offline: same message whatever the transport raised
        raise HubPushError(f"could not reach the Hub to create the {where} ({type(err).__name__}: {err}). "
                           f"Nothing was uploaded; rerun the same command to retry.") from err
    write_card()
    logger.info("uploading %s to %s", folder, where)
    try:
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type=repo_type,
                                 revision=revision, commit_message=message,
                                 ignore_patterns=F.IGNORE_PATTERNS)
    except HfHubHTTPError as err:
        raise HubPushError(f"upload to the {where} failed: {_explain(err, repo_id, repo_type)}. "
                           f"No commit was made; fix the cause and rerun the same command.") from err
    except Exception as err:
        raise HubPushError(f"upload to the {where} was interrupted ({type(err).__name__}: {err}). "
                           f"No commit was made (an upload is a single commit); rerun the same "
                           f"command to retry, files already sent are not sent twice.") from err
    url = getattr(info, "commit_url", None) or str(info)
    logger.info("pushed %s: %s", where, url)
    return url


def _explain(err: HfHubHTTPError, repo_id: str, repo_type: str) -> str:
    status = getattr(getattr(err, "response", None), "status_code", None)
    if isinstance(err, RepositoryNotFoundError) or status == 404:
        return (f"{repo_id} was not found as a {repo_type} repo (it may exist as another repo type, "
                f"or the token cannot see it)")
    if status == 401:
        return "the token was rejected (401); log in again with `hf auth login`"
    if status == 403:
        return f"the token has no write access to {repo_id} (403); use a token with write scope"
    if status == 409:
        return f"{repo_id} conflicts with an existing repo (409), possibly of another type than {repo_type}"
    return f"HTTP {status}: {err}"
