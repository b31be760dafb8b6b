"""The variational state: one Bayesian mixture being fitted, with scikit-learn's updates.

A :class:`VariationalState` has the protocol of :class:`~pipeline.mixture._em.EMState`
(``model``, ``update``, ``running``, ``to_dict`` / ``from_dict``, ``lower_bound(s)``,
``n_iter``, ``converged``), so the fit core advances it over the same passes, with the
same per-chunk kernel and statistics.

How the variational E-step maps onto the kernels. scikit-learn's
``BayesianGaussianMixture._estimate_weighted_log_prob`` is, per row and component,

    log N(x | m_k, (nu_k W_k)^-1) + E[log pi_k] - D/2 log nu_k
        + 1/2 (E[log |Lambda_k|] - D log 2 + ... - D / beta_k)

that is a Gaussian log-density under the means and the precision Cholesky factors of
``covariances_`` (W normalised by the degrees of freedom nu, as sklearn keeps it), plus
terms that are constant per component. The kernels compute ``-1/2 mahalanobis + const``
with ``const`` per component (:func:`pipeline.mixture._kernels.prepare_model`): the model
of a state is the Gaussian one with ``const`` replaced by the variational constant
(:func:`variational_model`). Log-sum-exp then gives the variational responsibilities, and
the same ``nk, s, S`` are those of sklearn's ``_estimate_gaussian_parameters``: the
variational M-step runs on the client from them (:meth:`VariationalState.estimate`).

The lower bound (sklearn's ``_compute_lower_bound``) needs ``sum r log r``, which the
kernels do not sum. Since ``log r_k = wlp_k - log p(x)`` and the responsibilities of a
row sum to 1, it is ``sum_k const_k nk_k - 1/2 sum_k tr(P_k^T S_k P_k) - loglik`` with
``S_k`` the scatter about the model's shift (its means) and ``P_k`` its precision factors:
merged statistics only, computed on the client.
"""

import math
from dataclasses import dataclass, field, fields

import numpy as np

from pipeline.mixture import _covariance, _kernels
from pipeline.mixture._em import FitProgress

PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")

# the fitted parameters, in the order of sklearn's _get_parameters
PARAMETERS = ("weight_concentration", "mean_precision", "means", "degrees_of_freedom",
              "covariances", "precisions_cholesky")
# the priors' arrays (the rest of a prior is a float)
PRIOR_ARRAYS = ("mean_prior", "covariance_prior")


# ----------------------------------------------------------- sklearn's functions
# scipy is imported where used: workers import this module for scatter_chunk only.


def _log_dirichlet_norm(dirichlet_concentration):
    """Log of the normalisation of a Dirichlet distribution (as sklearn's)."""
    from scipy.special import gammaln

    return gammaln(np.sum(dirichlet_concentration)) - np.sum(gammaln(dirichlet_concentration))


def _log_wishart_norm(degrees_of_freedom, log_det_precisions_chol, n_features):
    """Log of the normalisation of the Wishart distributions, without the log pi term
    (as sklearn's): shape (n_components,), or (1,) for a scalar ``degrees_of_freedom``."""
    from scipy.special import gammaln

    return -(
        degrees_of_freedom * log_det_precisions_chol
        + degrees_of_freedom * n_features * 0.5 * math.log(2.0)
        + np.sum(gammaln(0.5 * (degrees_of_freedom - np.arange(n_features)[:, np.newaxis])),
                 0)
    )


def scatter_chunk(X, shift):
    """Rows, ``sum (x - shift)`` and ``sum (x - shift)(x - shift)^T`` of one chunk, as a
    one-component statistics dict (for the empirical covariance prior)."""
    resp = np.ones((X.shape[0], 1))
    return [_kernels.resp_chunk(X, resp, np.asarray(shift, np.float64)[None], "full")]


def empirical_covariance(stats, shift):
    """``np.cov(X.T)`` (ddof=1) from :func:`scatter_chunk`'s merged statistics."""
    n, s = stats["n"], stats["s"][0]
    scatter = stats["S"][0] - np.outer(s, s) / n
    return np.atleast_2d(scatter / (n - 1))


# ------------------------------------------------------------------- priors


