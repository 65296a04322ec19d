"""The study's outputs from its measurements: tables (markdown + CSV) and the two figures.

A measurement is one record ``{set, group, judge, scale, seed, test_set, psnr, ssim, lpips}``
(``lpips`` None when AlexNet weights are absent). Tables follow the study's layout: one per
(scale, judge), bicubic and the baseline rows first, then the synthetic rows, PSNR↑ SSIM↑
LPIPS↓ per test set, mean ± sample std over seeds. The CSV holds the same numbers unrounded,
one line per (scale, judge, set, test set), so other tools can read them back.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from hf_srdistill.io import atomic_path, write_text

METRICS = ("psnr", "ssim", "lpips")
CSV_FIELDS = ["scale", "judge", "group", "set", "test_set", "n"] + [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
ARROWS = {"psnr": "PSNR↑", "ssim": "SSIM↑", "lpips": "LPIPS↓"}
DIGITS = {"psnr": 2, "ssim": 4, "lpips": 4}


def _stats(values: list[float | None]) -> tuple[float | None, float | None, int]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None, 0
    return float(np.mean(vals)), (float(np.std(vals, ddof=1)) if len(vals) > 1 else None), len(vals)


def aggregate(records: list[dict]) -> list[dict]:
    """One row per (scale, judge, set, test_set) with mean/std/n of each metric, in table order.

    Bicubic records (judge "-") are repeated in every judge's table at their scale.
    """
    judges = list(dict.fromkeys(r["judge"] for r in records if r["judge"] != "-"))
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        for judge in (judges if r["judge"] == "-" else [r["judge"]]):
            groups.setdefault((r["scale"], judge, r["group"], r["set"], r["test_set"]), []).append(r)
    group_rank = {"baseline": 0, "synthetic": 1}
    keys = sorted(groups, key=lambda k: (k[0], judges.index(k[1]) if k[1] in judges else -1,
                                         group_rank.get(k[2], 2), k[3] != "bicubic"))  # stable: plan order kept
    rows = []
    for key in keys:
        scale, judge, group, name, test = key
        row = {"scale": scale, "judge": judge, "group": group, "set": name, "test_set": test,
               "n": len({r["seed"] for r in groups[key]})}
        for m in METRICS:
            row[f"{m}_mean"], row[f"{m}_std"], _ = _stats([r.get(m) for r in groups[key]])
        rows.append(row)
    return rows


def _cell(row: dict, m: str) -> str:
    mean, std = row[f"{m}_mean"], row[f"{m}_std"]
    if mean is None:
        return "absent"
    d = DIGITS[m]
    return f"{mean:.{d}f}" if std is None else f"{mean:.{d}f} ± {std:.{d}f}"


def format_tables(rows: list[dict], skipped: dict[str, str] | None = None, title: str = "") -> str:
    """Markdown: one table per (scale, judge); skipped sets listed with their reasons."""
    out = [f"# {title}\n"] if title else []
    tables: dict[tuple, dict[tuple, dict]] = {}
    for r in rows:
        tables.setdefault((r["scale"], r["judge"]), {}).setdefault((r["group"], r["set"]), {})[r["test_set"]] = r
    for (scale, judge), sets in tables.items():
        tests = list(dict.fromkeys(t for per in sets.values() for t in per))
        seeds = sorted({r["n"] for per in sets.values() for r in per.values() if r["set"] != "bicubic"})
        out.append(f"## x{scale}, {judge} judge (n seeds: {', '.join(map(str, seeds)) or '-'})\n")
        out.append("| group | set | " + " | ".join(f"{t} {ARROWS[m]}" for t in tests for m in METRICS) + " |")
        out.append("|---|---|" + "---|" * (3 * len(tests)))
        for (group, name), per in sets.items():
            cells = [_cell(per[t], m) if t in per else "" for t in tests for m in METRICS]
            out.append(f"| {group} | {name} | " + " | ".join(cells) + " |")
        out.append("")
    if skipped:
        out.append("Skipped sets (not measured):\n")
        out += [f"- {name}: {reason}" for name, reason in skipped.items()]
        out.append("")
    out.append("Values: mean ± sample std over judge-training seeds (one value: one seed). "
               "PSNR/SSIM on Y, border = scale; LPIPS 'absent' when its AlexNet weights are not installed.")
    return "\n".join(out) + "\n"


def to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r[k] is None else repr(r[k]) if isinstance(r[k], float) else r[k])
                         for k in CSV_FIELDS})
    return buf.getvalue()


def read_csv(path: str | Path) -> list[dict]:
    """Parse tables.csv back: numbers as int/float, empty cells as None."""
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            row = {k: r[k] for k in ("judge", "group", "set", "test_set")}
            row["scale"], row["n"] = int(r["scale"]), int(r["n"])
            row.update({k: (float(r[k]) if r[k] != "" else None) for k in CSV_FIELDS[6:]})
            rows.append(row)
    return rows


def write_tables(out: str | Path, records: list[dict], skipped: dict[str, str] | None = None,
                 title: str = "") -> str:
    """tables.md and tables.csv in ``out``; prints and returns the markdown."""
    rows = aggregate(records)
    md = format_tables(rows, skipped, title)
    write_text(Path(out) / "tables.md", md)
    write_text(Path(out) / "tables.csv", to_csv(rows))
    print(md)
    return md


# ---- figures ------------------------------------------------------------------------------

def _label(text: str, width: int, height: int = 14) -> np.ndarray:
    strip = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(strip).text((2, 1), text, fill="black")
    return np.asarray(strip)


def _pad_width(img: np.ndarray, width: int) -> np.ndarray:
    if img.shape[1] == width:
        return img
    pad = np.full((img.shape[0], width - img.shape[1], 3), 255, dtype=np.uint8)
    return np.concatenate([img, pad], axis=1)


def compose_evolution(items: list[tuple[str, Path]]) -> np.ndarray | None:
    """Stack each experiment's evolution.png under its name: rows = experiments, columns = iterations."""
    blocks = []
    for name, path in items:
        if Path(path).is_file():
            img = np.asarray(Image.open(path).convert("RGB"))
            blocks.append((name, img))
    if not blocks:
        return None
    width = max(img.shape[1] for _, img in blocks)
    parts = [p for name, img in blocks for p in (_label(name, width), _pad_width(img, width))]
    return np.concatenate(parts, axis=0)


