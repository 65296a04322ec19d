"""The study's outputs from its measurements: tables (markdown + CSV) and the figures
(evolution, qualitative crops, PSNR against IPC).

A measurement is one record ``{set, group, judge, scale, seed, test_set, psnr, ssim, lpips}``
(``lpips`` None when AlexNet weights are absent). Tables follow the study's layout: one per
(scale, judge), bicubic and the baseline rows first, then the synthetic rows, PSNR↑ SSIM↑
LPIPS↓ per test set, mean ± sample std over seeds. The CSV holds the same numbers unrounded,
one line per (scale, judge, set, test set), so other tools can read them back.
"""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

import numpy as np
from PIL import Image

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

LABEL_PX = 11  # font size of the experiment / judge names


def _label(text: str, width: int, height: int = 14) -> np.ndarray:
    """A white strip of ``width`` with ``text`` in full (wrapped, the strip grows to fit)."""
    from hf_srdistill.figures import text_strip

    return text_strip(text, width, height, font_px=LABEL_PX)


def _pad_width(img: np.ndarray, width: int) -> np.ndarray:
    if img.shape[1] == width:
        return img
    pad = np.full((img.shape[0], width - img.shape[1], 3), 255, dtype=np.uint8)
    return np.concatenate([img, pad], axis=1)


def _pad_height(img: np.ndarray, height: int) -> np.ndarray:
    if img.shape[0] == height:
        return img
    pad = np.full((height - img.shape[0], img.shape[1], 3), 255, dtype=np.uint8)
    return np.concatenate([img, pad], axis=0)


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
    parts = [p for name, img in blocks for p in (_label(name, width, 16), _pad_width(img, width))]
    return np.concatenate(parts, axis=0)


def qualitative_figure(rows: dict[str, dict[str, Path]], hr: np.ndarray, scale: int, crop: int,
                       device: str = "cpu") -> np.ndarray:
    """Rows = judges; columns = HR, bicubic, then the model trained on each set (same crop).

    ``rows[judge][set] = model folder``. Every tile is labelled underneath with its set's full
    name and that crop's PSNR/SSIM (a missing model is a grey tile labelled "no model"); the
    judge's name, in full, is in the left margin.
    """
    from hf_srdistill.evaluate import comparison_grid, model_upscaler
    from hf_srdistill.figures import PAD, text_width
    from hf_srdistill.models import load_model

    sets = list(dict.fromkeys(s for per in rows.values() for s in per))
    lines = []
    for judge, per in rows.items():
        ups = {s: (model_upscaler(load_model(per[s]), device) if (Path(per.get(s, "")) / "model.safetensors").is_file()
                   else None) for s in sets}
        lines.append(np.asarray(comparison_grid(ups, hr, scale, crop).image))
    widest = max((text_width(j, LABEL_PX) for j in rows), default=0)
    margin = int(min(160, max(40, widest + 2 * PAD + 2)))  # longer names wrap inside 160 px
    width = max(line.shape[1] for line in lines)
    body = []
    for judge, line in zip(rows, lines):
        side = _label(judge, margin, line.shape[0])
        height = max(side.shape[0], line.shape[0])
        body.append(np.concatenate([_pad_height(side, height), _pad_height(_pad_width(line, width), height)], axis=1))
    return np.concatenate(body, axis=0)


def save_figure(img: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format="PNG")
    return path


# ---- PSNR against IPC ---------------------------------------------------------------------

_IPC = re.compile(r"_ipc(\d+)")
_SIZE = re.compile(r"_(\d+)px(?=_|$)")
_AT_SCALE = re.compile(r"_at_x\d+$")


def family_of(name: str, ipc: int | None = None) -> tuple[str, int | None, int | None]:
    """``(method family, ipc, image size)`` of a set named as the study names them.

    ``pixel_noise_ipc10`` -> ("pixel_noise", 10, None); ``random_ipc1_96px`` -> ("random", 1, 96);
    ``pixel_downscaled_ipc1_at_x4`` -> ("pixel_downscaled", 1, None). ``ipc`` (the set's config)
    wins over the name; a name without ``_ipc<k>`` is its own family.
    """
    m = _IPC.search(name)
    family = _IPC.sub("", name, count=1) if m else name
    size = _SIZE.search(family)
    if size:
        family = _SIZE.sub("", family, count=1)
    family = _AT_SCALE.sub("", family) or name
    return family, (ipc if ipc is not None else int(m.group(1)) if m else None), (int(size.group(1)) if size else None)


