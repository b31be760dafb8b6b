"""Model selection: a grid of candidates fitted together, one data pass per iteration.

Candidates (n_components x covariance_type x n_init restarts) advance in lock-step: each
pass over the data reads every chunk once and updates the statistics of every candidate
still running. A grid therefore costs

    1 (describe) + initialisation passes + max(candidate iterations) + 1 (final likelihood)

passes, where the initialisation passes are shared by all candidates (k-means runs all
component counts together). The criterion (BIC by default) picks the model; within one
(n_components, covariance_type), the restart with the best lower bound is kept, as
scikit-learn's ``n_init`` does.
"""

import logging
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.utils import check_random_state

from pipeline.checkpoint import restore_states
from pipeline.mixture import GaussianMixture, _covariance, _kernels
from pipeline.mixture._chunks import ChunkedData
from pipeline.mixture._em import EMState, run_em
from pipeline.mixture._init import InitJob, initialize

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


def _estimator_for(candidate, settings):
    state = candidate.state
    estimator = GaussianMixture(candidate.n_components, covariance_type=candidate.covariance_type,
                                **settings)
    estimator._set_parameters(state.parameters())
    estimator.converged_ = bool(state.converged)
    estimator.n_iter_ = int(state.n_iter)
    estimator.lower_bound_ = float(state.lower_bound)
    estimator.lower_bounds_ = list(state.lower_bounds)
    return estimator


def _initialize_each(data, jobs, describe, eps, candidates):
    """Initialise all jobs together; if one fails, retry one by one and record failures.

    Warnings of the initialisation (k-means finding fewer distinct points than clusters)
    are logged: a candidate that cannot be fitted is recorded with its error instead.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return initialize(data, jobs, describe, eps)
        except ValueError:
            logger.warning("an initialisation failed; retrying the candidates one by one")
        finally:
            for message in {str(w.message) for w in caught}:
                logger.warning("initialisation: %s", message)
    return _initialize_one_by_one(data, jobs, describe, eps, candidates)


def _initialize_one_by_one(data, jobs, describe, eps, candidates):
    params = []
    for job, candidate in zip(jobs, candidates):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                params.append(initialize(data, [job], describe, eps)[0])
        except ValueError as exc:
            candidate.error = f"initialisation: {exc}"
            params.append(None)
    return params


def _restore(candidates, checkpoint, fingerprint):
    """Candidates' states from a checkpoint of this grid, or False."""
    loaded = checkpoint.load(fingerprint) if checkpoint is not None else None
    if loaded is None:
        return False
    payload, arrays = loaded
    entries = payload["candidates"]
    if len(entries) != len(candidates) or any(
            e is not None and e["name"] != c.name for e, c in zip(entries, candidates)):
        logger.info("the checkpoint at %s is of another grid: starting over",
                    checkpoint.location)
        return False
    for candidate, state, error in zip(candidates,
                                       restore_states(payload, arrays, EMState),
                                       payload["errors"]):
        candidate.state, candidate.error = state, error
    logger.info("resumed from iteration %d (checkpoint after pass %d at %s)",
                payload["iteration"], payload["passes"], checkpoint.location)
    return payload["passes"]


def select(X, *, n_components, covariance_types, n_init=1, init_params="kmeans", tol=1e-3,
           reg_covar=1e-6, max_iter=100, random_state=None, criterion="bic", dtype="float64",
           persist="auto", split_every=None, checkpoint=None, fingerprint=None):
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
    eps = float(np.finfo(dtype).eps)

    def save(_states=None):
        if checkpoint is not None:
            checkpoint.save([c.state for c in candidates], [c.error for c in candidates],
                            fingerprint, data.n_passes)

    resumed_passes = _restore(candidates, checkpoint, fingerprint)
    if resumed_passes is not False:
        data.n_passes = resumed_passes
    else:
        describe = data.reduce(_kernels.describe_chunk, _kernels.combine_describe)
        if describe["n_nan"] or describe["n_inf"]:
            raise ValueError("the feature array contains NaN or inf; clean the data or use "
                             "nan_policy: drop")
        runnable, jobs = [], []
        for candidate in candidates:
            if candidate.n_components > n:
                candidate.error = (f"n_components={candidate.n_components} exceeds the "
                                   f"{n} rows of data")
                continue
            runnable.append(candidate)
            jobs.append(InitJob(candidate.n_components, candidate.covariance_type, init_params,
                                seeds[candidate.init], reg_covar))
        initial = _initialize_each(data, jobs, describe, eps, runnable) if jobs else []
        for candidate, params in zip(runnable, initial):
            if params is not None:
                candidate.state = EMState(candidate.covariance_type, reg_covar, tol, max_iter,
                                          name=candidate.name, **params)
        logger.info("%d candidates initialised in %d passes",
                    sum(c.state is not None for c in candidates), data.n_passes)
        save()
    states = [c.state for c in candidates if c.state is not None]
    run_em(data, states, dtype, raise_errors=False, on_pass=save)
    fitted = [c for c in candidates if c.state is not None and c.state.error is None]
    for candidate in candidates:
        if candidate.state is not None and candidate.state.error:
            candidate.error = candidate.state.error
    if not fitted:
        errors = "; ".join(f"{c.name}: {c.error}" for c in candidates)
        raise ValueError(f"every candidate failed: {errors}")
    # The criteria use the likelihood under the final parameters: one pass for all.
    models = [_kernels.prepare_model(c.state.weights, c.state.means,
                                     c.state.precisions_cholesky, c.covariance_type, dtype)
              for c in fitted]
    final = data.reduce(_kernels.em_chunk, _kernels.combine_sums, models)
    for candidate, stats in zip(fitted, final):
        log_likelihood = float(stats["loglik"])
        p = _covariance.n_parameters(candidate.covariance_type, candidate.n_components,
                                     data.n_features)
        candidate.log_likelihood = log_likelihood / n
        candidate.bic = -2 * log_likelihood + p * math.log(n)
        candidate.aic = -2 * log_likelihood + 2 * p
    # n_init: keep the restart with the best lower bound per (k, covariance type)
    best_restart = {}
    for candidate in fitted:
        key = (candidate.n_components, candidate.covariance_type)
        if key not in best_restart or (candidate.state.lower_bound
                                       > best_restart[key].state.lower_bound):
            best_restart[key] = candidate
    best = min(best_restart.values(), key=lambda c: getattr(c, criterion))
    if not best.state.converged:
        logger.warning("the chosen model %s did not converge in %d iterations; consider "
                       "increasing model.max_iter or model.tol", best.name, max_iter)
    settings = dict(tol=tol, reg_covar=reg_covar, max_iter=max_iter, n_init=n_init,
                    init_params=init_params,
                    random_state=seed_source if isinstance(seed_source, int) else None,
                    dtype=None if dtype == np.float64 else "float32")
    estimator = _estimator_for(best, settings)
    seconds = time.perf_counter() - started
    logger.info("selected %s by %s in %d passes over the data, %.2f s", best.name, criterion,
                data.n_passes, seconds)
    return SelectionResult(candidates, best, estimator, criterion, data.n_passes, seconds)
