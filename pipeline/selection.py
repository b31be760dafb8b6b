"""Model selection: a grid of candidates fitted together, one data pass per iteration.

Candidates (n_components x covariance_type x n_init restarts) advance in lock-step: each
pass over the data reads every chunk once and updates the statistics of every candidate
still running. A grid therefore costs

    1 (describe) + initialisation passes + max(candidate iterations) + 1 (final likelihood)

passes (no describe pass when the load described the chunks as it read them), where the
initialisation passes are shared by all candidates (k-means runs all component counts
together) and the final pass also gives the chosen model's training
baseline (:mod:`pipeline.monitor`). The criterion (BIC by default) picks the model; within one
(n_components, covariance_type), the restart with the best lower bound is kept, as
scikit-learn's ``n_init`` does. The fitting itself is the estimator's own core
(:func:`pipeline.mixture._fit.fit_states`); a candidate that cannot be initialised or
whose covariance becomes ill-defined stops alone, with its error recorded.
"""

import logging
import math
import time
import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from pipeline.mixture import _covariance, _kernels
from pipeline.mixture._chunks import ChunkedData, should_persist
from pipeline.mixture._em import EMState
from pipeline.mixture._fit import Start, fit_states, log_likelihoods
from pipeline.mixture._fitted import FittedMixture
from pipeline.mixture._init import InitJob
from pipeline.mixture._validation import check_random_state, check_weight_values
from pipeline.mixture._variational import VariationalState
from pipeline.monitor import baseline, final_pass
from pipeline.monitor.baseline import FinalPass

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
class BayesianCandidate(Candidate):
    """The one variational mixture of ``kind: bayesian`` (n_components an upper bound)."""

    n_weighted: int | None = None

    @property
    def name(self):
        return f"bayesian-{self.covariance_type}-k{self.n_components}"

    def row(self):
        return {**super().row(), "kind": "bayesian", "n_weighted": self.n_weighted,
                "lower_bound": float(self.state.lower_bound) if self.state else None}


@dataclass
class SelectionResult:
    """The grid's candidates and the chosen one.

    ``model`` is the chosen model as the run uses it: a
    :class:`~pipeline.mixture._fitted.FittedMixture` (no scikit-learn import), or the
    fitted BayesianGaussianMixture; ``estimator`` the scikit-learn-compatible estimator.
    """

    candidates: list
    best: Candidate
    model: object
    criterion: str
    n_passes: int
    seconds: float
    baseline: dict | None = None  # the chosen model's training baseline (pipeline.monitor)
    scores: list | None = None  # per chunk, a future of the rows' scores (keep_scores)

    @cached_property
    def estimator(self):
        """The chosen GaussianMixture or BayesianGaussianMixture (imports scikit-learn)."""
        model = self.model
        return model.estimator() if isinstance(model, FittedMixture) else model


def _check_finite(describe):
    if describe["n_nan"] or describe["n_inf"]:
        raise ValueError("the feature array contains NaN or inf; clean the data or use "
                         "nan_policy: drop")
    check_weight_values(describe["w_nan"], describe["w_inf"],
                        describe["n_positive"] + describe["w_negative"], describe["w_negative"])


