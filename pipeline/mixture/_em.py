"""The client-side EM loop: one fused pass over the data per iteration, for many models.

Each pass computes, per chunk and for every model still running, the E-step under the
current parameters and the sufficient statistics of the next M-step (see
:func:`pipeline.mixture._kernels.em_chunk`). The merged statistics (K x D x D numbers
per model) come back to the client, which runs the M-step and checks convergence on the
change of the mean log-likelihood, exactly as scikit-learn does.
"""

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from pipeline.mixture import _covariance, _kernels

logger = logging.getLogger("pipeline.mixture")


@dataclass
class EMState:
    """One model being fitted: its parameters and its history."""

    covariance_type: str
    reg_covar: float
    tol: float
    max_iter: int
    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    lower_bound: float = -np.inf
    lower_bounds: list = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False
    error: str | None = None
    fit_time: float = 0.0
    name: str = ""

    @property
    def n_components(self):
        return self.means.shape[0]

    @property
    def running(self):
        return self.error is None and not self.converged and self.n_iter < self.max_iter

    def parameters(self):
        return (self.weights, self.means, self.covariances, self.precisions_cholesky)


def run_em(data, states, dtype, *, on_iteration=None, on_pass=None, raise_errors=True):
    """Advance every state until it converges, fails or reaches its max_iter.

    Parameters
    ----------
    data : ChunkedData
    states : list of EMState
        Updated in place.
    dtype : numpy dtype
        The compute dtype of the E-step.
    on_iteration : callable, optional
        ``on_iteration(state, change, seconds)`` after each iteration of each state.
    on_pass : callable, optional
        ``on_pass(states)`` after each pass, once every state has been updated (the
        pipeline checkpoints there).
    raise_errors : bool
        If False, a state whose covariance becomes ill-defined stops with ``error`` set
        while the others go on (model selection); if True the ValueError propagates.

    Returns
    -------
    n_passes : int
        Passes over the data this call made.
    """
    eps = float(np.finfo(dtype).eps)
    float32 = dtype == np.float32
    passes = 0
    active = [s for s in states if s.running]
    while active:
        models = [
            _kernels.prepare_model(s.weights, s.means, s.precisions_cholesky,
                                   s.covariance_type, dtype)
            for s in active
        ]
        start = time.perf_counter()
        merged = data.reduce(_kernels.em_chunk, _kernels.combine_sums, models)
        passes += 1
        seconds = time.perf_counter() - start
        for state, model, stats in zip(active, models, merged):
            state.fit_time += seconds
            state.n_iter += 1
            lower_bound = stats["loglik"] / stats["n"]
            try:
                nk, means, covariances = _covariance.m_step(
                    stats, model["shift"], state.covariance_type, state.reg_covar, eps)
                precisions_cholesky = _covariance.precision_cholesky(
                    covariances, state.covariance_type, float32)
            except ValueError as exc:
                if raise_errors:
                    raise
                state.error = str(exc)
                logger.warning("%s stopped at iteration %d: %s", state.name, state.n_iter, exc)
                continue
            state.weights = nk / nk.sum()
            state.means, state.covariances = means, covariances
            state.precisions_cholesky = precisions_cholesky
            change = lower_bound - state.lower_bound
            state.lower_bound = lower_bound
            state.lower_bounds.append(lower_bound)
            if abs(change) < state.tol:
                state.converged = True
            logger.info("%siteration %d: log-likelihood %.6f, change %.3g, %.3f s",
                        f"{state.name} " if state.name else "", state.n_iter,
                        lower_bound, change, seconds)
            if on_iteration is not None:
                on_iteration(state, change, seconds)
        active = [s for s in active if s.running]
        if on_pass is not None:
            on_pass(states)
    return passes
