"""The EM state: one model being fitted, its parameters, its history and its M-step.

A state does not read data. The fit core (:mod:`pipeline.mixture._fit`) schedules the
passes: it asks every running state for its E-step model (:meth:`EMState.model`), makes
one pass over the data for all of them (:func:`pipeline.mixture._kernels.em_chunk`),
and hands each state its merged statistics (K x D x D numbers), from which the state
runs its M-step on the client (:meth:`EMState.update`). Convergence is the change of
the mean log-likelihood, exactly as in scikit-learn.
"""

from dataclasses import dataclass, field, fields

import numpy as np

from pipeline.mixture import _covariance, _kernels

# the parameters, in the order of FittedParameters._set_fitted
PARAMETERS = ("weights", "means", "covariances", "precisions_cholesky")


class FitProgress:
    """What every state of the fit core has in common (EMState, VariationalState): the
    fields ``max_iter``, ``tol``, ``lower_bound(s)``, ``n_iter``, ``converged``, ``error``
    and ``means`` are their own; the bookkeeping of an iteration is here."""

    @property
    def n_components(self):
        return self.means.shape[0]

    @property
    def running(self):
        return self.error is None and not self.converged and self.n_iter < self.max_iter

    def history(self):
        """The fit's history, as keywords of ``GaussianMixture._from_parameters`` and
        ``FittedMixture``."""
        return dict(converged=self.converged, n_iter=self.n_iter,
                    lower_bound=self.lower_bound, lower_bounds=self.lower_bounds)

    def _record(self, lower_bound):
        """Take an iteration's lower bound; converged when it changed less than ``tol``.
        Returns the change."""
        change = lower_bound - self.lower_bound
        self.lower_bound = lower_bound
        self.lower_bounds.append(lower_bound)
        if abs(change) < self.tol:
            self.converged = True
        return change


@dataclass
class EMState(FitProgress):
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

    def __post_init__(self):
        # float64 whatever was given (a warm start from float32 attributes): the M-step's
        for name in PARAMETERS:
            setattr(self, name, np.asarray(getattr(self, name), np.float64))

    def parameters(self):
        return tuple(getattr(self, name) for name in PARAMETERS)

    def model(self, dtype):
        """The E-step model of the current parameters, for one pass in ``dtype``."""
        return _kernels.prepare_model(self.weights, self.means, self.precisions_cholesky,
                                      self.covariance_type, dtype)

    def update(self, stats, model, dtype):
        """One EM iteration from the pass's merged statistics under ``model``.

        The statistics' log-likelihood is that of the current parameters; the M-step
        gives the next ones. Returns the change of the mean log-likelihood.

        Raises
        ------
        ValueError
            The covariance of a component is ill-defined (the parameters stay as they
            were; ``n_iter`` counts the failed iteration).
        """
        self.n_iter += 1
        lower_bound = stats["loglik"] / stats["n"]
        nk, means, covariances = _covariance.m_step(
            stats, model["shift"], self.covariance_type, self.reg_covar,
            float(np.finfo(dtype).eps))
        precisions_cholesky = _covariance.precision_cholesky(
            covariances, self.covariance_type, dtype == np.float32)
        self.weights = nk / nk.sum()
        self.means, self.covariances = means, covariances
        self.precisions_cholesky = precisions_cholesky
        return self._record(lower_bound)

    def to_dict(self):
        """``(fields, arrays)``: a JSON-able dict and a dict of the parameter arrays.

        :meth:`from_dict` rebuilds the state bit for bit (JSON keeps every float exactly).
        """
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        arrays = {name: np.asarray(values.pop(name)) for name in PARAMETERS}
        values.update(
            reg_covar=float(self.reg_covar), tol=float(self.tol), max_iter=int(self.max_iter),
            lower_bound=float(self.lower_bound),
            lower_bounds=[float(v) for v in self.lower_bounds], n_iter=int(self.n_iter),
            converged=bool(self.converged), fit_time=float(self.fit_time))
        return values, arrays

    @classmethod
    def from_dict(cls, values, arrays):
        """The state :meth:`to_dict` gave ``(values, arrays)`` for."""
        return cls(**values, **{name: arrays[name] for name in PARAMETERS})
