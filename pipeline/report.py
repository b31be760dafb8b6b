"""The run's report folder: report.json, report.md, bic.png (weights.png for a Bayesian
mixture) and clusters.png.

Everything here works on the small model-selection result (a JSON-able dict) and on a
client-side sample of rows; nothing touches dask. Figures are drawn on
:class:`matplotlib.figure.Figure` objects with the Agg canvas, so importing or calling this
module never changes pyplot's global backend or leaves figures open.
"""

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["candidate_table_markdown", "write_report"]

CRITERIA = ("bic", "aic")
# Line colours and markers stay the same for a covariance type from one run to the next.
COVARIANCE_STYLES = {
    "full": ("C0", "o"),
    "tied": ("C1", "s"),
    "diag": ("C2", "^"),
    "spherical": ("C3", "D"),
}
DPI = 110
# Mahalanobis radius of the drawn ellipses.
ELLIPSE_SIGMAS = 2.0
MAX_ERROR_CHARS = 200
TIMING_ORDER = ("checks", "imports", "cluster", "load", "select", "write", "shutdown", "report",
                "publish", "total")


def write_report(
    report,
    out_dir,
    sample_X=None,
    sample_labels=None,
    means=None,
    covariances=None,
    covariance_type=None,
    figures=None,
):
    """Write the report folder of one run.

    Parameters
    ----------
    report : dict
        The model-selection result, JSON-able: ``run_id``, ``config_hash``, ``criterion``
        ('bic' or 'aic'), ``n_rows``, ``n_features``, ``features``, ``passes``,
        ``rows_dropped``, ``timings``, ``candidates``, ``chosen`` and ``clusters``. With
        ``kind: 'bayesian'`` (and ``weight_threshold``, ``n_weighted``) the report of one
        variational mixture: its weights in weights.png instead of bic.png.
    out_dir : str or path-like
        Local directory; created if missing.
    sample_X : array-like of shape (n_samples, n_features), default=None
        Rows to scatter in clusters.png (the caller samples; a few ten thousand at most).
        Without it clusters.png is not written.
    sample_labels : array-like of shape (n_samples,), default=None
        Component of each sample row; colours the points.
    means : array-like of shape (n_components, n_features), default=None
        Means of the chosen model, marked in clusters.png.
    covariances : array-like, default=None
        Covariances of the chosen model, in scikit-learn's layout for ``covariance_type``:
        (n_components, n_features, n_features) for 'full', (n_features, n_features) for
        'tied', (n_components, n_features) for 'diag', (n_components,) for 'spherical'.
        Drawn as 2-sigma ellipses; needs ``means``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default=None
        Layout of ``covariances``; defaults to the chosen candidate's covariance type.
    figures : dict of str to bytes, optional
        :func:`render_figures`' result, drawn beforehand (then the sample arguments are
        not used).

    Returns
    -------
    paths : dict of str to str
        File name ('report.json', 'report.md', 'bic.png' or 'weights.png' and, with
        ``sample_X``, 'clusters.png') to the path written.
    """
    bayesian = report.get("kind") == "bayesian"
    criterion = None if bayesian else _criterion(report)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}

    text = json.dumps(_json_safe(report), indent=2, sort_keys=True, allow_nan=False,
                      ensure_ascii=False)
    paths["report.json"] = _write_atomic(out_dir / "report.json", (text + "\n").encode())
    if figures is None:
        figures = render_figures(report, sample_X, sample_labels, means, covariances,
                                 covariance_type)
    for name, png in figures.items():
        paths[name] = _write_atomic(out_dir / name, png)

    markdown = _report_markdown(report, criterion, with_clusters="clusters.png" in paths)
    paths["report.md"] = _write_atomic(out_dir / "report.md", markdown.encode())
    return {name: paths[name] for name in ("report.json", "report.md", "bic.png",
                                           "weights.png", "clusters.png") if name in paths}


