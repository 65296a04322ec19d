"""SR models: an explicit registry, construction from config, loading saved models.

A saved model is a ``save_pretrained`` folder (``model.safetensors`` + ``config.json``)
locally or on the Hub; its ``config.json`` names the architecture (``arch``), so
:func:`load_model` needs nothing but the path or repo id.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path

from huggingface_hub import constants, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, HFValidationError, LocalEntryNotFoundError
from huggingface_hub.utils import validate_repo_id

from hf_srdistill.config import ModelConfig
from hf_srdistill.models.base import SRModel
from hf_srdistill.models.edsr import EDSR
from hf_srdistill.models.flops import count_conv_flops
from hf_srdistill.models.srcnn import SRCNN
from hf_srdistill.models.vdsr import VDSR

__all__ = ["MODELS", "SRModel", "SRCNN", "VDSR", "EDSR", "ModelNotFoundError",
           "build_model", "load_model", "count_conv_flops"]

MODELS: dict[str, type[SRModel]] = {"srcnn": SRCNN, "vdsr": VDSR, "edsr": EDSR}

_OVERRIDES = ("num_features", "depth", "res_scale")
_HUB_ERRORS = (HfHubHTTPError, EntryNotFoundError, LocalEntryNotFoundError, HFValidationError, OSError)


class ModelNotFoundError(FileNotFoundError):
    """A model folder or Hub repo is absent or lacks config.json / model.safetensors."""


def build_model(cfg: ModelConfig) -> SRModel:
    """A freshly initialised model; ``None`` fields of ``cfg`` keep the published size."""
    if cfg.name not in MODELS:
        raise ValueError(f"model.name={cfg.name!r} is not a registered model; choose one of {sorted(MODELS)}")
    cls = MODELS[cfg.name]
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p in _OVERRIDES]
    kwargs: dict = {"scale": cfg.scale}
    for field in _OVERRIDES:
        value = getattr(cfg, field)
        if value is None:
            continue
        if field not in accepted:
            raise ValueError(f"model.{field}={value!r} does not apply to {cfg.name} "
                             f"(its size overrides are: {', '.join(accepted)}); leave it unset")
        kwargs[field] = value
    return cls(**kwargs)


def _is_hub_id(source: str) -> bool:
    if os.path.isabs(source) or source.startswith((".", "~")) or os.path.exists(source):
        return False
    try:
        validate_repo_id(source)
    except HFValidationError:
        return False
    return True


def _config_file(source: str, revision: str | None) -> Path:
    if os.path.isdir(source):
        folder = Path(source)
        missing = [f for f in (constants.CONFIG_NAME, constants.SAFETENSORS_SINGLE_FILE)
                   if not (folder / f).is_file()]
        if missing:
            raise ModelNotFoundError(f"{folder.resolve()} is not a saved hf_srdistill model: missing "
                                     f"{', '.join(missing)} (write one with model.save_pretrained(folder))")
        return folder / constants.CONFIG_NAME
    if not _is_hub_id(source):
        raise ModelNotFoundError(f"no model folder at {Path(source).expanduser().resolve()}")
    try:
        return Path(hf_hub_download(source, constants.CONFIG_NAME, revision=revision))
    except _HUB_ERRORS as e:
        raise ModelNotFoundError(
            f"{source!r} is neither a local model folder ({Path(source).resolve()} does not exist) nor a "
            f"reachable Hub model repo with config.json (revision={revision}): {type(e).__name__}: {e}") from e


def load_model(path_or_hub_id: str | Path, revision: str | None = None) -> SRModel:
    """Rebuild a saved model (any registered architecture) from a folder or a Hub repo id."""
    source = str(path_or_hub_id)
    config_file = _config_file(source, revision)
    config = json.loads(config_file.read_text(encoding="utf-8"))
    arch = config.get("arch")
    if arch not in MODELS:
        raise ValueError(f"{config_file}: 'arch' is {arch!r}, expected one of {sorted(MODELS)} "
                         f"(was this saved by hf_srdistill?)")
    try:
        model = MODELS[arch].from_pretrained(source, revision=revision)
    except _HUB_ERRORS as e:
        raise ModelNotFoundError(f"{source!r} has a config.json but its weights "
                                 f"({constants.SAFETENSORS_SINGLE_FILE}) could not be loaded: {e}") from e
    return model
