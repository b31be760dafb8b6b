"""GaussianMixture: scikit-learn's estimator, fitted on numpy arrays or on dask arrays."""

import logging
import math
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

from pipeline.mixture import _kernels

# _finite_block, NAN_MESSAGE, _check_finite and _is_dask_dataframe: importable from here
# as before the split into _base.py and _validation.py
from pipeline.mixture._base import BaseMixture, _finite_block, _weighted_sums  # noqa: F401
from pipeline.mixture._chunks import ChunkedData
from pipeline.mixture._em import PARAMETERS, EMState
from pipeline.mixture._fit import Start, fit_states
from pipeline.mixture._fitted import FittedParameters
from pipeline.mixture._init import InitJob, parameters_from_resp
from pipeline.mixture._validation import (  # noqa: F401
    NAN_MESSAGE,
    check_described,
    check_means,
    check_precisions,
    check_random_state,
    check_sample_weight,
    check_weights,
    validate_params,
)
from pipeline.mixture._validation import check_finite as _check_finite  # noqa: F401
from pipeline.mixture._validation import is_dask_dataframe as _is_dask_dataframe  # noqa: F401

logger = logging.getLogger("pipeline.mixture")


class GaussianMixture(FittedParameters, BaseMixture):
    """Gaussian mixture fitted by EM, on numpy arrays or on dask arrays across a cluster.

    Same parameters, defaults, attributes, methods and errors as
    :class:`sklearn.mixture.GaussianMixture`; each EM iteration is one pass over the
    data, run per chunk on the dask workers when ``X`` is a dask array.

    Parameters
    ----------
    n_components : int, default=1
        The number of mixture components.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
        The type of covariance parameters.
    tol : float, default=1e-3
        Convergence threshold on the change of the mean log-likelihood.
    reg_covar : float, default=1e-6
        Non-negative regularisation added to the diagonal of the covariances.
    max_iter : int, default=100
        The number of EM iterations (passes over the data) to perform.
    n_init : int, default=1
        Number of initialisations; the best lower bound is kept. The restarts advance
        in lock-step, sharing each pass over the data.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        Initialisation method, run on the cluster (kmeans: k-means, scikit-learn's
        algorithm, on a sample of the rows, then one pass over all of them).
    weights_init : array-like of shape (n_components,), default=None
    means_init : array-like of shape (n_components, n_features), default=None
    precisions_init : array-like, default=None
        Shape (n_components, n_features, n_features) for 'full', (n_features, n_features)
        for 'tied', (n_components, n_features) for 'diag', (n_components,) for 'spherical'.
    random_state : int, RandomState instance or None, default=None
    warm_start : bool, default=False
        Continue from the previous fit (then ``n_init`` is ignored).
    verbose : int, default=0
        1 prints each initialisation, 2 also each iteration's time and change.
    verbose_interval : int, default=10
        Iterations between two printed messages.
    dtype : {numpy.float64, numpy.float32, None}, default=None
        Compute dtype of the E-step. None follows sklearn: float32 input stays float32,
        anything else is float64. Statistics are accumulated in float64 either way.
    persist : {'auto', True, False}, default='auto'
        Dask input only: keep the chunks in worker memory across passes. 'auto' does
        it when the data take at most half of the workers' memory.
    split_every : int or None, default=None
        Partial results merged per combine task of the tree reduction (8 if None).

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray
    precisions_ : ndarray
    precisions_cholesky_ : ndarray
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
    lower_bounds_ : list of float
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined when X has feature names that are all strings.
    n_passes_ : int
        Passes over the data the last fit made (initialisation included).
    """

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weights_init=None,
        means_init=None,
        precisions_init=None,
        random_state=None,
        warm_start=False,
        verbose=0,
        verbose_interval=10,
        dtype=None,
        persist="auto",
        split_every=None,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.dtype = dtype
        self.persist = persist
        self.split_every = split_every

    # ------------------------------------------------------------- input

    def _check_init_arrays(self, n_features):
        weights = means = precisions = None
        if self.weights_init is not None:
            weights = check_weights(self.weights_init, self.n_components)
        if self.means_init is not None:
            means = check_means(self.means_init, self.n_components, n_features)
        if self.precisions_init is not None:
            precisions = check_precisions(self.precisions_init, self.covariance_type,
                                          self.n_components, n_features)
        return weights, means, precisions

    # -------------------------------------------------------------- fitting

    def _fit(self, X, sample_weight=None):
        """Fit and return the chunked, validated data (for a final prediction)."""
        validate_params(self)
        X = self._validate_X(X, reset=True)
        n_samples, n_features = X.shape
        sample_weight = check_sample_weight(sample_weight, X)
        if n_samples < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components "
                f"but got n_components = {self.n_components}, n_samples = {n_samples}")
        weights_init, means_init, precisions_init = self._check_init_arrays(n_features)
        dtype = X.dtype
        data = ChunkedData(X, sample_weight=sample_weight, persist=self.persist,
                           split_every=self.split_every)
        if self.warm_start and hasattr(self, "converged_"):
            starts = [Start(state=EMState(
                self.covariance_type, self.reg_covar, self.tol, self.max_iter, self.weights_,
                self.means_, self.covariances_, self.precisions_cholesky_,
                lower_bound=self.lower_bound_))]
        else:
            random_state = check_random_state(self.random_state)
            seeds = [int(random_state.randint(np.iinfo(np.int32).max))
                     for _ in range(self.n_init)]
            starts = [Start(f"init {i}" if self.n_init > 1 else "",
                            InitJob(self.n_components, self.covariance_type, self.init_params,
                                    seed, self.reg_covar, weights_init, means_init,
                                    precisions_init))
                      for i, seed in enumerate(seeds)]
        # The describe pass runs on a warm start too: it is where dask input is checked
        # for NaN, which would otherwise surface as an "ill-defined covariance" error.
        fitted = fit_states(
            data, starts, dtype, tol=self.tol, max_iter=self.max_iter,
            check_finite=lambda describe: check_described(
                describe, dtype, self.n_components, data.weighted),
            on_start=lambda i, state: self._print_verbose_msg_init_beg(i),
            on_iteration=self._print_verbose_msg_iter_end,
            on_end=(lambda i, state: self._print_verbose_msg_init_end(
                state.lower_bound, state.converged, i)) if self.max_iter > 0 else None)
        if self.max_iter > 0:
            best = fitted.states[fitted.best[0]]
            history = best.history()
        else:  # as sklearn: the last initialisation, and no history
            best = fitted.states[-1]
            history = dict(converged=False, n_iter=0, lower_bound=-np.inf, lower_bounds=[])
        if not best.converged and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=3,  # the user's fit / fit_predict call
            )
        self._set_fitted(best.parameters(), dtype=dtype, **history)
        self.n_passes_ = data.n_passes
        return X

    def fit(self, X, y=None, sample_weight=None):
        """Estimate model parameters with the EM algorithm.

        Parameters
        ----------
        X : array-like, dask array or dask DataFrame of shape (n_samples, n_features)
        y : Ignored
        sample_weight : array-like, dask array or float, default=None
            Frequency weights of shape (n_samples,), non-negative, not all zero: a row of
            integer weight w counts as w copies of it, a row of weight 0 as none. With
            dask X, a dask array of weights is rechunked to X's rows.

        Returns
        -------
        self : object
            The fitted mixture.
        """
        self._fit(X, sample_weight)
        return self

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit (with ``sample_weight`` as :meth:`fit`), then predict the most probable
        component of each row of X.

        Returns
        -------
        labels : ndarray or dask array of shape (n_samples,)
            Lazy (chunked like X) when X is a dask collection.
        """
        X = self._fit(X, sample_weight)
        return self._apply(X, _kernels.predict_chunk, "labels", validated=True)

    def _initialize(self, X, resp):
        """Initial parameters from responsibilities ``resp`` of shape (n_samples, K) on a
        numpy ``X`` (scikit-learn's hook of the same name: a given ``weights_init``,
        ``means_init`` or ``precisions_init`` replaces the estimate, unchecked)."""
        X = np.asarray(X)
        job = InitJob(np.shape(resp)[1], self.covariance_type, self.init_params, 0,
                      self.reg_covar, self.weights_init, self.means_init, self.precisions_init)
        params = parameters_from_resp(X, resp, job, float(np.finfo(X.dtype).eps))
        self._set_parameters([params[name] for name in PARAMETERS], dtype=X.dtype)

    @classmethod
    def _from_parameters(cls, params, *, converged, n_iter, lower_bound, lower_bounds,
                         n_features_in=None, feature_names_in=None, **estimator_params):
        """A fitted estimator from ``params`` (``(weights, means, covariances,
        precisions_cholesky)``, shaped as the attributes) and the fit's history, built with
        the constructor's ``estimator_params``: the model selection's pick, a loaded model.
        """
        estimator = cls(**estimator_params)
        if n_features_in is not None:
            estimator.n_features_in_ = n_features_in
        if feature_names_in is not None:
            estimator.feature_names_in_ = np.asarray(feature_names_in, dtype=object)
        return estimator._set_fitted(params, converged=converged, n_iter=n_iter,
                                     lower_bound=lower_bound, lower_bounds=lower_bounds)

    # ----------------------------------------------------------- prediction

    def _log_likelihood(self, X, sample_weight):
        """(total log-likelihood of X, rows): with weights, the weighted total and the
        rows of positive weight."""
        if sample_weight is None:
            n = self._n_samples(X)
            return self.score(X) * n, n
        log_likelihood, _, n_positive = _weighted_sums(self.score_samples(X), sample_weight)
        return log_likelihood, n_positive

    def bic(self, X, sample_weight=None):
        """Bayesian information criterion on X (lower is better).

        With ``sample_weight``: -2 sum(w log p(x)) + n_parameters log(rows of w > 0).
        """
        log_likelihood, n = self._log_likelihood(X, sample_weight)
        return -2 * log_likelihood + self._n_parameters() * math.log(n)

    def aic(self, X, sample_weight=None):
        """Akaike information criterion on X (lower is better); weighted as :meth:`bic`."""
        log_likelihood, _ = self._log_likelihood(X, sample_weight)
        return -2 * log_likelihood + 2 * self._n_parameters()