def render_figures(report, sample_X=None, sample_labels=None, means=None, covariances=None,
                   covariance_type=None):
    """The report's figures as PNG bytes by file name: bic.png (weights.png for a
    Bayesian mixture) and, with ``sample_X``, clusters.png. They need only what the model
    selection gives (``run_id``, ``criterion``, ``features``, ``candidates``, ``chosen``,
    and ``kind``, ``weight_threshold``, ``n_weighted`` for a Bayesian mixture), so a run
    draws them while it writes its assignments. Arguments as :func:`write_report`'s."""
    figures = {}
    if report.get("kind") == "bayesian":
        figures["weights.png"] = _png_bytes(_weights_figure(report))
    else:
        figures["bic.png"] = _png_bytes(_bic_figure(report, _criterion(report)))
    if sample_X is not None:
        if covariance_type is None and covariances is not None:
            covariance_type = (_chosen_candidate(report) or {}).get("covariance_type")
        figures["clusters.png"] = _png_bytes(_clusters_figure(
            report, sample_X, sample_labels, means, covariances, covariance_type))
    return figures


# --------------------------------------------------------------------------- files


def _write_atomic(path, data):
    """Write bytes next to ``path`` and rename, so a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return str(path)


def _png_bytes(figure):
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _json_safe(value):
    """Plain JSON types with NaN and infinities as None (numpy scalars and arrays too)."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


# --------------------------------------------------------------------------- report fields


def _criterion(report):
    criterion = str(report.get("criterion", "bic")).lower()
    if criterion not in CRITERIA:
        raise ValueError(
            f"report['criterion'] must be one of {CRITERIA}, got {report.get('criterion')!r}."
        )
    return criterion


def _finite(value):
    """The value as a float, or None when missing, not a number, or infinite."""
    if value is None or isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _chosen_candidate(report):
    chosen = report.get("chosen")
    for candidate in report.get("candidates") or []:
        if candidate.get("name") == chosen:
            return candidate
    return None


def _best_per_type(report, criterion):
    """{covariance_type: {n_components: candidate}}, the best init of each error-free pair."""
    best = {}
    for candidate in report.get("candidates") or []:
        value = _finite(candidate.get(criterion))
        if candidate.get("error") or value is None:
            continue
        by_k = best.setdefault(candidate.get("covariance_type"), {})
        k = int(candidate["n_components"])
        if k not in by_k or value < _finite(by_k[k][criterion]):
            by_k[k] = candidate
    return best


def _covariance_types(report):
    """Covariance types in the candidates, in the usual order first."""
    seen = [c.get("covariance_type") for c in report.get("candidates") or []]
    known = [t for t in COVARIANCE_STYLES if t in seen]
    return known + sorted({str(t) for t in seen if t not in COVARIANCE_STYLES})


# --------------------------------------------------------------------------- markdown


def _cell(value):
    """Text safe inside a Markdown table cell."""
    text = " ".join(str(value).split())
    return text.replace("|", "\\|")


