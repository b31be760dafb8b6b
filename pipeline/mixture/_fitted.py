"""A fitted Gaussian mixture without scikit-learn.

:class:`FittedParameters` holds what a fit leaves (scikit-learn's attribute names) and what
needs only that: the derived ``precisions_``, the per-chunk kernels' model, the number of
free parameters. :class:`~pipeline.mixture.GaussianMixture` inherits it;
:class:`FittedMixture` is the same attributes on their own: the model a `mixlake run`
selects, writes, saves and monitors. The run then never imports scikit-learn (1.5 to
1.9 s with scipy.stats and pandas behind it, a quarter of a 1,000,000-row run here);
:meth:`FittedMixture.estimator` gives the scikit-learn-compatible estimator when one is
wanted.
"""

import numpy as np

from pipeline.mixture import _covariance, _kernels
from pipeline.mixture._em import PARAMETERS

# The constructor parameters a FittedMixture keeps and a saved model holds
# (pipeline.store); dtype too: a float32 model predicts in float32, and so must the loaded one
ESTIMATOR_PARAMS = ("n_components", "covariance_type", "tol", "reg_covar", "max_iter", "n_init",
                    "init_params", "random_state", "verbose_interval", "dtype")


class FittedParameters:
    """The fitted attributes of a Gaussian mixture and what reads only them."""

    def _set_parameters(self, params, dtype=None):
        """Set ``(weights, means, covariances, precisions_cholesky)`` and ``precisions_``
        (scikit-learn's hook of the same name).

        Computed in float64; the attributes are in ``dtype`` (None: that of the given
        precisions_cholesky). A fit passes its compute dtype: float32 input keeps float32
        attributes, as in sklearn since 1.6.
        """
        dtype = np.asarray(params[-1]).dtype if dtype is None else dtype
        params = [np.asarray(value, np.float64) for value in params]
        precisions = _covariance.precisions_from_cholesky(params[-1], self.covariance_type)
        for name, value in zip((*PARAMETERS, "precisions"), (*params, precisions), strict=True):
            setattr(self, f"{name}_", value.astype(dtype, copy=False))

    def _set_fitted(self, params, *, converged, n_iter, lower_bound, lower_bounds,
                    dtype=np.float64):
        """Set the fitted parameters (in ``dtype``) and history: the one place they are set."""
        self._set_parameters(params, dtype)
        self.converged_ = bool(converged)
        self.n_iter_ = int(n_iter)
        self.lower_bound_ = float(lower_bound)
        self.lower_bounds_ = [float(v) for v in lower_bounds]
        return self

    def _model(self, dtype):
        return _kernels.prepare_model(self.weights_, self.means_, self.precisions_cholesky_,
                                      self.covariance_type, dtype)

    def _n_parameters(self):
        return _covariance.n_parameters(self.covariance_type, self.n_components,
                                        self.means_.shape[1])


class FittedMixture(FittedParameters):
    """A fitted Gaussian mixture as plain attributes: the model selection's pick.

    The fitted attributes (``weights_``, ``means_``, ``covariances_``, ``precisions_``,
    ``precisions_cholesky_``, ``converged_``, ``n_iter_``, ``lower_bound_``,
    ``lower_bounds_``) and the constructor parameters of the
    :class:`~pipeline.mixture.GaussianMixture` that :meth:`estimator` gives, whose
    predictions are the same (the same E-step model, :meth:`_model`).
    """

    def __init__(self, params, *, converged, n_iter, lower_bound, lower_bounds, n_components,
                 covariance_type, tol, reg_covar, max_iter, n_init, init_params,
                 random_state, dtype, verbose_interval=10):
        # verbose_interval: GaussianMixture's default, which a fit by model selection
        # leaves (it prints nothing); tests/test_fitted.py checks it against the estimator's
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.random_state = random_state
        self.dtype = dtype
        self.verbose_interval = verbose_interval
        self._set_fitted(params, converged=converged, n_iter=n_iter, lower_bound=lower_bound,
                         lower_bounds=lower_bounds)

    def estimator(self):
        """The scikit-learn-compatible :class:`~pipeline.mixture.GaussianMixture` of these
        parameters (imports scikit-learn)."""
        from pipeline.mixture.gaussian import GaussianMixture

        return GaussianMixture._from_parameters(
            [getattr(self, f"{name}_") for name in PARAMETERS], converged=self.converged_,
            n_iter=self.n_iter_, lower_bound=self.lower_bound_,
            lower_bounds=self.lower_bounds_,
            **{name: getattr(self, name) for name in ESTIMATOR_PARAMS})
