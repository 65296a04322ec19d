"""One provenance record per artifact (distilled set, trained model, evaluation table).

The record holds everything needed to re-run the artifact and to judge whether a re-run
can be expected to match: the resolved config and the root config class it came from,
seeds, package versions, the project's git state, the command line, the source data
identity, the hardware and the wall time. `hf-srdistill reproduce` reads it back.

Secrets never enter the record: no environment variables are captured, and any value that
looks like a token (or equals the current HF token) is replaced by "<redacted>".
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from hf_srdistill.configio import to_dict
from hf_srdistill.io import read_json, write_json

SCHEMA = "hf_srdistill.provenance/1"
FILENAME = "provenance.json"
PACKAGES = ("torch", "accelerate", "datasets", "huggingface_hub", "diffusers", "transformers",
            "safetensors", "numpy", "hf_srdistill")
REQUIRED_KEYS = ("schema", "config_class", "config", "seeds", "packages", "git", "command_line",
                 "source", "hardware", "wall_time_s", "created_utc")

REDACTED = "<redacted>"
# Hub user tokens start with "hf_"; keys whose name says secret are dropped whatever their value.
_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{20,}")
_SECRET_KEY_RE = re.compile(r"token|secret|password|passwd|api[_-]?key|credential|authorization", re.I)


def collect_provenance(cfg: Any, *, source: dict | None = None, wall_time_s: float | None = None,
                       extra: dict | None = None) -> dict:
    """Build the provenance record for an artifact produced from root config `cfg`."""
    config = to_dict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    record = {
        "schema": SCHEMA,
        # reproduce maps this back to the root class and the command that consumes it
        "config_class": type(cfg).__name__ if dataclasses.is_dataclass(cfg) else None,
        "config": config,
        "seeds": find_seeds(config),
        "packages": package_versions(),
        "git": git_state(),
        "command_line": list(sys.argv),
        "source": dict(source) if source else None,
        "hardware": hardware(),
        "wall_time_s": None if wall_time_s is None else float(wall_time_s),
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if extra:
        record["extra"] = dict(extra)
    return scrub(record)


def write_provenance(folder: str | Path, record: dict) -> Path:
    """Write `record` as folder/provenance.json atomically; returns the path."""
    path = Path(folder) / FILENAME
    write_json(path, scrub(record))
    return path


def read_provenance(folder: str | Path) -> dict:
    """Read folder/provenance.json, with an error that says what is missing."""
    path = Path(folder) / FILENAME
    if not path.is_file():
        raise FileNotFoundError(f"no {FILENAME} in {folder}: this folder was not written by hf_srdistill "
                                f"(or the record was deleted), so it cannot be reproduced")
    record = read_json(path)
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise ValueError(f"{path}: provenance record lacks {', '.join(missing)}")
    return record


def describe_source(data_cfg: Any, fingerprint: str | None = None, license: str | None = None) -> dict:
    """The `source` dict for a DataConfig: id, revision, split, fingerprint and licence.

    The licence is what the dataset card inherits; None means unknown, and the card then
    says "other" with a note asking users to check the source's terms.
    """
    kind = data_cfg.source
    ident = {"mini": "scikit-image:data", "div2k": "DIV2K"}.get(kind) or data_cfg.hub_id or data_cfg.path
    known = {
        # DIV2K's terms allow academic research use only, which no SPDX id describes.
        "div2k": ("other", "DIV2K is released for academic research use only "
                           "(https://data.vision.ee.ethz.ch/cvl/DIV2K/)."),
        "mini": ("other", "Photos shipped with scikit-image; each image carries its own licence "
                          "(see skimage/data/README.txt), mostly public domain or CC."),
    }
    lic, note = (license, None) if license else known.get(kind, (None, None))
    return {"kind": kind, "id": ident, "revision": data_cfg.revision, "split": data_cfg.split,
            "fingerprint": fingerprint, "license": lic, "license_note": note}


def find_seeds(config: dict, prefix: str = "") -> dict[str, int]:
    """Every `seed` field in a nested config, keyed by its dotted path."""
    seeds = {}
    for key, value in config.items():
        if isinstance(value, dict):
            seeds.update(find_seeds(value, f"{prefix}{key}."))
        elif key == "seed" or key.endswith("_seed"):
            seeds[prefix + key] = value
    return seeds


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state() -> dict | None:
    """Commit and dirty flag of the checkout holding this package; None outside a repo."""
    root = Path(__file__).resolve().parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def hardware() -> dict:
    info: dict[str, Any] = {"platform": platform.platform(), "machine": platform.machine(),
                            "cpu_count": os.cpu_count(), "cpu_model": _cpu_model(), "cuda": []}
    try:
        import torch

        if torch.cuda.is_available():
            info["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            info["cuda_version"] = torch.version.cuda
    except Exception:  # a broken CUDA install must not stop an artifact from being written
        pass
    return info


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def scrub(obj: Any, key: str = "") -> Any:
    """Copy of `obj` with secret-named keys and token-looking strings redacted."""
    if isinstance(obj, dict):
        return {k: (REDACTED if _is_secret_key(k, v) else scrub(v, k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        items = [scrub(v) for v in obj]
        # `--token VALUE` on a command line: the value follows the flag
        for i in range(1, len(items)):
            if isinstance(items[i - 1], str) and items[i - 1].startswith("-") \
                    and _SECRET_KEY_RE.search(items[i - 1]) and "=" not in items[i - 1]:
                items[i] = REDACTED
        return items
    if isinstance(obj, str):
        if obj.startswith("-") and "=" in obj and _SECRET_KEY_RE.search(obj.split("=", 1)[0]):
            return obj.split("=", 1)[0] + "=" + REDACTED
        for secret in _live_secrets():
            obj = obj.replace(secret, REDACTED)
        return _TOKEN_RE.sub(REDACTED, obj)
    return obj


def _is_secret_key(key: Any, value: Any) -> bool:
    # a config field such as `tokenizer` is not a secret; only string leaves are redacted
    return isinstance(key, str) and isinstance(value, str) and bool(_SECRET_KEY_RE.search(key)) \
        and "tokeniz" not in key.lower()


def _live_secrets() -> list[str]:
    """Token values set in this process, so they are caught even without the hf_ prefix."""
    names = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_API_TOKEN")
    return [v for v in (os.environ.get(n) for n in names) if v and len(v) >= 8]