def _number(value, fmt):
    if value is None:
        return "—"
    try:
        value = float(value)
    except (TypeError, ValueError):
        return _cell(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    return format(value, fmt)


def candidate_table_markdown(report):
    """The candidate table of a report as Markdown, chosen row in bold with a ✓.

    Parameters
    ----------
    report : dict
        The model-selection result (see :func:`write_report`).

    Returns
    -------
    table : str
        A Markdown table, one row per candidate in the report's order; an ``error``
        column is added when a candidate failed.
    """
    candidates = report.get("candidates") or []
    chosen = report.get("chosen")
    with_errors = any(c.get("error") for c in candidates)
    header = ["candidate", "n_components", "covariance", "BIC", "AIC", "log-likelihood",
              "iterations", "converged", "time s"]
    if with_errors:
        header.append("error")
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join([":---", "---:", ":---", "---:", "---:", "---:", "---:", ":---:",
                        "---:"] + ([":---"] if with_errors else [])) + "|",
    ]
    for c in candidates:
        name = _cell(c.get("name", ""))
        failed = bool(c.get("error"))
        row = [
            name,
            _number(c.get("n_components"), ".0f"),
            _cell(c.get("covariance_type", "")),
            _number(c.get("bic"), ",.1f"),
            _number(c.get("aic"), ",.1f"),
            _number(c.get("log_likelihood"), ",.4f"),
            _number(c.get("n_iter"), ".0f"),
            "failed" if failed else ("yes" if c.get("converged") else "no"),
            _number(c.get("fit_time_s"), ".2f"),
        ]
        if with_errors:
            error = _cell(c.get("error") or "")
            if len(error) > MAX_ERROR_CHARS:
                error = error[: MAX_ERROR_CHARS - 1] + "…"
            row.append(error)
        if c.get("name") == chosen:
            row = [f"**{row[0]}** ✓"] + [f"**{cell}**" if cell else cell for cell in row[1:]]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def _cluster_table_markdown(report):
    clusters = report.get("clusters") or []
    total = sum(int(c.get("size") or 0) for c in clusters)
    lines = ["| cluster | weight | rows | share % |", "|---:|---:|---:|---:|"]
    for c in clusters:
        size = c.get("size")
        share = 100.0 * size / total if total and size is not None else None
        lines.append(
            f"| {_cell(c.get('cluster', ''))} | {_number(c.get('weight'), '.4f')} "
            f"| {_number(size, ',.0f')} | {_number(share, '.1f')} |"
        )
    return "\n".join(lines) + "\n"


def _timings_markdown(timings):
    names = [n for n in TIMING_ORDER if n in timings]
    names += sorted(n for n in timings if n not in TIMING_ORDER)
    lines = ["| step | seconds |", "|:---|---:|"]
    lines += [f"| {_cell(n)} | {_number(timings[n], '.2f')} |" for n in names]
    return "\n".join(lines) + "\n"


def _report_markdown(report, criterion, *, with_clusters):
    if criterion is None:
        return _bayesian_markdown(report, with_clusters=with_clusters)
    name = criterion.upper()
    features = report.get("features") or []
    chosen = _chosen_candidate(report)
    out = [
        f"# mixlake run report: {_cell(report.get('run_id', ''))}",
        "",
        f"- run id: `{report.get('run_id', '')}`",
        f"- config hash: `{report.get('config_hash', '')}`",
        *([f"- model id: `{report['model_id']}`"] if report.get("model_id") else []),
        f"- selection criterion: {name} (lower is better)",
        f"- rows: {_number(report.get('n_rows'), ',.0f')}, "
        f"rows dropped: {_number(report.get('rows_dropped'), ',.0f')}",
        f"- features ({_number(report.get('n_features'), '.0f')}): "
        + (", ".join(f"`{f}`" for f in features) if features else "—"),
        "",
        "## Candidates",
        "",
        candidate_table_markdown(report),
        "## Chosen model",
        "",
    ]
    if chosen is None:
        out.append(f"`{report.get('chosen')}` (not among the candidates)")
    else:
        out += [
            f"**{_cell(chosen.get('name', ''))}**: {_cell(chosen.get('covariance_type', ''))} "
            f"covariance, {_cell(chosen.get('n_components', ''))} components, "
            f"{name} {_number(chosen.get(criterion), ',.1f')}, "
            f"{_number(chosen.get('n_iter'), '.0f')} iterations, "
            + ("converged." if chosen.get("converged") else "**not converged**."),
        ]
    out += [
        *_common_sections(report, f"![{name}](bic.png)"),
    ]
    if with_clusters:
        out += ["", "![clusters](clusters.png)"]
    return "\n".join(out) + "\n"


def _common_sections(report, figure):
    """The clusters, passes, timings and the first figure: the same in every report."""
    return ["", "### Clusters", "", _cluster_table_markdown(report),
            "## Passes and timings", "",
            f"Passes over the data: {_number(report.get('passes'), '.0f')}", "",
            _timings_markdown(report.get("timings") or {}), "## Figures", "", figure]


