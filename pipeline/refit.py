"""Refits: a warm start from a saved model (``model.init_from``), and when `mixlake update`
refits (``refit:``) and with which config.
"""

import datetime as dt
import logging
from dataclasses import dataclass

import numpy as np

from pipeline import store
from pipeline.config import ConfigError
from pipeline.mixture import _covariance
from pipeline.output import resolve_model_path
from pipeline.storage import DataError

logger = logging.getLogger("pipeline.refit")


def _rescaled(estimator, model_scaler, data_scaler):
    """The model's means and covariances in the data's space, when the two were
    standardized differently (x_data = (x_model * s_m + m_m - m_d) / s_d); a spherical
    model takes the mean squared ratio (a start, which EM then refines)."""
    n_features = estimator.means_.shape[1]
    ones, zeros = np.ones(n_features), np.zeros(n_features)
    m_mean, m_scale = (model_scaler["mean"], model_scaler["scale"]) if model_scaler \
        else (zeros, ones)
    d_mean, d_scale = data_scaler if data_scaler[0] is not None else (zeros, ones)
    ratio = np.asarray(m_scale) / np.asarray(d_scale)
    means = estimator.means_ * ratio + (np.asarray(m_mean) - np.asarray(d_mean)) / d_scale
    covariances = estimator.covariances_
    covariances = {
        "full": lambda c: c * ratio[:, None] * ratio[None, :],
        "tied": lambda c: c * ratio[:, None] * ratio[None, :],
        "diag": lambda c: c * ratio**2,
        "spherical": lambda c: c * float(np.mean(ratio**2)),
    }[estimator.covariance_type](covariances)
    return means, covariances


def warm_start(config, dataset):
    """The ``init`` of :func:`pipeline.selection.select` from ``model.init_from``, or None.

    Returns
    -------
    dict or None
        ``weights``, ``means``, ``precisions`` (in the data's space) and ``model_id``.

    Raises
    ------
    ConfigError
        The saved model's number of components or covariance type is not the config's.
    DataError
        The saved model has other features than the data.
    """
    path = config.model.init_from
    if path is None:
        return None
    options = config.output.storage_options
    estimator, meta = store.load_model(resolve_model_path(path, options), options,
                                       estimator=False)
    wanted = (config.model.component_counts()[0], config.model.covariance_types()[0])
    if (estimator.n_components, estimator.covariance_type) != wanted:
        raise ConfigError(
            f"model.init_from: the model at {path!r} has {estimator.n_components} "
            f"{estimator.covariance_type} components, the config asks for {wanted[0]} "
            f"{wanted[1]}; set model.n_components: {estimator.n_components} and "
            f"model.covariance_type: {estimator.covariance_type}, or remove model.init_from")
    if list(meta["features"]) != list(dataset.features):
        raise DataError(
            f"source.features: the data's features {dataset.features} differ from "
            f"{meta['features']} of the model at model.init_from {path!r}; a warm start "
            "needs the same feature columns, in the same order")
    data_scaler = (dataset.scaler_mean, dataset.scaler_scale)
    if meta["preprocessing"] is None and data_scaler[0] is None:
        means, precisions = estimator.means_, estimator.precisions_
    else:
        means, covariances = _rescaled(estimator, meta["preprocessing"], data_scaler)
        precisions = _covariance.precisions_from_cholesky(
            _covariance.precision_cholesky(covariances, estimator.covariance_type),
            estimator.covariance_type)
    logger.info("warm start from model %s (%s)", meta["model_id"], path)
    return {"weights": estimator.weights_, "means": means, "precisions": precisions,
            "model_id": meta["model_id"]}


def model_age_days(base, now=None):
    """Days since the model of this baseline was fitted, or None when unknown."""
    fitted = ((base or {}).get("window") or {}).get("fitted_at")
    if not fitted:
        return None
    now = now or dt.datetime.now(dt.UTC)
    return (now - dt.datetime.fromisoformat(fitted)).total_seconds() / 86400


@dataclass
class Decision:
    """Whether `mixlake update` refits, and why (one sentence)."""

    refit: bool
    why: str


def decide(settings, verdict, base, now=None):
    """Refit or keep the model, from ``refit:`` (a pipeline.config.Refit), the run's
    verdict and the model's baseline (its age)."""
    recommended = verdict["refit_recommended"]
    if settings.mode == "never":
        return Decision(False, "refit.mode is never" + (
            " (the verdict recommends a refit)" if recommended else ""))
    if settings.mode == "always":
        return Decision(True, "refit.mode is always")
    reasons = ["the verdict recommends it"] if recommended else []
    age, limit = model_age_days(base, now), settings.max_age_days()
    if age is not None and limit is not None and age > limit:
        reasons.append(f"the model is {age:.1f} days old, older than refit.max_age "
                       f"{settings.max_age}")
    if reasons:
        return Decision(True, " and ".join(reasons))
    return Decision(False, "the new rows look like the training data: no threshold passed"
                    if verdict["checks"] else "nothing to judge (no rows, or no baseline)")


def refit_config(config, estimator, model_path, features):
    """The config of a refit: a warm start from the model at ``model_path`` (one
    candidate of its size and type), or the config's own grid when ``refit.grid``."""
    source = config.source.model_copy(update={"features": list(features)})
    if config.refit.grid:
        return config.model_copy(update={"source": source})
    model = config.model.model_copy(update={
        "n_components": int(estimator.n_components),
        "covariance_type": estimator.covariance_type, "n_init": 1, "init_from": model_path})
    return config.model_copy(update={"source": source, "model": model})
