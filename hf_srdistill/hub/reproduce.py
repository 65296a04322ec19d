"""Re-run an artifact's recorded config and say whether the result matches.

The provenance record names the root config class; the same function the CLI would call
for that class runs the config again into a fresh folder, and the two artifacts are then
compared on what they are for:

- a distilled set: every image decoded to pixels must be identical (bit-identical is what
  a CPU re-run of a seeded distillation gives), labels and class names equal;
- a model: identical weights, or, where they differ (GPU kernels are not deterministic),
  the recorded eval numbers re-measured within a tolerance;
- an evaluation table: every number within the tolerance.
"""

from __future__ import annotations

import io
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from hf_srdistill.hub import folders as F
from hf_srdistill.io import write_text
from hf_srdistill.provenance import read_provenance

# where each root config sends its artifact, so the re-run can be pointed at a fresh folder
OUTPUT_FIELD = {"DistillJobConfig": "distill.output_dir", "TrainJobConfig": "train.output_dir",
                "EvalJobConfig": "eval.output_dir", "MainJobConfig": "output_dir"}


@dataclass
class Tolerance:
    psnr: float = 0.01  # dB
    ssim: float = 1e-4
    lpips: float = 1e-4


@dataclass
class Verdict:
    match: bool
    kind: str
    lines: list[str] = field(default_factory=list)

    def report(self) -> str:
        head = f"{'MATCH' if self.match else 'MISMATCH'}: reproduced {self.kind}"
        return "\n".join([head, *("  " + line for line in self.lines)])


def resolve_artifact(ref: str, repo_type: str | None = None) -> Path:
    """A local artifact folder, or a Hub repo downloaded to the cache."""
    if Path(ref).is_dir():
        return Path(ref)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError

    errors = []
    for kind in [repo_type] if repo_type else ["dataset", "model"]:
        try:
            return Path(snapshot_download(ref, repo_type=kind))
        except (RepositoryNotFoundError, HFValidationError) as err:
            errors.append(f"{kind}: {type(err).__name__}")
        except Exception as err:  # offline, network: say so instead of a bare traceback
            errors.append(f"{kind}: {type(err).__name__}: {err}")
    raise FileNotFoundError(f"{ref!r} is not a local folder and could not be fetched from the Hub "
                            f"({'; '.join(errors)})")


