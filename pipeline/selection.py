"""Model selection: a grid of candidates fitted together, one data pass per iteration.

Candidates (n_components x covariance_type x n_init restarts) advance in lock-step: each
pass over the data reads every chunk once and updates the statistics of every candidate
still running. A grid therefore costs

    1 (describe) + initialisation passes + max(candidate iterations) + 1 (final likelihood)

passes, where the initialisation passes are shared by all candidates (k-means runs all
component counts together) and the final pass also gives the chosen model's training
baseline (:mod:`pipeline.monitor`). The criterion (BIC by default) picks the model; within one
(n_components, covariance_type), the restart with the best lower bound is kept, as
scikit-learn's ``n_init`` does. The fitting itself is the estimator's own core
(:func:`pipeline.mixture._fit.fit_states`); a candidate that cannot be initialised or
whose covariance becomes ill-defined stops alone, with its error recorded.
"""

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
from sklearn.utils import check_random_state

from pipeline.mixture import GaussianMixture, _covariance
from pipeline.mixture._chunks import ChunkedData
from pipeline.mixture._em import EMState
from pipeline.mixture._fit import Start, fit_states
from pipeline.mixture._init import InitJob
from pipeline.monitor import baseline, final_pass

logger = logging.getLogger("pipeline.selection")


@dataclass
class Candidate:
    """One cell of the grid and what its fit gave."""

    n_components: int
    covariance_type: str
    init: int
    state: EMState | None = None
    log_likelihood: float | None = None
    bic: float | None = None
    aic: float | None = None
    error: str | None = None

    @property
    def name(self):
        return f"{self.covariance_type}-k{self.n_components}-init{self.init}"

    def row(self):
        """A JSON-able summary (for report.json and the Prefect table artifact)."""
        state = self.state
        return {
            "name": self.name,
            "n_components": self.n_components,
            "covariance_type": self.covariance_type,
            "init": self.init,
            "bic": self.bic,
            "aic": self.aic,
            "log_likelihood": self.log_likelihood,
            "n_iter": int(state.n_iter) if state else 0,
            "converged": bool(state.converged) if state else False,
            "fit_time_s": round(float(state.fit_time), 4) if state else 0.0,
            "error": self.error,
        }


@dataclass
class SelectionResult:
    candidates: list
    best: Candidate
    estimator: GaussianMixture
    criterion: str
    n_passes: int
    seconds: float
    baseline: dict | None = None  # the chosen model's training baseline (pipeline.monitor)


def _check_finite(describe):
    if describe["n_nan"] or describe["n_inf"]:
        raise ValueError("the feature array contains NaN or inf; clean the data or use "
                         "nan_policy: drop")


def select(X, *, n_components, covariance_types, n_init=1, init_params="kmeans", tol=1e-3,
           reg_covar=1e-6, max_iter=100, random_state=None, criterion="bic", dtype="float64",
           persist="auto", split_every=None, checkpoint=None, fingerprint=None, init=None):
    """Fit every candidate of the grid on X and pick one by the criterion.

    Parameters
    ----------
    X : dask array or ndarray of shape (n_samples, n_features)
        Finite values (checked: a NaN or inf raises ValueError).
    n_components : list of int
    covariance_types : list of str
    checkpoint : pipeline.checkpoint.Checkpoint, optional
        Saved after initialisation and after every pass; a checkpoint of the same grid
        and input (``fingerprint``) is resumed from instead of starting over.
    init : dict, optional
        ``weights``, ``means`` and ``precisions`` that start EM instead of
        ``init_params`` (a warm start, as scikit-learn's ``*_init``): one candidate only.

    Returns
    -------
    SelectionResult
    """
    started = time.perf_counter()
    dtype = np.dtype(dtype)
    X = X.astype(dtype) if X.dtype != dtype else X
    data = ChunkedData(X, persist=persist, split_every=split_every)
    n = data.n_samples
    seed_source = random_state
    random_state = check_random_state(random_state)
    seeds = [int(random_state.randint(np.iinfo(np.int32).max)) for _ in range(n_init)]
    candidates = [Candidate(k, c, i) for k in n_components for c in covariance_types
                  for i in range(n_init)]
    given = (None, None, None) if init is None else (init["weights"], init["means"],
                                                     init["precisions"])
    if init is not None and len(candidates) != 1:
        raise ValueError(f"a warm start fits one candidate, not {len(candidates)}")
    runnable = []
    for candidate in candidates:
        if candidate.n_components > n:
            candidate.error = f"n_components={candidate.n_components} exceeds the {n} rows of data"
        else:
            runnable.append(candidate)
    starts = [Start(c.name, InitJob(c.n_components, c.covariance_type, init_params,
                                    seeds[c.init], reg_covar, *given)) for c in runnable]
    hooks = {}
    if checkpoint is not None:
        names = [start.name for start in starts]
        hooks = dict(
            restore=lambda: checkpoint.restore(fingerprint, names, EMState.from_dict),
            save=lambda states, errors, passes: checkpoint.save(states, errors, fingerprint,
                                                                passes))
    fit = fit_states(data, starts, dtype, tol=tol, max_iter=max_iter,
                     check_finite=_check_finite, raise_errors=False, **hooks)
    for candidate, state, error in zip(runnable, fit.states, fit.errors):
        candidate.state, candidate.error = state, error
    fitted = [c for c in runnable if c.state is not None and c.error is None]
    if not fitted:
        errors = "; ".join(f"{c.name}: {c.error}" for c in candidates)
        raise ValueError(f"every candidate failed: {errors}")
    # The criteria use the likelihood under the final parameters: one pass for all, which
    # also gives every candidate's training baseline (no pass of its own).
    final = final_pass(data, [c.state for c in fitted], dtype)
    for candidate, log_likelihood in zip(fitted, final.log_likelihoods):
        p = _covariance.n_parameters(candidate.covariance_type, candidate.n_components,
                                     data.n_features)
        candidate.log_likelihood = log_likelihood / n
        candidate.bic = -2 * log_likelihood + p * math.log(n)
        candidate.aic = -2 * log_likelihood + 2 * p
    # n_init: the restart with the best lower bound per (n_components, covariance_type)
    best = min((runnable[i] for i in fit.best), key=lambda c: getattr(c, criterion))
    state = best.state
    if not state.converged:
        logger.warning("the chosen model %s did not converge in %d iterations; consider "
                       "increasing model.max_iter or model.tol", best.name, max_iter)
    estimator = GaussianMixture._from_parameters(
        state.parameters(), **state.history(), n_components=best.n_components,
        covariance_type=best.covariance_type, tol=tol, reg_covar=reg_covar, max_iter=max_iter,
        n_init=n_init, init_params=init_params,
        random_state=seed_source if isinstance(seed_source, int) else None,
        dtype=None if dtype == np.float64 else "float32")
    seconds = time.perf_counter() - started
    logger.info("selected %s by %s in %d passes over the data, %.2f s", best.name, criterion,
                data.n_passes, seconds)
    return SelectionResult(candidates, best, estimator, criterion, data.n_passes, seconds,
                           baseline(final.stats[fitted.index(best)], state.weights))
