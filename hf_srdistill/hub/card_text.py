"""Shared pieces of the card text: template lookup, provenance lines, tables, formatting."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

# model_cards/ at the top of the checkout; hub/model_cards links to it so that wheels ship the
# templates as package data too.
TEMPLATES = Path(__file__).parent / "model_cards"
TEST_SET_NAMES = {"mini": "mini (scikit-image photos)", "set5": "Set5", "set14": "Set14",
                  "div2k-val": "DIV2K validation"}
# model-index dataset.type is a Hub dataset id where the benchmark has one (eugenesiow's SR
# benchmark repos, whose configs are named bicubic_x2/x3/x4 as dataset_config is here); the
# others keep the local name.
TEST_SET_HUB_IDS = {"set5": "eugenesiow/Set5", "set14": "eugenesiow/Set14", "b100": "eugenesiow/BSD100",
                    "urban100": "eugenesiow/Urban100", "div2k-val": "eugenesiow/Div2k"}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def template(name: str) -> str:
    path = TEMPLATES / name
    if not path.is_file():
        raise FileNotFoundError(f"card template {path} is missing: reinstall hf_srdistill (wheels ship "
                                f"model_cards/ as package data)")
    return str(path)


def provenance_lines(prov: dict) -> dict[str, Any]:
    git = prov.get("git") or {}
    hw = prov.get("hardware") or {}
    wall = prov.get("wall_time_s")
    return dict(
        git_line=(f"`{git['commit'][:12]}`" + (" (with uncommitted changes)" if git.get("dirty") else ""))
        if git.get("commit") else "",
        wall_time=f"{wall:.0f} s" if wall is not None else "",
        hardware_line=", ".join(hw.get("cuda") or []) or f"{hw.get('cpu_count')} CPU cores "
                                                           f"({hw.get('cpu_model') or 'unknown CPU'})")


def seeds_line(prov: dict) -> str:
    seeds = prov.get("seeds") or {}
    return ", ".join(f"`{k}={v}`" for k, v in seeds.items()) or "not recorded"


def source_line(source: dict) -> str:
    if not source:
        return "not recorded"
    rev = f" @ `{source['revision']}`" if source.get("revision") else ""
    fp = f", fingerprint `{source['fingerprint']}`" if source.get("fingerprint") else ""
    return f"`{source.get('id')}`{rev}{fp}"


def report_table(report: dict) -> str:
    """A nested {row: {col: value}} report as one table; flat values as key/value rows."""
    nested = {k: v for k, v in report.items() if isinstance(v, dict)}
    flat = {k: v for k, v in report.items() if not isinstance(v, dict)}
    lines = []
    if nested:
        cols = list(dict.fromkeys(c for row in nested.values() for c in row))
        lines += ["| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
        lines += [f"| {k} | " + " | ".join(fmt(row.get(c), pct=k.endswith("_pct")) for c in cols) + " |"
                  for k, row in nested.items()]
    if flat:
        lines += (["", ] if lines else []) + ["| quantity | value |", "|---|---|"]
        lines += [f"| {k} | {fmt(v)} |" for k, v in flat.items()]
    return "\n".join(lines)


def results_table(results: dict) -> str:
    """results.json of evaluate/pipeline: {scale, results: {method: {test_set: metrics}}}."""
    scale = results.get("scale")
    lines = ["| model | test set | PSNR (dB) ↑ | SSIM ↑ | LPIPS ↓ |", "|---|---|---|---|---|"]
    for method, per_set in results["results"].items():
        for test_set, m in per_set.items():
            lp = "absent" if m.get("lpips") is None else f"{m['lpips']:.4f}"
            lines.append(f"| {method} | {TEST_SET_NAMES.get(test_set, test_set)} ×{scale} | "
                         f"{m['psnr']:.2f} | {m['ssim']:.4f} | {lp} |")
    return "\n".join(lines)


def fmt(value: Any, pct: bool = False) -> str:
    if pct and isinstance(value, (int, float)):
        return f"{value:.2f} %"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return "" if value is None else str(value)


def short_list(names: list[str], limit: int = 20) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:limit])
    return shown + (f" … and {len(names) - limit} more" if len(names) > limit else "")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "source"


def read_text(path: Path) -> str:
    return path.read_text() if path.is_file() else ""
