"""The monitor folder of an output: one JSON record per run, the history of every run, its plot.

```
monitor/<run id>.json   the run's figures, verdict and what the run did
monitor/history.parquet one row per run: time, run id, model id, rows, each figure, verdict
monitor/history.png     the figures over runs, thresholds drawn, refits marked
```

The folder is part of the run's staging and is committed with it. The previous runs'
records are carried over from the published output (hard links, as unchanged
assignments are); the history and its plot are rewritten as new files, never in place,
so the published output is not touched before the commit.
"""

import datetime as dt
import io
import json
import math
import posixpath

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.storage import DataError

FOLDER = "monitor"
HISTORY = f"{FOLDER}/history.parquet"
PLOT = f"{FOLDER}/history.png"
FIGURES = ("mean_log_density", "loglik_drop", "loglik_drop_sd", "outlier_rate", "psi",
           "max_proportion_change", "max_feature_shift")
SCHEMA = pa.schema([
    ("time", pa.timestamp("us", tz="UTC")), ("run_id", pa.string()), ("job", pa.string()),
    ("model_id", pa.string()), ("action", pa.string()), ("new_model_id", pa.string()),
    ("rows", pa.int64()), *[(name, pa.float64()) for name in FIGURES],
    ("outliers", pa.int64()), ("moved_component", pa.int32()),
    ("refit_recommended", pa.bool_()), ("reasons", pa.string()),
])
# the panels of history.png: figure, label, the threshold's setting
PANELS = (("outlier_rate", "outlier rate", "max_outlier_rate"),
          ("psi", "cluster-proportion PSI", "max_psi"),
          ("loglik_drop_sd", "log-density drop (training SDs)", "max_loglik_drop"))


def json_safe(value):
    """Plain JSON types; NaN and infinities become None, numpy values plain ones."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def record(run_id, job, model_id, action, figures, verdict, settings, *, new_model_id=None,
           why="", files=None):
    """The JSON record of one run (``monitor/<run id>.json``)."""
    return json_safe({
        "run_id": run_id, "time": dt.datetime.now(dt.UTC).isoformat(), "job": job,
        "model_id": model_id, "action": action, "new_model_id": new_model_id, "why": why,
        "files": files, "figures": figures, "verdict": verdict,
        "thresholds": settings.model_dump(),
    })


def _row(entry):
    figures = entry["figures"] or {}
    return {
        "time": dt.datetime.fromisoformat(entry["time"]), "run_id": entry["run_id"],
        "job": entry["job"], "model_id": entry["model_id"], "action": entry["action"],
        "new_model_id": entry["new_model_id"], "rows": figures.get("rows", 0),
        **{name: figures.get(name) for name in FIGURES},
        "outliers": figures.get("outliers"),
        # named only when something fired: otherwise it is the noisiest component
        "moved_component": figures.get("moved_component")
        if entry["verdict"]["refit_recommended"] else None,
        "refit_recommended": entry["verdict"]["refit_recommended"],
        "reasons": "; ".join(entry["verdict"]["reasons"]),
    }


def read_history(location):
    """The history table of a published output (a storage.Location), or None.

    Raises DataError naming the file when it is not a readable history.
    """
    if location is None or not location.exists(HISTORY):
        return None
    try:
        with location.open(HISTORY, "rb") as handle:
            table = pq.read_table(handle)
        return table.select(SCHEMA.names).cast(SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError, OSError) as exc:
        raise DataError(f"{location.join(HISTORY).url}: not a readable monitor history "
                        f"({exc}); move it away to start a new one") from None


def _previous_records(published):
    """Relative paths of the published output's files under monitor/ to carry over."""
    if published is None or not published.exists(FOLDER):
        return []
    names = [posixpath.basename(p) for p in published.fs.ls(published.path(FOLDER),
                                                            detail=False)]
    return [f"{FOLDER}/{name}" for name in sorted(names)
            if f"{FOLDER}/{name}" not in (HISTORY, PLOT)]