def _bayesian_markdown(report, *, with_clusters):
    """The report of ``kind: bayesian``: one variational mixture, its weighted components."""
    features = report.get("features") or []
    chosen = _chosen_candidate(report) or {}
    n_components = chosen.get("n_components", len(report.get("clusters") or []))
    threshold = report.get("weight_threshold")
    out = [
        f"# mixlake run report: {_cell(report.get('run_id', ''))}",
        "",
        f"- run id: `{report.get('run_id', '')}`",
        f"- config hash: `{report.get('config_hash', '')}`",
        *([f"- model id: `{report['model_id']}`"] if report.get("model_id") else []),
        "- model: Bayesian Gaussian mixture (variational, "
        f"{_cell(chosen.get('covariance_type', ''))} covariance), at most "
        f"{_number(n_components, '.0f')} components",
        f"- rows: {_number(report.get('n_rows'), ',.0f')}, "
        f"rows dropped: {_number(report.get('rows_dropped'), ',.0f')}",
        f"- features ({_number(report.get('n_features'), '.0f')}): "
        + (", ".join(f"`{f}`" for f in features) if features else "—"),
        "",
        "## Components carrying weight",
        "",
        f"**{_number(report.get('n_weighted'), '.0f')}** of {_number(n_components, '.0f')} "
        f"components have a weight above {_number(threshold, 'g')}; lower bound "
        f"{_number(chosen.get('lower_bound'), ',.4f')}, "
        f"{_number(chosen.get('n_iter'), '.0f')} iterations, "
        + ("converged." if chosen.get("converged") else "**not converged**."),
        *_common_sections(report, "![weights](weights.png)"),
    ]
    if with_clusters:
        out += ["", "![clusters](clusters.png)"]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- weights.png


