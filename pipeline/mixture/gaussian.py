"""GaussianMixture: scikit-learn's estimator, fitted on numpy arrays or on dask arrays."""

import logging
import math
import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from pipeline.mixture import _covariance, _kernels
from pipeline.mixture._chunks import ChunkedData, is_dask_collection
from pipeline.mixture._em import PARAMETERS, EMState
from pipeline.mixture._fit import Start, fit_states
from pipeline.mixture._init import InitJob, parameters_from_resp
from pipeline.mixture._validation import (  # noqa: F401  (NAN_MESSAGE: importable here)
    NAN_MESSAGE,
    check_means,
    check_precisions,
    check_weights,
    validate_dask,
    validate_params,
    validate_X,
)
from pipeline.mixture._validation import check_finite as _check_finite
from pipeline.mixture._validation import is_dask_dataframe as _is_dask_dataframe

logger = logging.getLogger("pipeline.mixture")

def _finite_block(X, model, kernel):
    """``kernel`` on one block of dask input, after the finiteness check sklearn makes.

    sklearn checks the whole of X before predicting; a lazy prediction checks each
    block as it is computed, so NaN fails the same way instead of giving label 0.
    """
    _check_finite(np.isnan(X).any(), np.isinf(X).any(), X.dtype)
    return kernel(X, model)