def select(X, *, n_components, covariance_types, n_init=1, init_params="kmeans", tol=1e-3,
           reg_covar=1e-6, max_iter=100, random_state=None, criterion="bic", dtype="float64",
           persist="auto", split_every=None, checkpoint=None, fingerprint=None,
           kind="gaussian", weight_threshold=0.01, sample_weight=None, init=None,
           keep_scores=False, described=None):
    """Fit every candidate of the grid on X and pick one by the criterion.

    With ``kind='bayesian'``: one BayesianGaussianMixture of ``max(n_components)``
    components and the (single) covariance type instead (:func:`fit_bayesian`).

    Parameters
    ----------
    X : dask array or ndarray of shape (n_samples, n_features)
        Finite values (checked: a NaN or inf raises ValueError).
    sample_weight : dask array or ndarray of shape (n_samples,), optional
        Frequency weights, chunked like X's rows (checked: finite, >= 0, not all 0). The
        criteria then use the weighted log-likelihood and the rows of positive weight.
    n_components : list of int
    covariance_types : list of str
    checkpoint : pipeline.checkpoint.Checkpoint, optional
        Saved after initialisation and after every pass; a checkpoint of the same grid
        and input (``fingerprint``) is resumed from instead of starting over.
    init : dict, optional
        ``weights``, ``means`` and ``precisions`` that start EM instead of
        ``init_params`` (a warm start, as scikit-learn's ``*_init``): one candidate only.
    keep_scores : bool
        When one candidate is fitted on data persisted on a distributed cluster and its
        scores fit in memory beside them: the final pass keeps every chunk's rows' scores
        on the workers (``SelectionResult.scores``) for writing the assignments.
    described : list of dict, optional
        Every chunk's :func:`~pipeline.mixture._kernels.describe_chunk`, in chunk order,
        made elsewhere (:attr:`pipeline.source.Dataset.described`): the fit merges them
        instead of making its describe pass. Ignored with ``sample_weight`` and
        ``kind='bayesian'``.

    Returns
    -------
    SelectionResult
    """
    if kind == "bayesian":
        if sample_weight is not None:
            raise ValueError("source.weight: sample weights are not supported with "
                             "model.kind: bayesian yet; drop source.weight or use kind "
                             "gaussian")
        (covariance_type,) = covariance_types
        return fit_bayesian(
            X, n_components=max(n_components), covariance_type=covariance_type,
            n_init=n_init, init_params=init_params, tol=tol, reg_covar=reg_covar,
            max_iter=max_iter, random_state=random_state, weight_threshold=weight_threshold,
            dtype=dtype, persist=persist, split_every=split_every, checkpoint=checkpoint,
            fingerprint=fingerprint)
    started = time.perf_counter()
    dtype = np.dtype(dtype)
    X = X.astype(dtype) if X.dtype != dtype else X
    data = ChunkedData(X, sample_weight=sample_weight, persist=persist,
                       split_every=split_every)
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
                     check_finite=_check_finite, raise_errors=False,
                     described=None if data.weighted else described, **hooks)
    for candidate, state, error in zip(runnable, fit.states, fit.errors):
        candidate.state, candidate.error = state, error
    fitted = [c for c in runnable if c.state is not None and c.error is None]
    if not fitted:
        errors = "; ".join(f"{c.name}: {c.error}" for c in candidates)
        raise ValueError(f"every candidate failed: {errors}")
    # The criteria use the likelihood under the final parameters: one pass for all, which
    # also gives every candidate's training baseline (no pass of its own). With weights:
    # the weighted log-likelihood, and the rows of positive weight for n (a resumed fit
    # skipped the describe pass that counts them).
    n_rows, total = n, n
    if data.weighted:
        described = fit.describe or data.reduce(_kernels.describe_chunk,
                                                _kernels.combine_describe)
        n_rows, total = described["n_positive"], described["weight"]
    if data.weighted:  # the baseline's sums are unweighted: weighted fits go without one
        final = FinalPass(log_likelihoods(data, [c.state for c in fitted], dtype), None)
    else:
        keep = keep_scores and len(fitted) == 1 and _scores_fit(data, fitted[0].n_components)
        final = final_pass(data, [c.state for c in fitted], dtype, keep=keep)
    for candidate, log_likelihood in zip(fitted, final.log_likelihoods):
        p = _covariance.n_parameters(candidate.covariance_type, candidate.n_components,
                                     data.n_features)
        candidate.log_likelihood = log_likelihood / total
        candidate.bic = -2 * log_likelihood + p * math.log(n_rows)
        candidate.aic = -2 * log_likelihood + 2 * p
    # n_init: the restart with the best lower bound per (n_components, covariance_type)
    best = min((runnable[i] for i in fit.best), key=lambda c: getattr(c, criterion))
    state = best.state
    if not state.converged:
        logger.warning("the chosen model %s did not converge in %d iterations; consider "
                       "increasing model.max_iter or model.tol", best.name, max_iter)
    model = FittedMixture(
        state.parameters(), **state.history(), n_components=best.n_components,
        covariance_type=best.covariance_type, tol=tol, reg_covar=reg_covar, max_iter=max_iter,
        n_init=n_init, init_params=init_params,
        random_state=seed_source if isinstance(seed_source, int) else None,
        dtype=None if dtype == np.float64 else "float32")
    seconds = time.perf_counter() - started
    logger.info("selected %s by %s in %d passes over the data, %.2f s", best.name, criterion,
                data.n_passes, seconds)
    return SelectionResult(candidates, best, model, criterion, data.n_passes, seconds,
                           None if final.stats is None else
                           baseline(final.stats[fitted.index(best)], state.weights),
                           final.scores)


def _scores_fit(data, n_components):
    """Whether the rows' scores (:func:`pipeline.mixture._kernels.score_rows`: K float64
    responsibilities, a log-density and a label per row) fit in memory with the data."""
    per_row = data.dtype.itemsize * (data.n_features + 1) + 8 * n_components + 4
    return should_persist(float(data.n_samples) * per_row)


def fit_bayesian(X, *, n_components, covariance_type, n_init=1, init_params="kmeans",
                 tol=1e-3, reg_covar=1e-6, max_iter=100, random_state=None,
                 weight_threshold=0.01, dtype="float64", persist="auto", split_every=None,
                 checkpoint=None, fingerprint=None):
    """Fit one BayesianGaussianMixture; its components of weight above
    ``weight_threshold`` are the clusters the data carry (``n_weighted``).

    Returns
    -------
    SelectionResult
        One candidate; the criterion is the lower bound (the best of ``n_init``).
    """
    from sklearn.exceptions import ConvergenceWarning

    from pipeline.mixture import BayesianGaussianMixture

    started = time.perf_counter()
    dtype = np.dtype(dtype)
    X = X.astype(dtype) if X.dtype != dtype else X
    estimator = BayesianGaussianMixture(
        n_components=n_components, covariance_type=covariance_type, tol=tol,
        reg_covar=reg_covar, max_iter=max_iter, n_init=n_init, init_params=init_params,
        random_state=random_state, dtype=None if dtype == np.float64 else "float32",
        persist=persist, split_every=split_every)
    hooks = {}
    if checkpoint is not None:
        hooks = dict(
            restore=lambda names: checkpoint.restore(fingerprint, names,
                                                     VariationalState.from_dict),
            save=lambda states, errors, passes: checkpoint.save(states, errors, fingerprint,
                                                                passes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # logged below instead
        _, state = estimator._fit(X, **hooks)
    n_weighted = int(np.sum(estimator.weights_ > weight_threshold))
    candidate = BayesianCandidate(n_components, covariance_type, 0, state=state,
                                  n_weighted=n_weighted)
    if not state.converged:
        logger.warning("the Bayesian mixture did not converge in %d iterations; consider "
                       "increasing model.max_iter or model.tol", max_iter)
    seconds = time.perf_counter() - started
    logger.info("%s: %d of %d components carry weight above %g; %d passes over the data, "
                "%.2f s", candidate.name, n_weighted, n_components, weight_threshold,
                estimator.n_passes_, seconds)
    return SelectionResult([candidate], candidate, estimator, "lower_bound",
                           estimator.n_passes_, seconds)