def _weights_figure(report):
    """The weight of each component, those above the threshold highlighted."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    clusters = report.get("clusters") or []
    weights = [_finite(c.get("weight")) or 0.0 for c in clusters]
    threshold = _finite(report.get("weight_threshold")) or 0.0
    figure = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = figure.add_subplot()
    ks = [int(c.get("cluster", k)) for k, c in enumerate(clusters)]
    ax.bar(ks, weights, color=["C0" if w > threshold else "0.75" for w in weights])
    ax.axhline(threshold, color="C3", linestyle="--", linewidth=1.2,
               label=f"threshold {threshold:g}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("component")
    ax.set_ylabel("weight")
    n_weighted = sum(w > threshold for w in weights)
    ax.set_title(f"{n_weighted} of {len(weights)} components carry weight, "
                 f"run {report.get('run_id', '')}")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper right", fontsize=9)
    return figure


# --------------------------------------------------------------------------- bic.png


def _bic_figure(report, criterion):
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    name = criterion.upper()
    figure = Figure(figsize=(7.5, 4.8), layout="constrained")
    ax = figure.add_subplot()
    best = _best_per_type(report, criterion)
    for index, covariance_type in enumerate(_covariance_types(report)):
        color, marker = COVARIANCE_STYLES.get(covariance_type, (f"C{4 + index % 6}", "v"))
        by_k = best.get(covariance_type)
        if not by_k:
            # A handle without data keeps the failure visible in the legend.
            ax.plot([], [], linestyle="none", marker="x", color="0.5",
                    label=f"{covariance_type} (all failed)")
            continue
        ks = sorted(by_k)
        ax.plot(ks, [_finite(by_k[k][criterion]) for k in ks], color=color, marker=marker,
                label=covariance_type)

    chosen = _chosen_candidate(report)
    value = None if chosen is None or chosen.get("error") else _finite(chosen.get(criterion))
    if value is not None:
        k = int(chosen["n_components"])
        ax.plot([k], [value], linestyle="none", marker="*", markersize=18, color="gold",
                markeredgecolor="black", zorder=5,
                label=f"chosen: {chosen.get('name')}")
        # Label on the side of the star that faces the middle of the K axis.
        fitted_k = [n for by_k in best.values() for n in by_k] or [k]
        right = k <= (min(fitted_k) + max(fitted_k)) / 2
        ax.annotate(f"{chosen.get('covariance_type')}, K={k}\n{name} {value:,.1f}",
                    xy=(k, value), xytext=(12 if right else -12, 18),
                    textcoords="offset points", ha="left" if right else "right", fontsize=9,
                    arrowprops={"arrowstyle": "-", "color": "0.3"},
                    bbox={"boxstyle": "round", "fc": "white", "ec": "0.6", "alpha": 0.9})
    if not best:
        ax.text(0.5, 0.5, f"no candidate has a finite {name}", transform=ax.transAxes,
                ha="center", va="center", color="0.4")

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    # Criteria of large data are in the millions: whole numbers read better than an offset.
    ax.ticklabel_format(axis="y", style="plain", useOffset=False)
    ax.set_xlabel("number of components K")
    ax.set_ylabel(f"{name} (lower is better)")
    ax.set_title(f"{name} by number of components, run {report.get('run_id', '')}")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title="covariance", loc="upper right", fontsize=9)
    return figure


# --------------------------------------------------------------------------- clusters.png


def _full_covariances(covariances, covariance_type, K, D):
    """Covariances as an array of shape (K, D, D), from scikit-learn's per-type layout."""
    from pipeline.mixture._covariance import COVARIANCES

    if covariance_type not in COVARIANCES:
        raise ValueError(
            f"covariance_type must be one of {tuple(COVARIANCES)}, got "
            f"{covariance_type!r}; pass covariance_type or name the chosen candidate."
        )
    kind = COVARIANCES[covariance_type]
    covariances = np.asarray(covariances, dtype=float)
    if covariances.shape != kind.shape(K, D):
        raise ValueError(
            f"covariances for covariance_type={covariance_type!r} with {K} components and "
            f"{D} features must have shape {kind.shape(K, D)}, got {covariances.shape}."
        )
    return kind.per_component_matrices(covariances, K, D)


def _projection(X):
    """Center and (D, 2) map of the 2-D view, and the axis labels.

    Principal axes of the sample, each signed so its largest loading is positive, which
    keeps the picture from flipping between runs.
    """
    n, D = X.shape
    if D <= 2:
        return np.zeros(D), np.eye(D, 2), None
    center = X.mean(axis=0) if n else np.zeros(D)
    _, singular, Vt = np.linalg.svd(X - center, full_matrices=False)
    W = np.zeros((D, 2))
    W[:, : min(2, Vt.shape[0])] = Vt[:2].T
    signs = np.sign(W[np.argmax(np.abs(W), axis=0), [0, 1]])
    W *= np.where(signs == 0, 1.0, signs)
    variance = singular**2
    ratio = variance / variance.sum() if variance.sum() > 0 else np.zeros_like(variance)
    ratio = np.pad(ratio, (0, max(0, 2 - ratio.size)))[:2]
    return center, W, ratio


def _ellipse(mean, covariance, color):
    from matplotlib.patches import Ellipse

    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    major = eigenvectors[:, 1]
    return Ellipse(
        tuple(mean),
        width=2 * ELLIPSE_SIGMAS * math.sqrt(eigenvalues[1]),
        height=2 * ELLIPSE_SIGMAS * math.sqrt(eigenvalues[0]),
        angle=math.degrees(math.atan2(major[1], major[0])),
        facecolor="none", edgecolor=color, linewidth=2.0, zorder=3,
    )


