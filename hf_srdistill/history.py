"""What a run leaves next to its artifact besides the artifact: ``history.csv``, ``loss_curve.png``,
and experiment tracking through Accelerate's tracker API.

The history holds one row per logged step (training: every ``train.log_every`` steps and the
last; distillation: every iteration). It is written atomically at every checkpoint and at the
end, and a resumed run keeps exactly the rows up to its checkpoint, so the finished file is the
one an uninterrupted run writes (``wall_s`` aside). Values are stored as ``repr`` text and
rows read back are kept as text, so a resume rewrites earlier rows byte for byte.

Tracking is off by default (``log_with: []``); with names, the Accelerator is built with
``log_with`` and ``project_dir=<output_dir>/logs`` (TensorBoard writes there), the flattened
config goes to ``init_trackers``, every history row to ``accelerator.log`` and the run ends
with ``end_training``. A name Accelerate does not know is a config error; a known tracker whose
package is not installed is refused at the start of the run (Accelerate would drop it silently).
"""

from __future__ import annotations

import csv
import io
import logging
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

from hf_srdistill.io import CorruptFileError, write_text

logger = logging.getLogger(__name__)

HISTORY = "history.csv"
LOSS_CURVE = "loss_curve.png"
PROJECT = "hf_srdistill"
LOGS_DIR = "logs"


# ---- history.csv ---------------------------------------------------------------------
def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return repr(value)
    return str(value)


class History:
    """Rows of one run; the first column is the step counter (1-based, steps done)."""

    def __init__(self, path: str | Path, columns: Sequence[str]):
        self.path, self.columns = Path(path), list(columns)
        self.rows: list[dict[str, str]] = []

    @property
    def key(self) -> str:
        return self.columns[0]

    @classmethod
    def resume(cls, path: str | Path, columns: Sequence[str], upto: int) -> "History":
        """The rows of ``path`` whose step is <= ``upto`` (the checkpoint's); none when upto is 0."""
        history = cls(path, columns)
        if upto <= 0 or not history.path.is_file():
            return history
        try:
            with open(history.path, newline="") as f:
                for row in csv.DictReader(f):
                    if int(row[history.key]) <= upto:
                        history.rows.append({c: row.get(c) or "" for c in history.columns})
        except (KeyError, ValueError, TypeError, csv.Error) as err:
            raise CorruptFileError(f"{history.path} is corrupt ({err!r}); delete it to start the history "
                                   "afresh (the run itself resumes from its checkpoint)") from None
        last = int(history.rows[-1][history.key]) if history.rows else 0
        if last < upto:
            logger.warning("%s ends at %s %d but the checkpoint is at %d: the rows in between are missing",
                           history.path, history.key, last, upto)
        return history

    def append(self, **values: Any) -> dict[str, Any]:
        unknown = set(values) - set(self.columns)
        if unknown:
            raise KeyError(f"history columns are {self.columns}, got {sorted(unknown)}")
        self.rows.append({c: _text(values.get(c)) for c in self.columns})
        return values

    def to_csv(self) -> str:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return buf.getvalue()

    def save(self) -> Path:
        write_text(self.path, self.to_csv())
        return self.path

    def column(self, name: str) -> list[float]:
        return [float(r[name]) if r.get(name) not in (None, "") else math.nan for r in self.rows]


def read_history(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot_loss_curve(history: History, path: str | Path, title: str, second: str | None = None) -> Path | None:
    """loss against the step (log scale when positive), optionally ``second`` on a right axis.

    Drawn with matplotlib's Agg canvas directly (no pyplot, no global backend switch).
    """
    if not history.rows:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x, loss = history.column(history.key), history.column("loss")
    fig = Figure(figsize=(6, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(x, loss, color="tab:blue", lw=1.2, marker="." if len(x) < 30 else None, label="loss")
    finite = [v for v in loss if math.isfinite(v)]
    if finite and min(finite) > 0:
        ax.set_yscale("log")
    ax.set_xlabel(history.key)
    ax.set_ylabel("loss", color="tab:blue")
    ax.grid(True, alpha=0.3)
    if second and second in history.columns:
        values = history.column(second)
        if any(math.isfinite(v) for v in values):
            ax2 = ax.twinx()
            ax2.plot(x, values, color="tab:orange", lw=1.0, ls="--")
            ax2.set_ylabel(second, color="tab:orange")
            ok = [v for v in values if math.isfinite(v)]
            if ok and min(ok) > 0 and max(ok) / min(ok) > 20:
                ax2.set_yscale("log")
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    from hf_srdistill.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), format="png")
    return path


# ---- experiment tracking -------------------------------------------------------------
def tracker_names() -> list[str]:
    from accelerate.utils import LoggerType

    return [str(t.value) for t in LoggerType]


def check_tracker_names(names: Iterable[str], key: str) -> None:
    """A name Accelerate's tracker API does not know is a config error naming ``key``."""
    names = list(names)
    if not names:
        return
    known = tracker_names()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"{key}: unknown tracker {', '.join(map(repr, unknown))}; choose from "
                         f"{', '.join(known)} (Accelerate's log_with), or [] for no tracking")
    if len(set(names)) != len(names):
        raise ValueError(f"{key}: {names} names a tracker twice")


def accelerator_kwargs(names: Sequence[str], output_dir: str | Path, key: str) -> dict:
    """``make_accelerator`` arguments for tracking, after checking each tracker is installed."""
    if not names:
        return {}
    from accelerate.tracking import get_available_trackers

    from hf_srdistill.configio import ConfigError

    check_tracker_names(names, key)
    available = {str(getattr(t, "value", t)) for t in get_available_trackers()}
    missing = [n for n in names if n != "all" and n not in available]
    if missing:
        raise ConfigError(f"{key}: {', '.join(missing)} is not installed (pip install {' '.join(missing)}), "
                          f"or drop it from {key}")
    return {"log_with": list(names), "project_dir": str(Path(output_dir) / LOGS_DIR)}


def flat_config(cfg: Any) -> dict[str, Any]:
    """The config as dotted keys with scalar values (what every tracker's hparams accept)."""
    from hf_srdistill.configio import to_dict

    out: dict[str, Any] = {}

    def walk(d: dict, prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            elif v is None or isinstance(v, (list, tuple)):
                out[prefix + k] = str(v)
            elif isinstance(v, (bool, int, float, str)):
                out[prefix + k] = v
            else:
                out[prefix + k] = str(v)

    walk(to_dict(cfg) if not isinstance(cfg, dict) else cfg, "")
    return out


def start_tracking(accelerator, names: Sequence[str], cfg: Any, project: str = PROJECT) -> bool:
    if not names:
        return False
    accelerator.init_trackers(project, config=flat_config(cfg))
    return True


def log_row(accelerator, tracking: bool, row: dict[str, Any], step: int) -> None:
    """Numeric values of a history row to every tracker (main process only; Accelerate decides)."""
    if not tracking:
        return
    values = {k: v for k, v in row.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    accelerator.log(values, step=step)


def end_tracking(accelerator, tracking: bool) -> None:
    """``end_training``: finishes every tracker. It also destroys the process group, which a
    multi-process job still needs when the run is one stage of a longer job (``main``), so
    there the trackers are finished one by one and the group is left alone."""
    if not tracking:
        return
    if accelerator.num_processes == 1:
        accelerator.end_training()
    else:
        for tracker in accelerator.trackers:
            tracker.finish()
        accelerator.trackers = []