class GaussianMixture(DensityMixin, BaseEstimator):
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
        Initialisation method, run on the cluster (k-means is k-means|| + Lloyd).
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

    def _validate_dask(self, X, reset):
        return validate_dask(self, X, reset)

    def _validate_X(self, X, reset):
        return validate_X(self, X, reset)

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

    def _fit(self, X):
        """Fit and return the chunked, validated data (for a final prediction)."""
        validate_params(self)
        X = self._validate_X(X, reset=True)
        n_samples, n_features = X.shape
        if n_samples < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components "
                f"but got n_components = {self.n_components}, n_samples = {n_samples}")
        weights_init, means_init, precisions_init = self._check_init_arrays(n_features)
        dtype = X.dtype
        data = ChunkedData(X, persist=self.persist, split_every=self.split_every)
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
            check_finite=lambda describe: _check_finite(describe["n_nan"],
                                                        describe["n_inf"], dtype),
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

    def fit(self, X, y=None):
        """Estimate model parameters with the EM algorithm.

        Parameters
        ----------
        X : array-like, dask array or dask DataFrame of shape (n_samples, n_features)
        y : Ignored

        Returns
        -------
        self : object
            The fitted mixture.
        """
        self._fit(X)
        return self

    def fit_predict(self, X, y=None):
        """Fit, then predict the most probable component of each row of X.

        Returns
        -------
        labels : ndarray or dask array of shape (n_samples,)
            Lazy (chunked like X) when X is a dask collection.
        """
        X = self._fit(X)
        return self._apply(X, _kernels.predict_chunk, "labels", validated=True)

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

    def _initialize(self, X, resp):
        """Initial parameters from responsibilities ``resp`` of shape (n_samples, K) on a
        numpy ``X`` (scikit-learn's hook of the same name: a given ``weights_init``,
        ``means_init`` or ``precisions_init`` replaces the estimate, unchecked)."""
        X = np.asarray(X)
        job = InitJob(np.shape(resp)[1], self.covariance_type, self.init_params, 0,
                      self.reg_covar, self.weights_init, self.means_init, self.precisions_init)
        params = parameters_from_resp(X, resp, job, float(np.finfo(X.dtype).eps))
        self._set_parameters([params[name] for name in PARAMETERS], dtype=X.dtype)

    def _set_fitted(self, params, *, converged, n_iter, lower_bound, lower_bounds,
                    dtype=np.float64):
        """Set the fitted parameters (in ``dtype``) and history: the one place they are set."""
        self._set_parameters(params, dtype)
        self.converged_ = bool(converged)
        self.n_iter_ = int(n_iter)
        self.lower_bound_ = float(lower_bound)
        self.lower_bounds_ = [float(v) for v in lower_bounds]
        return self

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

    def _model(self, dtype):
        return _kernels.prepare_model(self.weights_, self.means_, self.precisions_cholesky_,
                                      self.covariance_type, dtype)

    def _apply(self, X, kernel, kind, validated=False):
        check_is_fitted(self)
        if not validated:
            X = self._validate_X(X, reset=False)
        model = self._model(X.dtype)
        if not is_dask_collection(X):
            return kernel(X, model)
        X = X.rechunk({1: -1})
        if kind == "proba":
            return X.map_blocks(_finite_block, model, kernel, dtype=X.dtype,
                                chunks=(X.chunks[0], (self.n_components,)))
        dtype = np.int64 if kind == "labels" else X.dtype
        return X.map_blocks(_finite_block, model, kernel, dtype=dtype, drop_axis=1)

    def predict(self, X):
        """Predict the most probable component of each row.

        Returns
        -------
        labels : ndarray of shape (n_samples,), or a dask array chunked like X
        """
        return self._apply(X, _kernels.predict_chunk, "labels")

    def predict_proba(self, X):
        """Posterior probability of each component for each row.

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components), or a dask array chunked like X
        """
        return self._apply(X, _kernels.predict_proba_chunk, "proba")

    def score_samples(self, X):
        """Log-likelihood of each row under the model.

        Returns
        -------
        log_prob : ndarray of shape (n_samples,), or a dask array chunked like X
        """
        return self._apply(X, _kernels.score_samples_chunk, "score")

    def score(self, X, y=None):
        """Per-sample average log-likelihood of X (a float; computes for dask input)."""
        log_prob = self.score_samples(X)
        if is_dask_collection(log_prob):
            return float(log_prob.mean(dtype=np.float64).compute())
        return float(np.mean(log_prob, dtype=np.float64))

    def _n_parameters(self):
        return _covariance.n_parameters(self.covariance_type, self.n_components,
                                        self.means_.shape[1])

    def _n_samples(self, X):
        return int(X.shape[0]) if not _is_dask_dataframe(X) else int(
            X.map_partitions(len).sum().compute())

    def bic(self, X):
        """Bayesian information criterion on X (lower is better)."""
        n = self._n_samples(X)
        return -2 * self.score(X) * n + self._n_parameters() * math.log(n)

    def aic(self, X):
        """Akaike information criterion on X (lower is better)."""
        n = self._n_samples(X)
        return -2 * self.score(X) * n + 2 * self._n_parameters()

    def sample(self, n_samples=1):
        """Generate random samples from the fitted mixture (as sklearn, on the client).

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        if n_samples < 1:
            raise ValueError(
                "Invalid value for 'n_samples': %d . The sampling requires at "
                "least one sample." % (self.n_components))
        _, n_features = self.means_.shape
        rng = check_random_state(self.random_state)
        n_samples_comp = rng.multinomial(n_samples, self.weights_)
        if self.covariance_type == "full":
            X = np.vstack([rng.multivariate_normal(mean, covariance, int(sample))
                           for mean, covariance, sample in
                           zip(self.means_, self.covariances_, n_samples_comp)])
        elif self.covariance_type == "tied":
            X = np.vstack([rng.multivariate_normal(mean, self.covariances_, int(sample))
                           for mean, sample in zip(self.means_, n_samples_comp)])
        else:
            X = np.vstack([mean + rng.standard_normal(size=(sample, n_features))
                           * np.sqrt(covariance)
                           for mean, covariance, sample in
                           zip(self.means_, self.covariances_, n_samples_comp)])
        y = np.concatenate([np.full(sample, j, dtype=np.int64)
                            for j, sample in enumerate(n_samples_comp)])
        return X, y

    # ------------------------------------------------------------- progress

    def _print_verbose_msg_init_beg(self, n_init):
        if self.verbose >= 1:
            print("Initialization %d" % n_init)
        if self.verbose >= 2:
            self._init_prev_time = time.time()
            self._iter_prev_time = self._init_prev_time

    def _print_verbose_msg_iter_end(self, state, change, seconds):
        n_iter = state.n_iter
        if not self.verbose or n_iter % self.verbose_interval:
            return
        prefix = f"[{state.name}] " if state.name else ""
        if self.verbose == 1:
            print(f"  {prefix}Iteration {n_iter}")
        else:
            print("  %sIteration %d\t time lapse %.5fs\t ll change %.5f"
                  % (prefix, n_iter, seconds, change))

    def _print_verbose_msg_init_end(self, lb, init_has_converged, index):
        converged_msg = "converged" if init_has_converged else "did not converge"
        if self.verbose == 1:
            print(f"Initialization {converged_msg}.")
        elif self.verbose >= 2:
            t = time.time() - self._init_prev_time
            print(f"Initialization {converged_msg}. time lapse {t:.5f}s\t lower bound"
                  f" {lb:.5f}.")