def recorded_config(prov: dict, output_dir: str | Path, overrides: Sequence[str] = ()):
    """(command, typed config) from a provenance record, output sent to output_dir."""
    import yaml

    from hf_srdistill.cli import CONFIG_COMMANDS
    from hf_srdistill.configio import load_config

    name = prov.get("config_class")
    matches = [(cmd, cls) for cmd, (cls, _, _) in CONFIG_COMMANDS.items() if cls.__name__ == name]
    if not matches or name not in OUTPUT_FIELD:
        raise ValueError(f"provenance names config class {name!r}, which no reproducible command takes "
                         f"(known: {', '.join(OUTPUT_FIELD)})")
    command, cls = matches[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recorded.yaml"
        write_text(path, yaml.safe_dump(prov["config"], sort_keys=False))
        # the recorded config goes through the same loader as a user's YAML file
        # a re-run starts from scratch: resuming would reuse state instead of recomputing it
        fresh = ["--train.resume=false"] if name == "TrainJobConfig" else \
            ["--distill.resume=false"] if name == "DistillJobConfig" else []
        cfg = load_config(cls, path, [*overrides, *fresh, f"--{OUTPUT_FIELD[name]}={output_dir}"])
    if name == "TrainJobConfig":
        _check_train_set(cfg.train.train_set)
    return command, cfg


def runner_for(command: str) -> Callable[[Any], Any]:
    """The function `hf-srdistill <command>` calls."""
    from hf_srdistill.cli import CONFIG_COMMANDS, _resolve

    return _resolve(CONFIG_COMMANDS[command][1])


def reproduce(ref: str, output_dir: str | Path | None = None, overrides: Sequence[str] = (),
              repo_type: str | None = None, tol: Tolerance | None = None,
              test_root: str | None = None) -> Verdict:
    """Re-run the artifact at `ref` (folder or Hub id) and compare; the verdict says how it went."""
    original = resolve_artifact(ref, repo_type)
    prov = read_provenance(original)
    artifact_kind(original)  # before the re-run: a folder with nothing to compare fails now, not after it
    output_dir = Path(output_dir or tempfile.mkdtemp(prefix="hf_srdistill_reproduce_"))
    command, cfg = recorded_config(prov, output_dir, overrides)
    result = runner_for(command)(cfg)
    produced = Path(result) if isinstance(result, (str, Path)) else output_dir
    verdict = compare_artifacts(original, produced, tol or Tolerance(), test_root)
    verdict.lines.append(f"original: {original}")
    verdict.lines.append(f"re-run:   {produced}")
    verdict.lines += _hardware_notes(prov)
    return verdict


def artifact_kind(original: Path) -> str:
    """"set", "model" or "results": what the folder holds that a re-run can be compared with."""
    if sorted(original.glob(F.DATA_GLOB)):
        return "set"
    if (original / "model.safetensors").is_file():
        return "model"
    if (original / "results.json").is_file():
        return "results"
    raise F.FolderError(f"{original}: nothing to compare (no {F.DATA_GLOB}, model.safetensors or results.json)")


def compare_artifacts(original: Path, produced: Path, tol: Tolerance, test_root: str | None = None) -> Verdict:
    kind = artifact_kind(original)
    if kind == "set":
        return compare_sets(original, produced)
    if kind == "model":
        return compare_models(original, produced, tol, test_root)
    return compare_results(F.read_json_if_present(original / "results.json"),
                           F.read_json_if_present(produced / "results.json"), tol, "evaluation table")


# ---- distilled sets --------------------------------------------------------------------

def _read_rows(folder: Path) -> tuple[Any, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted(folder.glob(F.DATA_GLOB))
    if not files:
        raise F.FolderError(f"{folder}: no {F.DATA_GLOB} was written")
    return pa.concat_tables([pq.read_table(f) for f in files]), F.dataset_summary(folder).features


def _pixels(cell: Any) -> np.ndarray:
    from PIL import Image

    raw = cell["bytes"] if isinstance(cell, dict) else cell
    return np.asarray(Image.open(io.BytesIO(raw)))


def compare_sets(original: Path, produced: Path) -> Verdict:
    """Decoded pixels of every image column must be equal, and labels, indices, class names."""
    a, fa = _read_rows(original)
    b, fb = _read_rows(produced)
    v = Verdict(True, "distilled set")
    if a.column_names != b.column_names or a.num_rows != b.num_rows:
        v.match = False
        v.lines.append(f"shape differs: {a.num_rows} rows {a.column_names} vs {b.num_rows} rows {b.column_names}")
        return v
    images = [c for c in a.column_names if type(fa[c]).__name__ == "Image"]
    for col in a.column_names:
        left, right = a.column(col).to_pylist(), b.column(col).to_pylist()
        if col not in images:
            if left != right:
                v.match = False
                v.lines.append(f"{col}: {sum(x != y for x, y in zip(left, right))} of {len(left)} values differ")
            continue
        differ, worst = 0, 0
        for x, y in zip(left, right):
            px, py = _pixels(x), _pixels(y)
            if px.shape != py.shape:
                differ, worst = differ + 1, 255
            elif not np.array_equal(px, py):
                differ += 1
                worst = max(worst, int(np.abs(px.astype(np.int16) - py.astype(np.int16)).max()))
        if differ:
            v.match = False
            v.lines.append(f"{col}: {differ} of {len(left)} images differ (max |diff| {worst}/255)")
        else:
            v.lines.append(f"{col}: all {len(left)} images bit-identical")
    names_a, names_b = getattr(fa.get("label"), "names", None), getattr(fb.get("label"), "names", None)
    if names_a != names_b:
        v.match = False
        v.lines.append(f"class names differ: {names_a} vs {names_b}")
    return v


# ---- models ----------------------------------------------------------------------------

def compare_models(original: Path, produced: Path, tol: Tolerance, test_root: str | None = None) -> Verdict:
    from safetensors.torch import load_file

    wa, wb = load_file(original / "model.safetensors"), load_file(produced / "model.safetensors")
    v = Verdict(True, "model")
    if set(wa) != set(wb) or any(wa[k].shape != wb[k].shape for k in wa):
        v.match = False
        v.lines.append(f"architectures differ: tensors {sorted(set(wa) ^ set(wb)) or 'with other shapes'}")
        return v
    diffs = {k: float((wa[k].double() - wb[k].double()).abs().max()) if wa[k].numel() else 0.0 for k in wa}
    worst = max(diffs.values(), default=0.0)
    if worst == 0.0:
        v.lines.append(f"weights: all {len(wa)} tensors bit-identical")
        return v
    v.lines.append(f"weights differ: max |diff| {worst:.3g} (in {max(diffs, key=diffs.get)})")
    recorded = F.read_json_if_present(original / "eval_results.json")
    if not recorded:
        v.match = False
        v.lines.append("no eval_results.json recorded, so the difference cannot be judged by quality")
        return v
    remeasured = {"scale": recorded["scale"], "results": _evaluate(produced, list(recorded["results"]),
                                                                   int(recorded["scale"]), test_root)}
    judged = compare_results({"results": {"model": recorded["results"]}},
                             {"results": {"model": remeasured["results"]}}, tol, "model")
    v.match = judged.match
    v.lines += judged.lines
    return v


def _evaluate(model_dir: Path, test_sets: list[str], scale: int, test_root: str | None) -> dict:
    from hf_srdistill.evaluate import evaluate_many, model_upscaler
    from hf_srdistill.models import load_model

    results = evaluate_many({"model": model_upscaler(load_model(str(model_dir)))}, test_sets, scale, test_root)
    return results["model"]


# ---- evaluation numbers ----------------------------------------------------------------

def compare_results(recorded: dict | None, remeasured: dict | None, tol: Tolerance, kind: str) -> Verdict:
    """{results: {method: {test_set: {metric: value}}}} compared metric by metric."""
    v = Verdict(True, kind)
    if not remeasured:
        return Verdict(False, kind, ["the re-run wrote no results.json"])
    for method, per_set in recorded["results"].items():
        for test_set, metrics in per_set.items():
            got = remeasured["results"].get(method, {}).get(test_set)
            if got is None:
                v.match = False
                v.lines.append(f"{method} / {test_set}: missing from the re-run")
                continue
            for metric, want in metrics.items():
                have, limit = got.get(metric), getattr(tol, metric, 0.0)
                if want is None or have is None:
                    if (want is None) != (have is None):
                        v.match = False
                        v.lines.append(f"{method} / {test_set} {metric}: recorded {want}, re-run {have}")
                    continue
                ok = math.isclose(want, have, rel_tol=0.0, abs_tol=limit)
                v.match &= ok
                v.lines.append(f"{method} / {test_set} {metric}: recorded {want:.4f}, re-run {have:.4f} "
                               f"({'within' if ok else 'outside'} ±{limit:g})")
    return v


def _check_train_set(train_set: str | None) -> None:
    from hf_srdistill.hub.card_text import HUB_ID

    if train_set and not Path(train_set).exists() and not HUB_ID.match(train_set):
        raise FileNotFoundError(f"the recorded train_set {train_set!r} is not on this machine; pass "
                                f"--train.train_set=<folder or Hub dataset id> to point at a copy")


def _hardware_notes(prov: dict) -> list[str]:
    import torch

    was_gpu = bool((prov.get("hardware") or {}).get("cuda"))
    if was_gpu or torch.cuda.is_available():
        return ["note: a GPU was involved (recorded or here); bit-identical results are only expected "
                "on CPU, so judge model re-runs by the eval tolerance"]
    return []
