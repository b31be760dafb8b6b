"""The one fit core: EM states advanced in lock-step over shared passes.

:class:`~pipeline.mixture.GaussianMixture` (its ``n_init`` restarts) and model selection
(a grid of candidates x restarts) both fit through :func:`fit_states`:

1. one describe pass, whose counts of NaN and inf the caller checks (or the chunks'
   descriptions made elsewhere: a run's load scans each file as it reads it);
2. the initialisation of every run, sharing its passes (k-means runs them together);
3. EM: each pass reads every chunk once and gives every still-running state its
   statistics; the state runs its own M-step (:meth:`EMState.update`);
4. the best restart (highest lower bound) of each (n_components, covariance_type).

Errors follow the caller: the estimator raises sklearn's errors, model selection records
a failed initialisation or an ill-defined covariance on that run only and goes on.
"""

import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.mixture import _kernels
from pipeline.mixture._em import EMState
from pipeline.mixture._init import InitJob, initialize

logger = logging.getLogger("pipeline.mixture")


@dataclass
class Start:
    """How one EM run starts: initialised by ``job``, or continued from ``state``.

    ``make_state`` builds the state of an initialised run, called as ``EMState`` is
    (``covariance_type, reg_covar, tol, max_iter, name=..., **params``, the parameters
    :func:`~pipeline.mixture._init.initialize` gave); None means ``EMState``. Any state
    with EMState's protocol (``model``, ``update``, ``running``, ...) is advanced alike.
    """

    name: str = ""
    job: InitJob | None = None
    state: EMState | None = None
    make_state: Callable | None = None


@dataclass
class Fitted:
    """What :func:`fit_states` gave, one entry per start.

    Attributes
    ----------
    states : list of EMState or None
        None where the initialisation failed.
    errors : list of str or None
        Why a run stopped (a failed initialisation or an ill-defined covariance).
    best : list of int
        Index of the best restart of each (n_components, covariance_type), in order of
        first appearance; runs with an error are not candidates.
    describe : dict or None
        The describe pass (rows, total weight, rows of positive weight, ...); None for a
        restored fit, which skipped it.
    """

    states: list
    errors: list
    best: list
    describe: dict | None = None


def fit_states(data, starts, dtype, *, tol, max_iter, check_finite, raise_errors=True,
               restore=None, save=None, on_start=None, on_iteration=None, on_end=None,
               described=None):
    """Initialise and fit every start in lock-step; keep the best restart of each model.

    Parameters
    ----------
    data : ChunkedData
    starts : list of Start
    dtype : numpy dtype
        The compute dtype of the E-step.
    tol, max_iter : float, int
        Of the states initialised here (a given state keeps its own).
    check_finite : callable
        ``check_finite(describe)`` raises on the describe pass's ``n_nan`` / ``n_inf``.
    raise_errors : bool
        True: an initialisation or M-step error propagates. False: it stops that run
        only and is recorded in ``errors``.
    restore : callable, optional
        ``restore()`` -> ``(states, errors, n_passes)`` of an interrupted fit of these
        starts, or None; a restored fit skips the describe pass and initialisation.
    save : callable, optional
        ``save(states, errors, n_passes)`` after initialisation and after every pass.
    on_start, on_end : callable, optional
        ``on_start(index, state)`` before EM, ``on_end(index, state)`` after it.
    on_iteration : callable, optional
        ``on_iteration(state, change, seconds)`` after each iteration of each state.
    described : list of dict, optional
        :func:`~pipeline.mixture._kernels.describe_chunk` of every chunk, in chunk order,
        computed elsewhere (a run's load scans each file as it reads it): merged by the
        describe pass's tree instead of making that pass.

    Returns
    -------
    Fitted
    """
    restored = restore() if restore is not None else None
    describe = None
    if restored is not None:
        states, errors, data.n_passes = restored
    else:
        describe = (data.reduce(_kernels.describe_chunk, _kernels.combine_describe)
                    if described is None else
                    data.merge(described, _kernels.combine_describe))
        check_finite(describe)
        states, errors = _start(data, starts, describe, dtype, tol, max_iter, raise_errors)
        if save is not None:
            save(states, errors, data.n_passes)
    indexed = [(i, state) for i, state in enumerate(states) if state is not None]
    if on_start is not None:
        for i, state in indexed:
            on_start(i, state)
    advance(data, [state for _, state in indexed], dtype, raise_errors=raise_errors,
            on_iteration=on_iteration,
            on_pass=None if save is None else lambda: save(states, errors, data.n_passes))
    if on_end is not None:
        for i, state in indexed:
            on_end(i, state)
    errors = [state.error if state is not None and state.error else error
              for state, error in zip(states, errors)]
    return Fitted(states, errors, best_restarts(states), describe)


