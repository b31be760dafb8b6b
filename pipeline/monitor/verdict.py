"""A run's figures of new data against the training baseline, and the verdict.

:func:`figures` turns the merged sums of a scoring pass (:class:`..baseline.Sums`) into
the numbers a person reads: the mean log-density and its drop (nats per row, and in the
training log-density's standard deviations), the outlier rate, the population stability
index (PSI) of the hard-assignment proportions, the per-feature standardized mean shift,
and per component how far its rows moved. :func:`verdict` compares the three headline
figures with the config's ``monitor.max_*`` thresholds and says why, in words.
"""

import logging
import math

import numpy as np

from pipeline.mixture import _covariance
from pipeline.monitor.baseline import MIN_COMPONENT_ROWS, merge, watch
from pipeline.monitor.history import json_safe

logger = logging.getLogger("pipeline.monitor")

_PSI_FLOOR = 1e-4  # a proportion of 0 would make the PSI infinite


def psi(new, training):
    """Population stability index of two distributions over the same bins."""
    new = np.maximum(np.asarray(new, np.float64), _PSI_FLOOR)
    training = np.maximum(np.asarray(training, np.float64), _PSI_FLOOR)
    return float(np.sum((new - training) * np.log(new / training)))


def _whitened_lengths(deltas, estimator):
    """|delta_k P_k| per component: a change of component k's mean in its own SDs."""
    n_components, n_features = estimator.means_.shape
    factors = _covariance.COVARIANCES[estimator.covariance_type].per_component_matrices(
        estimator.precisions_cholesky_, n_components, n_features)
    return np.linalg.norm(np.einsum("kd,kde->ke", deltas, factors), axis=1)


def figures(base, totals, estimator, features, quantile, threshold):
    """The figures of the rows a run scored, against the model's baseline.

    Parameters
    ----------
    base : dict
        The model's training baseline (``meta["baseline"]``).
    totals : dict
        Merged :meth:`Sums.stats` of the run, taken about ``base["features"]["mean"]``.
    estimator : GaussianMixture
        The model (its precisions measure how far a component's rows moved).
    features : list of str
    quantile, threshold : float
        ``monitor.outlier_quantile`` and the training log-density at it.

    Returns
    -------
    dict or None
        JSON-able; None when the run scored no rows.
    """
    n = int(totals["n"])
    if n == 0:
        return None
    density = base["log_density"]
    mean = totals["loglik"] / n
    drop = density["mean"] - mean
    std = density["std"]
    counts = np.asarray(totals["counts"])
    proportions = counts / n
    training = np.asarray(base["proportions"])
    change = proportions - training
    biggest = int(np.argmax(np.abs(change)))
    depth_mean = totals["depth"] / n
    feature_mean = totals["feature_sums"] / n
    feature_std = np.asarray(base["features"]["std"])
    with np.errstate(invalid="ignore", divide="ignore"):
        shifts = np.where(feature_std > 0, feature_mean / feature_std, 0.0)
        component_density = totals["component_loglik"] / counts
        rows_mean = np.asarray(base["features"]["mean"]) + totals["component_sums"] / \
            counts[:, None]
    training_mean = np.array([[np.nan if v is None else v for v in row]
                              for row in base["components"]["mean"]])
    moved = _whitened_lengths(np.nan_to_num(rows_mean - training_mean), estimator)
    components = []
    for k in range(len(counts)):
        comparable = counts[k] >= MIN_COMPONENT_ROWS and \
            base["components"]["rows"][k] >= MIN_COMPONENT_ROWS
        trained = base["components"]["log_density_mean"][k]
        components.append({
            "component": k, "rows": int(counts[k]), "proportion": float(proportions[k]),
            "training_proportion": float(training[k]),
            "mean_log_density": float(component_density[k]) if counts[k] else None,
            "log_density_drop": float(trained - component_density[k])
            if counts[k] and trained is not None else None,
            "moved_sd": float(moved[k]) if comparable else None,
        })
    candidates = [c for c in components if c["moved_sd"] is not None]
    most = max(candidates, key=lambda c: c["moved_sd"]) if candidates else None
    worst_feature = int(np.argmax(np.abs(shifts)))
    return {
        "rows": n,
        "mean_log_density": mean,
        "training_mean_log_density": density["mean"],
        "loglik_drop": drop,
        "loglik_drop_sd": drop / std if std > 0 else (math.inf if drop > 0 else 0.0),
        "log_density_std": math.sqrt(max(totals["depth_squares"] / n - depth_mean**2, 0.0)),
        "outliers": int(totals["below"]),
        "outlier_rate": totals["below"] / n,
        "outlier_quantile": quantile,
        "outlier_threshold": threshold,
        "psi": psi(proportions, training),
        "max_proportion_change": float(change[biggest]),
        "max_proportion_component": biggest,
        "feature_shift": {name: float(s) for name, s in zip(features, shifts)},
        "max_feature_shift": float(shifts[worst_feature]),
        "max_feature_shift_feature": features[worst_feature],
        "moved_component": None if most is None else most["component"],
        "moved_component_sd": None if most is None else most["moved_sd"],
        "components": components,
    }