@dataclass(frozen=True)
class Priors:
    """The priors of a fit, as sklearn's fitted ``*_prior_`` attributes hold them."""

    weight_concentration_prior_type: str
    weight_concentration_prior: float
    mean_precision_prior: float
    mean_prior: np.ndarray  # (n_features,)
    degrees_of_freedom_prior: float
    covariance_prior: np.ndarray  # (D, D) full/tied, (D,) diag, () spherical

    def to_dict(self):
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        arrays = {name: np.asarray(values.pop(name), np.float64) for name in PRIOR_ARRAYS}
        return {k: v if isinstance(v, str) else float(v) for k, v in values.items()}, arrays


# ------------------------------------------------------------------ E-step


def expected_log_weights(weight_concentration, prior_type):
    """E[log pi_k] under the variational Dirichlet (process): sklearn's
    ``_estimate_log_weights``."""
    from scipy.special import digamma

    if prior_type == "dirichlet_process":
        digamma_sum = digamma(weight_concentration[0] + weight_concentration[1])
        digamma_a = digamma(weight_concentration[0])
        digamma_b = digamma(weight_concentration[1])
        return (digamma_a - digamma_sum
                + np.hstack((0, np.cumsum(digamma_b - digamma_sum)[:-1])))
    return digamma(weight_concentration) - digamma(np.sum(weight_concentration))


def mixture_weights(weight_concentration, prior_type):
    """The expected weights: sklearn's ``weights_`` (``_set_parameters``)."""
    if prior_type == "dirichlet_process":
        weight_dirichlet_sum = weight_concentration[0] + weight_concentration[1]
        tmp = weight_concentration[1] / weight_dirichlet_sum
        weights = (weight_concentration[0] / weight_dirichlet_sum
                   * np.hstack((1, np.cumprod(tmp[:-1]))))
        return weights / np.sum(weights)
    return weight_concentration / np.sum(weight_concentration)


def variational_model(weight_concentration, mean_precision, means, degrees_of_freedom,
                      precisions_cholesky, covariance_type, prior_type, dtype):
    """The kernels' model of the variational E-step (see the module docstring).

    The Gaussian model of ``means`` and ``precisions_cholesky`` (which whiten with the
    normalised precisions nu_k W_k), whose per-component ``const`` is sklearn's
    ``_estimate_log_prob + _estimate_log_weights`` without the Mahalanobis term.
    """
    from scipy.special import digamma

    means = np.asarray(means, np.float64)
    n_features = means.shape[1]
    weights = mixture_weights(weight_concentration, prior_type)
    model = _kernels.prepare_model(weights, means, precisions_cholesky, covariance_type, dtype)
    log_det = _covariance.log_det_cholesky(precisions_cholesky, covariance_type, n_features)
    log_lambda = n_features * np.log(2.0) + np.sum(
        digamma(0.5 * (degrees_of_freedom - np.arange(0, n_features)[:, np.newaxis])), 0)
    const = (expected_log_weights(weight_concentration, prior_type) + log_det
             - 0.5 * n_features * math.log(2 * math.pi)
             - 0.5 * n_features * np.log(degrees_of_freedom)
             + 0.5 * (log_lambda - n_features / mean_precision))
    model["const"] = np.asarray(const, np.float64) * np.ones(means.shape[0])
    return model


def _sum_mahalanobis(S, prec_chol, covariance_type):
    """sum over rows and components of r (x - shift_k)^T P_k P_k^T (x - shift_k)."""
    P = np.asarray(prec_chol, np.float64)
    if covariance_type == "full":
        return float(np.einsum("kia,kij,kja->", P, S, P))
    if covariance_type == "tied":  # S summed over components, P shared
        return float(np.einsum("ia,ij,ja->", P, S, P))
    if covariance_type == "diag":
        return float(np.sum(P**2 * S))
    return float(np.sum(P[:, None] ** 2 * S))


def sum_resp_log_resp(stats, model):
    """sum r log r of the pass, from its merged statistics (see the module docstring)."""
    weighted = float(model["const"] @ stats["nk"])
    mahalanobis = _sum_mahalanobis(stats["S"], model["prec_chol"], model["covariance_type"])
    return weighted - 0.5 * mahalanobis - float(stats["loglik"])


# ------------------------------------------------------------------ the state