def _start(data, starts, describe, dtype, tol, max_iter, raise_errors):
    """The states of ``starts``: given ones as they are, the others initialised together."""
    states = [start.state for start in starts]
    errors = [None] * len(starts)
    pending = [i for i, start in enumerate(starts) if start.state is None]
    if not pending:
        return states, errors
    jobs = [starts[i].job for i in pending]
    logger.info("initialising %d run(s) (%s)", len(jobs),
                ", ".join(sorted({job.init_params for job in jobs})),
                extra={"progress": {"phase": "initialise"}})
    eps = float(np.finfo(dtype).eps)
    started = time.perf_counter()
    if raise_errors:
        initial, failures = initialize(data, jobs, describe, eps), [None] * len(jobs)
    else:
        initial, failures = _initialize_each(data, jobs, describe, eps)
    for i, job, params, failure in zip(pending, jobs, initial, failures):
        if params is not None:
            make_state = starts[i].make_state or EMState
            states[i] = make_state(job.covariance_type, job.reg_covar, tol, max_iter,
                                   name=starts[i].name, **params)
        errors[i] = failure
    logger.info("initialisation (%s) of %d run(s): %.3f s, %d passes so far",
                ", ".join(sorted({job.init_params for job in jobs})), len(jobs),
                time.perf_counter() - started, data.n_passes)
    return states, errors


def _initialize_each(data, jobs, describe, eps):
    """Initialise all jobs together; if that fails, one by one, recording each failure.

    Warnings of the initialisation (k-means finding fewer distinct points than clusters)
    are logged: a run that cannot be fitted is recorded with its error instead.

    Returns
    -------
    params : list of dict or None
    errors : list of str or None
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return initialize(data, jobs, describe, eps), [None] * len(jobs)
        except ValueError:
            logger.warning("an initialisation failed; retrying the runs one by one")
        finally:
            for message in {str(w.message) for w in caught}:
                logger.warning("initialisation: %s", message)
    params, errors = [], []
    for job in jobs:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                params.append(initialize(data, [job], describe, eps)[0])
            errors.append(None)
        except ValueError as exc:
            params.append(None)
            errors.append(f"initialisation: {exc}")
    return params, errors


def advance(data, states, dtype, *, raise_errors=True, on_iteration=None, on_pass=None):
    """Advance every state until it converges, fails or reaches its max_iter.

    One pass over the data per iteration, shared by every state still running; each
    state updates itself from its statistics.

    Parameters
    ----------
    data : ChunkedData
    states : list of EMState
        Updated in place.
    dtype : numpy dtype
        The compute dtype of the E-step.
    raise_errors : bool
        If False, a state whose covariance becomes ill-defined stops with ``error`` set
        while the others go on; if True the ValueError propagates.
    on_iteration : callable, optional
        ``on_iteration(state, change, seconds)`` after each iteration of each state.
    on_pass : callable, optional
        ``on_pass()`` after each pass, once every state has been updated.
    """
    active = [s for s in states if s.running]
    if active:
        logger.info("EM: %d run(s), max_iter %d", len(active),
                    max(s.max_iter - s.n_iter for s in active),
                    extra={"progress": {"phase": "EM", "total": max(
                        s.max_iter - s.n_iter for s in active)}})
    while active:
        models = [state.model(dtype) for state in active]
        start = time.perf_counter()
        merged = data.reduce(_kernels.em_chunk, _kernels.combine_sums, models)
        seconds = time.perf_counter() - start
        for state, model, stats in zip(active, models, merged):
            state.fit_time += seconds
            try:
                change = state.update(stats, model, dtype)
            except ValueError as exc:
                if raise_errors:
                    raise
                state.error = str(exc)
                logger.warning("%s stopped at iteration %d: %s", state.name, state.n_iter, exc)
                continue
            # every run's iteration for -v; the leading run's below for everyone
            if len(active) > 1:
                logger.debug("%s iteration %d: log-likelihood %.6f, change %.3g, %.3f s",
                             state.name, state.n_iter, state.lower_bound, change, seconds)
            if on_iteration is not None:
                on_iteration(state, change, seconds)
        _log_pass(active, seconds)
        active = [s for s in active if s.running]
        if on_pass is not None:
            on_pass()


def _log_pass(active, seconds):
    """One line per pass: the leading run (highest log-likelihood) and how many go on."""
    fitted = [s for s in active if s.error is None]
    if not fitted:
        return
    leader = max(fitted, key=lambda s: s.lower_bound)
    running = sum(s.running for s in active)
    others = f" ({running} of {len(active)} runs go on)" if len(active) > 1 else ""
    history = leader.lower_bounds
    change = history[-1] - history[-2] if len(history) > 1 else float("inf")
    logger.info("%siteration %d: log-likelihood %.6f, change %.3g, %.3f s%s",
                f"{leader.name} " if leader.name else "", leader.n_iter, leader.lower_bound,
                change, seconds, others,
                extra={"progress": {"status": f"{running} running, best "
                                              f"{leader.name or 'll'} {leader.lower_bound:.4f}"}})


def best_restarts(states):
    """Index of the highest lower bound of each (n_components, covariance_type).

    As scikit-learn's ``n_init``; the first restart wins a tie. States that are None
    or stopped with an error are left out.
    """
    best = {}
    for i, state in enumerate(states):
        if state is None or state.error is not None:
            continue
        key = (state.n_components, state.covariance_type)
        if key not in best or state.lower_bound > states[best[key]].lower_bound:
            best[key] = i
    return list(best.values())


def log_likelihoods(data, states, dtype):
    """Total log-likelihood of the data under each state's parameters (one pass)."""
    logger.info("final pass: the log-likelihood of %d run(s) under their parameters",
                len(states), extra={"progress": {"phase": "final pass", "total": 1}})
    stats = data.reduce(_kernels.em_chunk, _kernels.combine_sums,
                        [state.model(dtype) for state in states])
    return [float(s["loglik"]) for s in stats]