def _clusters_figure(report, sample_X, sample_labels, means, covariances, covariance_type):
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    X = np.asarray(sample_X, dtype=float)
    if X.ndim != 2:
        raise ValueError(f"sample_X must be 2-D (n_samples, n_features), got shape {X.shape}.")
    n, D = X.shape
    labels = None
    if sample_labels is not None:
        labels = np.asarray(sample_labels).reshape(-1)
        if labels.shape[0] != n:
            raise ValueError(
                f"sample_labels has {labels.shape[0]} entries but sample_X has {n} rows."
            )
    keep = np.isfinite(X).all(axis=1)
    X = X[keep]
    labels = labels[keep] if labels is not None else None

    if means is not None:
        means = np.asarray(means, dtype=float)
        if means.ndim != 2 or means.shape[1] != D:
            raise ValueError(
                f"means must have shape (n_components, {D}) to match sample_X, "
                f"got {means.shape}."
            )
    if covariances is not None and means is None:
        raise ValueError("covariances need means: pass the chosen model's means as well.")

    center, W, ratio = _projection(X)
    points = (X - center) @ W
    features = list(report.get("features") or [])
    if ratio is not None:
        xlabel, ylabel = (f"PC{i + 1} ({100 * r:.0f}% of variance)" for i, r in enumerate(ratio))
    elif D == 2:
        xlabel, ylabel = features if len(features) == 2 else ("feature 0", "feature 1")
    else:
        xlabel, ylabel = (features[0] if len(features) == 1 else "feature 0"), ""

    K = 0 if means is None else means.shape[0]
    n_colors = max(K, int(labels.max()) + 1 if labels is not None and labels.size else 0)
    cmap = matplotlib.colormaps["tab10" if n_colors <= 10 else "tab20"]

    def color(k):
        return cmap(int(k) % cmap.N) if k >= 0 else (0.5, 0.5, 0.5, 1.0)

    figure = Figure(figsize=(8.0, 6.4), layout="constrained")
    ax = figure.add_subplot()
    cluster_handles, handles = [], []
    if labels is None:
        ax.scatter(points[:, 0], points[:, 1], s=4, alpha=0.35, linewidths=0, color="0.4")
    else:
        label_values, counts = np.unique(labels, return_counts=True)
        for k, count in zip(label_values, counts, strict=True):
            mask = labels == k
            ax.scatter(points[mask, 0], points[mask, 1], s=4, alpha=0.35, linewidths=0,
                       color=color(k))
            cluster_handles.append(Line2D([], [], linestyle="none", marker="o", color=color(k),
                                  label=f"cluster {k} ({100 * count / len(labels):.0f}%)"))

    if means is not None:
        projected_means = (means - center) @ W
        if covariances is not None:
            full = _full_covariances(covariances, covariance_type, K, D)
            projected = np.einsum("di,kde,ej->kij", W, full, W)
            for k in range(K):
                ax.add_patch(_ellipse(projected_means[k], projected[k], color(k)))
        ax.scatter(projected_means[:, 0], projected_means[:, 1], marker="X", s=140,
                   c=[color(k) for k in range(K)], edgecolors="black", linewidths=1.2,
                   zorder=4)
        handles.append(Line2D([], [], linestyle="none", marker="X", markersize=10,
                              color="white", markeredgecolor="black", label="component mean"))
        if covariances is not None:
            handles.append(Line2D([], [], color="black", linewidth=2.0,
                                  label=f"{ELLIPSE_SIGMAS:g}-sigma ellipse"))

    if ratio is not None:
        ax.set_aspect("equal", adjustable="datalim")
    if D == 1:
        ax.set_yticks([])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    chosen = report.get("chosen")
    ax.set_title(f"Clusters of {chosen}, {len(X):,} sampled rows"
                 if chosen else f"{len(X):,} sampled rows")
    ax.grid(True, alpha=0.3)
    # Up to 20 clusters in the legend; more would hide the plot.
    handles = cluster_handles[:20] + handles
    if handles:
        figure.legend(handles=handles, loc="outside right upper", fontsize=9, markerscale=1.5)
    return figure