def carry(target, published):
    """Carry the published monitor folder over unchanged (a run that monitored nothing)."""
    relatives = _previous_records(published)
    relatives += [p for p in (HISTORY, PLOT) if published is not None and published.exists(p)]
    if relatives:
        target.carry(relatives, published)


def write(target, published, entry, settings):
    """Stage the run's record, the history with its new row, and the plot.

    Parameters
    ----------
    target : pipeline.output.Target
        The run's staging.
    published : pipeline.storage.Location or None
        The output's last committed run, whose records and history are carried on.
    entry : dict
        Of :func:`record`.
    settings : pipeline.config.Monitor
        The thresholds drawn in the plot.

    Returns
    -------
    pyarrow.Table
        The history, this run's row last.
    """
    previous = [p for p in _previous_records(published) if p != f"{FOLDER}/{entry['run_id']}.json"]
    if previous:
        target.carry(previous, published)
    location = target.location
    location.write_text(f"{FOLDER}/{entry['run_id']}.json",
                        json.dumps(entry, indent=2, sort_keys=True, allow_nan=False))
    row = pa.Table.from_pylist([_row(entry)], schema=SCHEMA)
    old = read_history(published)
    history = row if old is None else pa.concat_tables([old, row])
    buffer = io.BytesIO()
    pq.write_table(history, buffer)
    location.write_bytes(HISTORY, buffer.getvalue())
    location.write_bytes(PLOT, plot(history, settings))
    return history


def plot(history, settings):
    """PNG bytes: each headline figure over the runs, its threshold dashed, alarms in red,
    refits (and the first fit) as vertical lines."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    runs = history.to_pylist()
    x = np.arange(len(runs))
    figure = Figure(figsize=(8, 6.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(PANELS), 1, sharex=True)
    for ax, (name, label, setting) in zip(axes, PANELS):
        values = np.array([np.nan if r[name] is None else r[name] for r in runs], np.float64)
        ax.plot(x, values, "-", color="C0", lw=1)
        alarm = np.array([bool(r["refit_recommended"]) for r in runs])
        ax.plot(x[~alarm], values[~alarm], "o", color="C0", ms=4)
        ax.plot(x[alarm], values[alarm], "o", color="C3", ms=6,
                label="refit recommended" if ax is axes[0] else None)
        ax.axhline(getattr(settings, setting), color="C3", ls="--", lw=1,
                   label=f"{setting} {getattr(settings, setting):g}")
        for i, r in enumerate(runs):
            if r["action"] in ("refit", "fit"):
                ax.axvline(i, color="0.6", ls=":", lw=1)
        ax.set_ylabel(label)
        ax.legend(loc="upper left", fontsize="small", frameon=False)
    axes[0].set_title("mixlake monitor: figures per run (dotted: a (re)fit)")
    axes[-1].set_xticks(x, [r["time"].strftime("%m-%d %H:%M") for r in runs],
                        rotation=45, ha="right", fontsize="small")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def table_text(history, last=20):
    """The last runs of the history as aligned text lines (for `mixlake monitor`)."""
    header = ("time", "run", "model", "action", "rows", "mean ll", "drop SD", "outliers",
              "PSI", "feature", "verdict")
    lines = [header]
    def number(r, name, fmt):
        return "-" if r[name] is None else format(r[name], fmt)

    for r in history.to_pylist()[-last:]:
        lines.append((r["time"].strftime("%Y-%m-%d %H:%M"), r["run_id"][-6:],
                      (r["model_id"] or "-")[:8], r["action"] + (
                          f" -> {r['new_model_id'][:8]}" if r["new_model_id"] else ""),
                      f"{r['rows']:,}", number(r, "mean_log_density", ".2f"),
                      number(r, "loglik_drop_sd", ".2f"), number(r, "outlier_rate", ".1%"),
                      number(r, "psi", ".3f"), number(r, "max_feature_shift", "+.2f"),
                      "REFIT" if r["refit_recommended"] else "ok"))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return ["  ".join(str(v).rjust(w) if i >= 4 else str(v).ljust(w)
                      for i, (v, w) in enumerate(zip(line, widths))) for line in lines]
