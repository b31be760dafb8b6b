"""Per covariance type: M-step from merged statistics, precision Cholesky, log-det.

Every function here works on small arrays on the client (K x D x D at most). The
statistics come from :mod:`pipeline.mixture._kernels`, shifted by the current means
and accumulated in float64, so nothing here ever touches the data.

Statistics of one model (a dict of float64 arrays)::

    n       : float, rows seen
    loglik  : float, sum over rows of log p(x)
    nk      : (K,), sum of responsibilities
    s       : (K, D), sum r (x - shift_k)
    S       : full (K, D, D), sum r (x - shift_k)(x - shift_k)^T
              tied (D, D), the sum of those over the components
              diag/spherical (K, D), sum r (x - shift_k)^2
"""

import numpy as np

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

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


def second_moment_is_matrix(covariance_type):
    """Whether the per-component second moment is a D x D matrix (full, tied)."""
    return covariance_type in ("full", "tied")


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


def summed_scatter(S, s, nk, d):
    """sum over k of sum r (x - a_k - d_k)(x - a_k - d_k)^T, from the same moments about
    the points a_k: ``S`` their scatter summed over k (D, D), ``s`` (K, D) and ``nk``."""
    sd = s.T @ d
    return S - sd - sd.T + (nk[:, None] * d).T @ d


def _scatter_diag(stats, nk_raw, d):
    return stats["S"] - 2.0 * d * stats["s"] + nk_raw[:, None] * d * d


def _covariances_full(stats, shift, reg_covar, eps):
    nk_raw, nk, means, d = _centered_means(stats, shift, eps)
    covariances = _scatter_full(stats, nk_raw, d) / nk[:, None, None]
    D = means.shape[1]
    covariances[:, np.arange(D), np.arange(D)] += reg_covar
    return nk, means, covariances


def _covariances_tied(stats, shift, reg_covar, eps):
    nk_raw, nk, means, d = _centered_means(stats, shift, eps)
    covariance = summed_scatter(stats["S"], stats["s"], nk_raw, d) / nk.sum()
    covariance.flat[:: means.shape[1] + 1] += reg_covar
    return nk, means, covariance


def _covariances_diag(stats, shift, reg_covar, eps):
    nk_raw, nk, means, d = _centered_means(stats, shift, eps)
    return nk, means, _scatter_diag(stats, nk_raw, d) / nk[:, None] + reg_covar


def _covariances_spherical(stats, shift, reg_covar, eps):
    nk, means, covariances = _covariances_diag(stats, shift, reg_covar, eps)
    return nk, means, covariances.mean(axis=1)


_COVARIANCES = {
    "full": _covariances_full,
    "tied": _covariances_tied,
    "diag": _covariances_diag,
    "spherical": _covariances_spherical,
}


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
    covariances : ndarray, shape depends on covariance_type
    """
    return _COVARIANCES[covariance_type](stats, np.asarray(shift, np.float64), reg_covar, eps)


# ------------------------------------------------------- precision Cholesky


def _error_message(float32):
    return ILL_DEFINED_COVARIANCE + (FLOAT32_HINT if float32 else "")


def _inverse_cholesky(covariance, float32):
    from scipy import linalg  # client-side only: the workers' kernels never need scipy

    try:
        cov_chol = linalg.cholesky(covariance, lower=True)
    except linalg.LinAlgError:
        raise ValueError(_error_message(float32)) from None
    D = covariance.shape[0]
    return linalg.solve_triangular(cov_chol, np.eye(D), lower=True).T


def _precision_cholesky_full(covariances, float32):
    return np.stack([_inverse_cholesky(c, float32) for c in covariances])


def _precision_cholesky_tied(covariance, float32):
    return _inverse_cholesky(covariance, float32)


def _precision_cholesky_diag(covariances, float32):
    if np.any(covariances <= 0.0) or not np.all(np.isfinite(covariances)):
        raise ValueError(_error_message(float32))
    return 1.0 / np.sqrt(covariances)


_PRECISION_CHOLESKY = {
    "full": _precision_cholesky_full,
    "tied": _precision_cholesky_tied,
    "diag": _precision_cholesky_diag,
    "spherical": _precision_cholesky_diag,
}


def precision_cholesky(covariances, covariance_type, float32=False):
    """Cholesky factors of the precisions, as scikit-learn computes them.

    Raises the ill-defined-covariance ``ValueError`` (naming ``reg_covar``) when a
    covariance is not positive definite.
    """
    covariances = np.asarray(covariances, dtype=np.float64)
    if not np.all(np.isfinite(covariances)):
        raise ValueError(_error_message(float32))
    return _PRECISION_CHOLESKY[covariance_type](covariances, float32)


def _flipudlr(a):
    return a[..., ::-1, ::-1]


def precision_cholesky_from_precisions(precisions, covariance_type):
    """The upper-triangular factor U with precision = U U^T (sklearn #26415)."""
    from scipy import linalg

    precisions = np.asarray(precisions, dtype=np.float64)
    if covariance_type == "full":
        return np.stack([_flipudlr(linalg.cholesky(_flipudlr(p), lower=True)) for p in precisions])
    if covariance_type == "tied":
        return _flipudlr(linalg.cholesky(_flipudlr(precisions), lower=True))
    return np.sqrt(precisions)


def precisions_from_cholesky(precisions_cholesky, covariance_type):
    """precision = U U^T (full, tied) or U**2 (diag, spherical)."""
    if covariance_type == "full":
        return np.matmul(precisions_cholesky, precisions_cholesky.transpose(0, 2, 1))
    if covariance_type == "tied":
        return precisions_cholesky @ precisions_cholesky.T
    return precisions_cholesky**2


def covariances_from_cholesky(precisions_cholesky, covariance_type):
    """Covariances from the precision factors (used when only precisions are known)."""
    if covariance_type == "full":
        return np.stack([np.linalg.inv(u @ u.T) for u in precisions_cholesky])
    if covariance_type == "tied":
        return np.linalg.inv(precisions_cholesky @ precisions_cholesky.T)
    return 1.0 / precisions_cholesky**2


def log_det_cholesky(precisions_cholesky, covariance_type, n_features):
    """log det of the precision Cholesky factor, shape (n_components,) or scalar (tied)."""
    if covariance_type == "full":
        return np.log(np.diagonal(precisions_cholesky, axis1=1, axis2=2)).sum(axis=1)
    if covariance_type == "tied":
        return np.log(np.diag(precisions_cholesky)).sum()
    if covariance_type == "diag":
        return np.log(precisions_cholesky).sum(axis=1)
    return n_features * np.log(precisions_cholesky)


def n_parameters(covariance_type, n_components, n_features):
    """Free parameters of the mixture, as sklearn's ``_n_parameters``."""
    cov_params = {
        "full": n_components * n_features * (n_features + 1) / 2.0,
        "diag": n_components * n_features,
        "tied": n_features * (n_features + 1) / 2.0,
        "spherical": n_components,
    }[covariance_type]
    return int(cov_params + n_features * n_components + n_components - 1)


def covariance_shape(covariance_type, n_components, n_features):
    return {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }[covariance_type]