def qualitative_figure(rows: dict[str, dict[str, Path]], hr: np.ndarray, scale: int, crop: int,
                       device: str = "cpu") -> np.ndarray:
    """Rows = judges; columns = HR, bicubic, then the model trained on each set (same crop).

    ``rows[judge][set] = model folder``; a missing model is a grey tile.
    """
    import torch

    from hf_srdistill.evaluate import comparison_grid, model_upscaler
    from hf_srdistill.models import load_model

    def grey(lr: torch.Tensor) -> torch.Tensor:
        return torch.full((1, 3, lr.shape[-2] * scale, lr.shape[-1] * scale), 0.5)

    sets = list(dict.fromkeys(s for per in rows.values() for s in per))
    lines = []
    for judge, per in rows.items():
        ups = {s: (model_upscaler(load_model(per[s]), device) if (Path(per.get(s, "")) / "model.safetensors").is_file()
                   else grey) for s in sets}
        lines.append(np.asarray(comparison_grid(ups, hr, scale, crop)))
    tile = lines[0].shape[1] // (len(sets) + 2)
    names = ["HR", "bicubic", *sets]
    chars = max(4, tile // 6)
    header = np.concatenate([_label(n[:chars], tile, 14) for n in names], axis=1)
    margin = 60
    body = [np.concatenate([_label("", margin), _pad_width(header, lines[0].shape[1])], axis=1)]
    body += [np.concatenate([_label(judge, margin, line.shape[0]), line], axis=1) for judge, line in zip(rows, lines)]
    return np.concatenate(body, axis=0)


def save_figure(img: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")
    return path

