"""Everything that differs between covariance types, in one table: :data:`COVARIANCES`.

One :class:`CovarianceType` per type names its functions, which have parallel names
here (``_covariances_full``, ``_covariances_tied``, ...). Most of them work on small
arrays on the client (K x D x D at most): parameter shapes, free parameters, the M-step
from merged statistics, the precision Cholesky factors and what follows from them, and
the factors the kernels are prepared with. Two kinds run inside the kernels of
:mod:`pipeline.mixture._kernels`, once per sub-block of rows: the row features of the
expanded E-step (here) and the statistics accumulators (in
:mod:`pipeline.mixture._statistics`). Adding a type is adding one entry to the table,
with its functions here and, if none of the existing ones fits, its accumulator.

Statistics of one model (a dict of float64 arrays)::

    n       : float, rows seen
    loglik  : float, sum over rows of log p(x)
    nk      : (K,), sum of responsibilities
    s       : (K, D), sum r (x - shift_k)
    S       : full (K, D, D), sum r (x - shift_k)(x - shift_k)^T
              tied (D, D), the sum of those over the components
              diag/spherical (K, D), sum r (x - shift_k)^2

They are accumulated in float64 about each component's shift (its current mean), so
nothing here ever needs the data on the client.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.mixture._statistics import (
    DiagExpandedStatistics,
    DiagStatistics,
    FullStatistics,
    TiedExpandedStatistics,
    TiedStatistics,
    summed_scatter,
)


@dataclass(frozen=True)
class ExpandedForm:
    """The E-step as one product ``coef @ features`` (see :mod:`._kernels`), float64.

    coefficients : (prec_chol, offsets (K, D)) -> (coef (K, F), whitened offsets (K, D))
    block_rows : D -> rows of the float64 buffer the kernel writes ``[x - center; 1]``
        into (its first D + 1 rows); ``features`` may use the rest.
    features : (block, prec_chol, work) -> (F, rows), the row features of the E-step.
    statistics : the accumulator used with this form (about the common center).
    """

    coefficients: Callable
    block_rows: Callable
    features: Callable
    statistics: type


@dataclass(frozen=True)
class CovarianceType:
    """The facts of one covariance type; every function takes this type's arrays.

    shape : (K, D) -> shape of the covariances, precisions and their Cholesky factors.
    n_parameters : (K, D) -> free parameters of the covariances.
    matrix : whether those are D x D matrices (full, tied) rather than variances.
    covariances : (stats, shift, reg_covar, eps) -> (nk, means, covariances), the M-step.
    precision_cholesky : (covariances, float32) -> precision Cholesky factors.
    precision_cholesky_from_precisions, precisions_from_cholesky,
    covariances_from_cholesky : conversions between them.
    log_det_cholesky : (prec_chol, D) -> log det of the factors, (K,) or scalar.
    per_component_matrices : (array of this type, K, D) -> (K, D, D), one D x D matrix
        per component (diagonal for diag, spherical); the kernels' whitening factors P_k.
    statistics : the accumulator of the whitening E-step (about each component's mean).
    expanded : the expanded E-step, or None where it does not apply (full).
    """

    shape: Callable
    n_parameters: Callable
    matrix: bool
    covariances: Callable
    precision_cholesky: Callable
    precision_cholesky_from_precisions: Callable
    precisions_from_cholesky: Callable
    covariances_from_cholesky: Callable
    log_det_cholesky: Callable
    per_component_matrices: Callable
    statistics: type
    expanded: ExpandedForm | None


ILL_DEFINED_COVARIANCE = (
    "Fitting the mixture model failed because some components have "
    "ill-defined empirical covariance (for instance caused by singleton "
    "or collapsed samples). Try to decrease the number of components, "
    "increase reg_covar, or scale the input data."
)
FLOAT32_HINT = (
    " The numerical accuracy can also be improved by passing float64"
    " data instead of float32."
)


# ---------------------------------------------------------------- M-step


def _centered_means(stats, shift, eps):
    """nk (with sklearn's 10*eps), means, and d = means - shift."""
    nk_raw = stats["nk"]
    nk = nk_raw + 10 * eps
    # sum r x = s + shift * nk_raw, and sklearn divides it by nk (with the eps)
    means = shift * (nk_raw / nk)[:, None] + stats["s"] / nk[:, None]
    return nk_raw, nk, means, means - shift


def _scatter_full(stats, nk_raw, d):
    """sum r (x - m)(x - m)^T per component, from moments about the shift."""
    s, S = stats["s"], stats["S"]
    sd = np.einsum("ki,kj->kij", s, d)
    return S - sd - sd.transpose(0, 2, 1) + nk_raw[:, None, None] * np.einsum("ki,kj->kij", d, d)


def _scatter_diag(stats, nk_raw, d):
    return stats["S"] - 2.0 * d * stats["s"] + nk_raw[:, None] * d * d


def _covariances_full(stats, shift, reg_covar, eps):
    nk_raw, nk, means, d = _centered_means(stats, shift, eps)
    covariances = _scatter_full(stats, nk_raw, d) / nk[:, None, None]
    D = means.shape[1]
    covariances[:, np.arange(D), np.arange(D)] += reg_covar
    return nk, means, covariances


def _inflation(nk_raw, means, eps):
    """(nk - nk_raw) m_k, (K, D), with nk as sklearn rounds it in the compute dtype.

    sklearn's diag and tied estimates are E[x x^T] - m m^T with nk inflated by 10 eps,
    which exceeds the scatter about the mean by (nk - nk_raw) m m^T / nk (exactly). The
    inflation survives rounding only for small nk (below ~16 in float64, ~32 in float32):
    it does nothing but where a component collapses onto one row, and there it is what
    keeps sklearn's variance positive (~10 eps |m|^2) instead of round-off about 0. With
    it, such a fit goes on with reg_covar=0 as in sklearn, and a component collapsed at
    the origin still fails as there.
    """
    dtype = np.float32 if eps > np.finfo(np.float64).eps else np.float64
    nk_rounded = nk_raw.astype(dtype)
    inflation = (nk_rounded + dtype(10 * eps)) - nk_rounded
    return inflation.astype(np.float64)[:, None] * means


def _covariances_tied(stats, shift, reg_covar, eps):
    nk_raw, nk, means, d = _centered_means(stats, shift, eps)
    covariance = (summed_scatter(stats["S"], stats["s"], nk_raw, d)
                  + _inflation(nk_raw, means, eps).T @ means) / nk.sum()
    covariance.flat[:: means.shape[1] + 1] += reg_covar
    return nk, means, covariance


def _covariances_diag(stats, shift, reg_covar, eps):
    nk_raw, nk, means, d = _centered_means(stats, shift, eps)
    scatter = _scatter_diag(stats, nk_raw, d) + _inflation(nk_raw, means, eps) * means
    return nk, means, scatter / nk[:, None] + reg_covar


def _covariances_spherical(stats, shift, reg_covar, eps):
    nk, means, covariances = _covariances_diag(stats, shift, reg_covar, eps)
    return nk, means, covariances.mean(axis=1)


# ------------------------------------------------------- precision Cholesky


def _error_message(float32):
    return ILL_DEFINED_COVARIANCE + (FLOAT32_HINT if float32 else "")


def _precision_cholesky_tied(covariance, float32):
    from scipy import linalg  # client-side only: the workers' kernels never need scipy

    try:
        cov_chol = linalg.cholesky(covariance, lower=True)
    except linalg.LinAlgError:
        raise ValueError(_error_message(float32)) from None
    D = covariance.shape[0]
    return linalg.solve_triangular(cov_chol, np.eye(D), lower=True).T


def _precision_cholesky_full(covariances, float32):
    return np.stack([_precision_cholesky_tied(c, float32) for c in covariances])


def _precision_cholesky_diag(covariances, float32):
    if np.any(covariances <= 0.0) or not np.all(np.isfinite(covariances)):
        raise ValueError(_error_message(float32))
    return 1.0 / np.sqrt(covariances)


def _flipudlr(a):
    return a[..., ::-1, ::-1]


# The upper-triangular factor U with precision = U U^T (sklearn #26415).
def _precision_cholesky_from_precisions_tied(precision):
    from scipy import linalg

    return _flipudlr(linalg.cholesky(_flipudlr(precision), lower=True))


def _precision_cholesky_from_precisions_full(precisions):
    return np.stack([_precision_cholesky_from_precisions_tied(p) for p in precisions])


def _precision_cholesky_from_precisions_diag(precisions):
    return np.sqrt(precisions)


def _precisions_from_cholesky_full(precisions_cholesky):
    return np.matmul(precisions_cholesky, precisions_cholesky.transpose(0, 2, 1))


def _precisions_from_cholesky_tied(precision_cholesky):
    return precision_cholesky @ precision_cholesky.T


def _precisions_from_cholesky_diag(precisions_cholesky):
    return precisions_cholesky**2


def _covariances_from_cholesky_tied(precision_cholesky):
    return np.linalg.inv(precision_cholesky @ precision_cholesky.T)


def _covariances_from_cholesky_full(precisions_cholesky):
    return np.stack([_covariances_from_cholesky_tied(u) for u in precisions_cholesky])


def _covariances_from_cholesky_diag(precisions_cholesky):
    return 1.0 / precisions_cholesky**2


def _log_det_cholesky_full(precisions_cholesky, n_features):
    return np.log(np.diagonal(precisions_cholesky, axis1=1, axis2=2)).sum(axis=1)


def _log_det_cholesky_tied(precision_cholesky, n_features):
    return np.log(np.diag(precision_cholesky)).sum()


def _log_det_cholesky_diag(precisions_cholesky, n_features):
    return np.log(precisions_cholesky).sum(axis=1)


def _log_det_cholesky_spherical(precisions_cholesky, n_features):
    return n_features * np.log(precisions_cholesky)


# ---------------------------------------- per-component matrices, expanded form


def _per_component_matrices_full(array, n_components, n_features):
    return array


def _per_component_matrices_tied(array, n_components, n_features):
    return np.broadcast_to(array, (n_components, n_features, n_features))


def _per_component_matrices_diag(array, n_components, n_features):
    return array[:, :, None] * np.eye(n_features)


def _per_component_matrices_spherical(array, n_components, n_features):
    return array[:, None, None] * np.eye(n_features)


def _expanded_coefficients_tied(precision_cholesky, offsets):
    """Features ``[z; 1; |z|^2]`` with ``z = P^T x``."""
    whitened = offsets @ precision_cholesky
    coef = np.hstack([-2.0 * whitened, (whitened**2).sum(axis=1, keepdims=True),
                      np.ones((offsets.shape[0], 1))])
    return coef, whitened


def _expanded_coefficients_diag(precisions_cholesky, offsets):
    """Features ``[x; 1; x^2]``."""
    precision = precisions_cholesky**2 * np.ones(offsets.shape[1])
    whitened = offsets * np.sqrt(precision)
    coef = np.hstack([-2.0 * precision * offsets,
                      (precision * offsets**2).sum(axis=1, keepdims=True), precision])
    return coef, whitened


def _expanded_coefficients_spherical(precisions_cholesky, offsets):
    return _expanded_coefficients_diag(precisions_cholesky[:, None], offsets)


# -------------------------------- expanded features (inside the kernels, per sub-block)
# ``block``: the float64 buffer of ``block_rows`` rows whose first D + 1 rows hold
# ``[x - center; 1]`` (rows as columns); ``work``: the thread's workspace (see _kernels).


def _expanded_features_tied(block, precision_cholesky, work):
    """``[z; 1; |z|^2]`` with ``z = P^T (x - center)``: (D + 2, rows)."""
    n_features = block.shape[0] - 1
    features = work.get("tied", (n_features + 2, block.shape[1]), np.float64)
    z = features[:n_features]
    np.dot(precision_cholesky.T.astype(np.float64, copy=False), block[:n_features], out=z)
    features[n_features] = 1.0
    np.einsum("dn,dn->n", z, z, out=features[n_features + 1])
    return features


def _expanded_features_diag(block, precisions_cholesky, work):
    """``[x; 1; x^2]`` (x - center): the block itself, built once for the E-step and the
    statistics."""
    n_features = (block.shape[0] - 1) // 2
    np.multiply(block[:n_features], block[:n_features], out=block[n_features + 1 :])
    return block


# ------------------------------------------------------------------ the table

_EXPANDED_TIED = ExpandedForm(_expanded_coefficients_tied, lambda D: D + 1,
                              _expanded_features_tied, TiedExpandedStatistics)

COVARIANCES = {
    "full": CovarianceType(
        shape=lambda K, D: (K, D, D),
        n_parameters=lambda K, D: K * D * (D + 1) / 2.0,
        matrix=True,
        covariances=_covariances_full,
        precision_cholesky=_precision_cholesky_full,
        precision_cholesky_from_precisions=_precision_cholesky_from_precisions_full,
        precisions_from_cholesky=_precisions_from_cholesky_full,
        covariances_from_cholesky=_covariances_from_cholesky_full,
        log_det_cholesky=_log_det_cholesky_full,
        per_component_matrices=_per_component_matrices_full,
        statistics=FullStatistics,
        expanded=None,
    ),
    "tied": CovarianceType(
        shape=lambda K, D: (D, D),
        n_parameters=lambda K, D: D * (D + 1) / 2.0,
        matrix=True,
        covariances=_covariances_tied,
        precision_cholesky=_precision_cholesky_tied,
        precision_cholesky_from_precisions=_precision_cholesky_from_precisions_tied,
        precisions_from_cholesky=_precisions_from_cholesky_tied,
        covariances_from_cholesky=_covariances_from_cholesky_tied,
        log_det_cholesky=_log_det_cholesky_tied,
        per_component_matrices=_per_component_matrices_tied,
        statistics=TiedStatistics,
        expanded=_EXPANDED_TIED,
    ),
    "diag": CovarianceType(
        shape=lambda K, D: (K, D),
        n_parameters=lambda K, D: K * D,
        matrix=False,
        covariances=_covariances_diag,
        precision_cholesky=_precision_cholesky_diag,
        precision_cholesky_from_precisions=_precision_cholesky_from_precisions_diag,
        precisions_from_cholesky=_precisions_from_cholesky_diag,
        covariances_from_cholesky=_covariances_from_cholesky_diag,
        log_det_cholesky=_log_det_cholesky_diag,
        per_component_matrices=_per_component_matrices_diag,
        statistics=DiagStatistics,
        expanded=ExpandedForm(_expanded_coefficients_diag, lambda D: 2 * D + 1,
                              _expanded_features_diag, DiagExpandedStatistics),
    ),
    # a diag whose variances are equal across features: the same statistics and forms
    "spherical": CovarianceType(
        shape=lambda K, D: (K,),
        n_parameters=lambda K, D: K,
        matrix=False,
        covariances=_covariances_spherical,
        precision_cholesky=_precision_cholesky_diag,
        precision_cholesky_from_precisions=_precision_cholesky_from_precisions_diag,
        precisions_from_cholesky=_precisions_from_cholesky_diag,
        covariances_from_cholesky=_covariances_from_cholesky_diag,
        log_det_cholesky=_log_det_cholesky_spherical,
        per_component_matrices=_per_component_matrices_spherical,
        statistics=DiagStatistics,
        expanded=ExpandedForm(_expanded_coefficients_spherical, lambda D: 2 * D + 1,
                              _expanded_features_diag, DiagExpandedStatistics),
    ),
}

COVARIANCE_TYPES = tuple(COVARIANCES)


# ------------------------------------------------- by name (sklearn's signatures)


def m_step(stats, shift, covariance_type, reg_covar, eps):
    """Weights (unnormalised nk), means and covariances from merged statistics.

    Parameters
    ----------
    stats : dict of ndarray
        Merged statistics of one model (see module docstring).
    shift : ndarray of shape (n_components, n_features)
        The per-component shift the statistics were accumulated about.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    reg_covar : float
    eps : float
        Machine epsilon of the compute dtype; sklearn adds 10 * eps to nk.

    Returns
    -------
    nk : ndarray of shape (n_components,)
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray of shape ``covariance_shape(covariance_type, ...)``
    """
    return COVARIANCES[covariance_type].covariances(stats, np.asarray(shift, np.float64),
                                                    reg_covar, eps)


def precision_cholesky(covariances, covariance_type, float32=False):
    """Cholesky factors of the precisions, as scikit-learn computes them.

    Raises the ill-defined-covariance ``ValueError`` (naming ``reg_covar``) when a
    covariance is not positive definite.
    """
    covariances = np.asarray(covariances, dtype=np.float64)
    if not np.all(np.isfinite(covariances)):
        raise ValueError(_error_message(float32))
    return COVARIANCES[covariance_type].precision_cholesky(covariances, float32)


def precision_cholesky_from_precisions(precisions, covariance_type):
    """The upper-triangular factor U with precision = U U^T (sklearn #26415)."""
    precisions = np.asarray(precisions, dtype=np.float64)
    return COVARIANCES[covariance_type].precision_cholesky_from_precisions(precisions)


def precisions_from_cholesky(precisions_cholesky, covariance_type):
    """precision = U U^T (full, tied) or U**2 (diag, spherical)."""
    return COVARIANCES[covariance_type].precisions_from_cholesky(precisions_cholesky)


def covariances_from_cholesky(precisions_cholesky, covariance_type):
    """Covariances from the precision factors (used when only precisions are known)."""
    return COVARIANCES[covariance_type].covariances_from_cholesky(precisions_cholesky)


def log_det_cholesky(precisions_cholesky, covariance_type, n_features):
    """log det of the precision Cholesky factor, shape (n_components,) or scalar (tied)."""
    return COVARIANCES[covariance_type].log_det_cholesky(precisions_cholesky, n_features)


def n_parameters(covariance_type, n_components, n_features):
    """Free parameters of the mixture, as sklearn's ``_n_parameters``."""
    cov_params = COVARIANCES[covariance_type].n_parameters(n_components, n_features)
    return int(cov_params + n_features * n_components + n_components - 1)


def covariance_shape(covariance_type, n_components, n_features):
    """Shape of the covariances (and of the precisions and their Cholesky factors)."""
    return COVARIANCES[covariance_type].shape(n_components, n_features)