def psnr_ipc_series(records: list[dict], ipcs: dict[str, int] | None = None) -> dict:
    """The numbers of ``psnr_vs_ipc``: mean PSNR-Y over seeds per (test set, family, judge, scale).

    Returns ``{"ipcs": sorted IPCs, "test_sets": [...], "families": [...], "series": {(test_set,
    family, judge, scale): [(ipc, mean, std), ...] by ipc}, "full": {(test_set, judge, scale): mean},
    "bicubic": {(test_set, scale): mean}}``. A family whose sets come at several image sizes is
    split into ``<family> <size>px`` lines. Sets with no IPC (full data) are reference lines.
    """
    ipcs = ipcs or {}
    rows = aggregate(records)
    info = {r["set"]: family_of(r["set"], ipcs.get(r["set"])) for r in rows}
    sizes: dict[str, set] = {}
    for fam, ipc, size in info.values():
        if ipc is not None:
            sizes.setdefault(fam, set()).add(size)
    series: dict[tuple, list] = {}
    full: dict[tuple, float] = {}
    bicubic: dict[tuple, float] = {}
    families: list[str] = []
    for r in rows:
        if r["psnr_mean"] is None:
            continue
        fam, ipc, size = info[r["set"]]
        if r["set"] == "bicubic":
            bicubic[(r["test_set"], r["scale"])] = r["psnr_mean"]
        elif ipc is None:
            if r["set"] == "full":
                full[(r["test_set"], r["judge"], r["scale"])] = r["psnr_mean"]
        else:
            label = f"{fam} {size}px" if len(sizes[fam]) > 1 and size is not None else fam
            if label not in families:
                families.append(label)
            series.setdefault((r["test_set"], label, r["judge"], r["scale"]), []).append(
                (ipc, r["psnr_mean"], r["psnr_std"]))
    for points in series.values():
        points.sort(key=lambda p: p[0])
    return {"ipcs": sorted({p[0] for pts in series.values() for p in pts}),
            "test_sets": list(dict.fromkeys(k[0] for k in series)), "families": families,
            "series": series, "full": full, "bicubic": bicubic}


def plot_psnr_vs_ipc(records: list[dict], out: str | Path, ipcs: dict[str, int] | None = None,
                     stem: str = "psnr_vs_ipc") -> dict | None:
    """``<stem>.png`` and ``<stem>.pdf`` in ``out`` when the sets come at several IPCs (else None).

    One panel per (test set, method family): PSNR-Y (mean over seeds, ± sample std as error
    bars) against IPC (log axis), one line per judge and scale (colour = judge, line style =
    scale); the full-data judge (dotted, judge's colour) and bicubic (grey) are horizontal
    references. Returns the series drawn (``psnr_ipc_series``), the panel titles and the paths.
    """
    data = psnr_ipc_series(records, ipcs)
    if len(data["ipcs"]) < 2:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from hf_srdistill.figures import fits_width, wrap_text

    tests, families = data["test_sets"], data["families"]
    judges = list(dict.fromkeys(k[2] for k in data["series"]))
    scales = sorted({k[3] for k in data["series"]})
    colours = {j: f"C{i % 10}" for i, j in enumerate(judges)}
    styles = {s: ("-", "--", "-.", ":")[i % 4] for i, s in enumerate(scales)}
    ncols = min(4, len(families))
    nrows = len(tests) * math.ceil(len(families) / ncols)
    legend_rows = math.ceil((len(judges) * len(scales) + 2) / 4)
    legend_in = 0.1 + 0.2 * legend_rows
    fig = Figure(figsize=(3.2 * ncols, 2.7 * nrows + legend_in), dpi=100)
    FigureCanvasAgg(fig)
    titles = []
    fits = fits_width(0.7 * 3.2 * 100, 9 * 100 / 72)  # a 9-pt title line fits over its axes
    for t_i, test in enumerate(tests):
        for f_i, family in enumerate(families):
            ax = fig.add_subplot(nrows, ncols, t_i * math.ceil(len(families) / ncols) * ncols + f_i + 1)
            for judge in judges:
                for scale in scales:
                    points = data["series"].get((test, family, judge, scale))
                    if not points:
                        continue
                    x, y = [p[0] for p in points], [p[1] for p in points]
                    err = [p[2] if p[2] is not None else 0.0 for p in points]
                    ax.errorbar(x, y, yerr=err if any(err) else None, color=colours[judge], ls=styles[scale],
                                marker="o", ms=4, lw=1.3, capsize=2)
                    if (test, judge, scale) in data["full"]:
                        ax.axhline(data["full"][(test, judge, scale)], color=colours[judge], ls=":", lw=0.9, alpha=0.8)
            for scale in scales:
                if (test, scale) in data["bicubic"]:
                    ax.axhline(data["bicubic"][(test, scale)], color="0.5", ls=styles[scale], lw=0.8)
            ax.set_xscale("log")
            ax.set_xticks(data["ipcs"])
            ax.set_xticklabels([str(i) for i in data["ipcs"]])
            ax.minorticks_off()
            ax.set_xlim(min(data["ipcs"]) / 1.4, max(data["ipcs"]) * 1.4)
            title = "\n".join(wrap_text(family if len(tests) == 1 else f"{family} ({test})", fits))
            titles.append(title)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("images per class (IPC)", fontsize=8)
            ax.set_ylabel("PSNR-Y (dB)", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(True, alpha=0.3)
    handles = [Line2D([], [], color=colours[j], ls=styles[s], marker="o", label=f"{j} x{s}")
               for j in judges for s in scales]
    handles += [Line2D([], [], color="k", ls=":", lw=0.9, label="full data (judge's colour)"),
                Line2D([], [], color="0.5", lw=0.8, label="bicubic")]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, legend_in / (2.7 * nrows + legend_in), 1, 1))
    out = Path(out)
    paths = {}
    for ext in ("png", "pdf"):
        paths[ext] = out / f"{stem}.{ext}"
        with atomic_path(paths[ext]) as tmp:
            fig.savefig(str(tmp), format=ext)
    return {**data, "titles": titles, **paths}