@dataclass
class VariationalState(FitProgress):
    """One variational mixture being fitted: its priors, parameters and history."""

    covariance_type: str
    reg_covar: float
    tol: float
    max_iter: int
    priors: Priors | None
    weight_concentration: np.ndarray  # (2, K) dirichlet_process, (K,) dirichlet_distribution
    mean_precision: np.ndarray
    means: np.ndarray
    degrees_of_freedom: np.ndarray  # (K,), () for tied
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    lower_bound: float = -np.inf
    lower_bounds: list = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False
    error: str | None = None
    fit_time: float = 0.0
    name: str = ""

    @classmethod
    def initial(cls, covariance_type, reg_covar, tol, max_iter, *, priors, n_samples, eps,
                name="", weights, means, covariances, precisions_cholesky=None):
        """The state after sklearn's ``_initialize``: the variational M-step of the initial
        responsibilities, given by their Gaussian estimates (``weights`` nk / n_samples,
        ``means`` xk, ``covariances`` sk, as :func:`~pipeline.mixture._init.initialize`
        gives them)."""
        state = cls(covariance_type, reg_covar, tol, max_iter, priors, None, None, None,
                    None, None, None, name=name)
        nk = np.asarray(weights, np.float64) * n_samples
        state._set(state.estimate(nk, np.asarray(means, np.float64),
                                  np.asarray(covariances, np.float64),
                                  eps > np.finfo(np.float64).eps))
        return state

    def parameters(self):
        """sklearn's ``_get_parameters``: weight_concentration a tuple for the process."""
        params = tuple(getattr(self, name) for name in PARAMETERS)
        if self.priors.weight_concentration_prior_type == "dirichlet_process":
            params = (tuple(self.weight_concentration),) + params[1:]
        return params

    def model(self, dtype):
        """The E-step model of the current variational parameters, in ``dtype``."""
        return variational_model(
            self.weight_concentration, self.mean_precision, self.means,
            self.degrees_of_freedom, self.precisions_cholesky, self.covariance_type,
            self.priors.weight_concentration_prior_type, dtype)

    # ---------------------------------------------------------------- M-step

    def estimate(self, nk, xk, sk, float32=False):
        """sklearn's ``_estimate_weights``, ``_estimate_means``, ``_estimate_precisions``
        from the Gaussian estimates ``nk`` (with its 10 eps), ``xk``, ``sk``.

        Returns the new parameters (in :data:`PARAMETERS` order); raises the
        ill-defined-covariance ValueError as sklearn does.
        """
        p = self.priors
        if p.weight_concentration_prior_type == "dirichlet_process":
            weight_concentration = np.stack([
                1.0 + nk,
                p.weight_concentration_prior + np.hstack((np.cumsum(nk[::-1])[-2::-1], 0))])
        else:
            weight_concentration = p.weight_concentration_prior + nk
        mean_precision = p.mean_precision_prior + nk
        means = ((p.mean_precision_prior * p.mean_prior + nk[:, np.newaxis] * xk)
                 / mean_precision[:, np.newaxis])
        degrees_of_freedom, covariances = _WISHART[self.covariance_type](
            p, nk, xk, sk, mean_precision)
        precisions_cholesky = _covariance.precision_cholesky(covariances, self.covariance_type,
                                                             float32)
        return (weight_concentration, mean_precision, means, degrees_of_freedom, covariances,
                precisions_cholesky)

    def _set(self, params):
        for name, value in zip(PARAMETERS, params, strict=True):
            setattr(self, name, value)

    def update(self, stats, model, dtype):
        """One variational iteration from the pass's statistics under ``model``.

        Returns the change of the lower bound (sklearn's, a total over the rows).

        Raises
        ------
        ValueError
            A covariance is ill-defined (the parameters stay as they were; ``n_iter``
            counts the failed iteration).
        """
        self.n_iter += 1
        eps = float(np.finfo(dtype).eps)
        entropy_term = sum_resp_log_resp(stats, model)
        nk, xk, sk = _covariance.m_step(stats, model["shift"], self.covariance_type,
                                        self.reg_covar, eps)
        self._set(self.estimate(nk, xk, sk, dtype == np.float32))
        return self._record(self._lower_bound(entropy_term))

    def _lower_bound(self, sum_resp_log_resp):
        """sklearn's ``_compute_lower_bound`` under the current parameters."""
        from scipy.special import betaln

        p = self.priors
        n_features = self.means.shape[1]
        log_det_precisions_chol = _covariance.log_det_cholesky(
            self.precisions_cholesky, self.covariance_type, n_features
        ) - 0.5 * n_features * np.log(self.degrees_of_freedom)
        log_wishart = _log_wishart_norm(self.degrees_of_freedom, log_det_precisions_chol,
                                        n_features)
        if self.covariance_type == "tied":
            log_wishart = self.n_components * float(np.ravel(log_wishart)[0])
        else:
            log_wishart = float(np.sum(log_wishart))
        if p.weight_concentration_prior_type == "dirichlet_process":
            log_norm_weight = -np.sum(betaln(self.weight_concentration[0],
                                             self.weight_concentration[1]))
        else:
            log_norm_weight = _log_dirichlet_norm(self.weight_concentration)
        return float(-sum_resp_log_resp - log_wishart - log_norm_weight
                     - 0.5 * n_features * np.sum(np.log(self.mean_precision)))

    # --------------------------------------------------------------- storage

    def to_dict(self):
        """``(fields, arrays)``: a JSON-able dict and a dict of arrays (priors included);
        :meth:`from_dict` rebuilds the state bit for bit."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        arrays = {name: np.asarray(values.pop(name), np.float64) for name in PARAMETERS}
        prior_values, prior_arrays = values.pop("priors").to_dict()
        arrays.update(prior_arrays)
        values.update(
            priors=prior_values, reg_covar=float(self.reg_covar), tol=float(self.tol),
            max_iter=int(self.max_iter), lower_bound=float(self.lower_bound),
            lower_bounds=[float(v) for v in self.lower_bounds], n_iter=int(self.n_iter),
            converged=bool(self.converged), fit_time=float(self.fit_time))
        return values, arrays

    @classmethod
    def from_dict(cls, values, arrays):
        """The state :meth:`to_dict` gave ``(values, arrays)`` for."""
        values = dict(values)
        priors = Priors(**values.pop("priors"), **{name: arrays[name] for name in PRIOR_ARRAYS})
        return cls(**values, priors=priors, **{name: arrays[name] for name in PARAMETERS})


# ------------------------------------------------ Wishart updates, per covariance type
# (p, nk, xk, sk, mean_precision) -> (degrees_of_freedom, covariances), sklearn's
# _estimate_wishart_* (Bishop's 10.63 with nu_k = nu_0 + N_k; covariances normalised by nu).


def _wishart_full(p, nk, xk, sk, mean_precision):
    degrees_of_freedom = p.degrees_of_freedom_prior + nk
    diff = xk - p.mean_prior
    covariances = (p.covariance_prior + nk[:, None, None] * sk
                   + (nk * p.mean_precision_prior / mean_precision)[:, None, None]
                   * np.einsum("ki,kj->kij", diff, diff))
    return degrees_of_freedom, covariances / degrees_of_freedom[:, np.newaxis, np.newaxis]


def _wishart_tied(p, nk, xk, sk, mean_precision):
    n_components = xk.shape[0]
    degrees_of_freedom = p.degrees_of_freedom_prior + nk.sum() / n_components
    diff = xk - p.mean_prior
    covariances = (p.covariance_prior + sk * nk.sum() / n_components
                   + p.mean_precision_prior / n_components
                   * np.dot((nk / mean_precision) * diff.T, diff))
    return np.float64(degrees_of_freedom), covariances / degrees_of_freedom


def _wishart_diag(p, nk, xk, sk, mean_precision):
    degrees_of_freedom = p.degrees_of_freedom_prior + nk
    diff = xk - p.mean_prior
    covariances = p.covariance_prior + nk[:, np.newaxis] * (
        sk + (p.mean_precision_prior / mean_precision)[:, np.newaxis] * np.square(diff))
    return degrees_of_freedom, covariances / degrees_of_freedom[:, np.newaxis]


def _wishart_spherical(p, nk, xk, sk, mean_precision):
    degrees_of_freedom = p.degrees_of_freedom_prior + nk
    diff = xk - p.mean_prior
    covariances = p.covariance_prior + nk * (
        sk + p.mean_precision_prior / mean_precision * np.mean(np.square(diff), 1))
    return degrees_of_freedom, covariances / degrees_of_freedom


_WISHART = {"full": _wishart_full, "tied": _wishart_tied, "diag": _wishart_diag,
            "spherical": _wishart_spherical}