def _percent(value):
    return f"{value:.1%}" if value >= 0.001 else f"{value:.2%}"


def verdict(figures, settings):
    """Whether the figures call for a refit, and why, in words.

    Parameters
    ----------
    figures : dict or None
        Of :func:`figures` (None: no rows, nothing to judge).
    settings : pipeline.config.Monitor

    Returns
    -------
    dict
        ``refit_recommended`` (bool), ``reasons`` (sentences, one per threshold passed,
        then the component that moved most) and ``checks`` (each figure, its threshold,
        whether it passed it).
    """
    if figures is None:
        return {"refit_recommended": False, "reasons": [], "checks": {}}
    f = figures
    checks = {
        "outlier_rate": (f["outlier_rate"], settings.max_outlier_rate),
        "psi": (f["psi"], settings.max_psi),
        "loglik_drop_sd": (f["loglik_drop_sd"], settings.max_loglik_drop),
    }
    fired = {name for name, (value, limit) in checks.items() if value > limit}
    reasons = []
    if "outlier_rate" in fired:
        reasons.append(
            f"outlier rate {_percent(f['outlier_rate'])} > {_percent(settings.max_outlier_rate)}"
            f": {f['outliers']:,} of {f['rows']:,} rows below the training "
            f"{f['outlier_quantile'] * 100:g}% log-density ({f['outlier_threshold']:.2f})")
    if "psi" in fired:
        k = f["max_proportion_component"]
        component = f["components"][k]
        reasons.append(
            f"cluster-proportion PSI {f['psi']:.3f} > {settings.max_psi:g}: component {k} "
            f"went from {_percent(component['training_proportion'])} to "
            f"{_percent(component['proportion'])} of the rows")
    if "loglik_drop_sd" in fired:
        reasons.append(
            f"mean log-density {f['mean_log_density']:.2f} is {f['loglik_drop']:.2f} nats/row "
            f"({f['loglik_drop_sd']:.2f} training SDs) below the training "
            f"{f['training_mean_log_density']:.2f} > {settings.max_loglik_drop:g} SDs")
    if fired and f["moved_component"] is not None:
        k = f["moved_component"]
        component = f["components"][k]
        drop = component["log_density_drop"]
        reasons.append(
            f"component {k} moved most: its rows' mean is {component['moved_sd']:.1f} SDs from "
            f"training ({component['rows']:,} rows"
            + (f", {drop:.2f} nats/row less dense" if drop is not None else "") + ")")
    return {"refit_recommended": bool(fired), "reasons": reasons,
            "checks": {name: {"value": value, "threshold": limit, "passed": name in fired}
                       for name, (value, limit) in checks.items()}}


def watch_of(meta, settings):
    """What a scoring pass measures for the saved model of ``meta`` at the settings'
    ``outlier_quantile`` (None: a model saved before monitoring, without a baseline)."""
    if meta.get("baseline") is None:
        logger.warning("model %s has no training baseline (saved before monitoring): no "
                       "outlier column, no monitoring; refit it to get one", meta["model_id"])
        return None
    return watch(meta["baseline"], settings.outlier_quantile)


def measure(settings, meta, estimator, partitions, run_watch, log=True):
    """The JSON-able figures of the rows a run scored (the ``monitor`` sums of its
    partitions) against the model's baseline, and the verdict; figures are None without
    a baseline or rows.

    Parameters
    ----------
    settings : pipeline.config.Monitor
    meta : dict
        ``baseline`` and ``features`` of the model.
    partitions : list of dict
        Of :func:`pipeline.assign.write_assignments`.
    run_watch : Watch or None
    log : bool
        Log the figures and the verdict (one line).
    """
    totals = merge(p.get("monitor") for p in partitions)
    result = None
    if run_watch is not None and totals is not None:
        result = json_safe(figures(meta["baseline"], totals, estimator, list(meta["features"]),
                                   settings.outlier_quantile, run_watch.threshold))
    judged = verdict(result, settings)
    if result is not None and log:
        logger.info("monitor: %d rows, mean log-density %.3f (training %.3f), outliers %.2f%%,"
                    " PSI %.4f: %s", result["rows"], result["mean_log_density"],
                    result["training_mean_log_density"], 100 * result["outlier_rate"],
                    result["psi"], "; ".join(judged["reasons"]) or "no threshold passed")
    return result, judged
