"""BayesianGaussianMixture: scikit-learn's variational mixture, on numpy or dask arrays."""

import warnings
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array

from pipeline.mixture import _covariance, _kernels
from pipeline.mixture._chunks import ChunkedData
from pipeline.mixture._fit import Start, fit_states
from pipeline.mixture._init import InitJob
from pipeline.mixture._validation import (
    PARAMETER_CONSTRAINTS,
    _array_like_or_none,
    _check_precision_matrix,
    _check_shape,
    _options,
    check_random_state,
    validate_params,
)
from pipeline.mixture._variational import (
    PRIOR_TYPES,
    Priors,
    VariationalState,
    empirical_covariance,
    mixture_weights,
    scatter_chunk,
    variational_model,
)
from pipeline.mixture.gaussian import NAN_MESSAGE, GaussianMixture


def _positive_or_none(v):
    return v is None or (isinstance(v, Real) and v > 0)


_POSITIVE = "None or a float in the range (0.0, inf)"
CONSTRAINTS = {
    **{name: check for name, check in PARAMETER_CONSTRAINTS.items()
       if name not in ("weights_init", "means_init", "precisions_init")},
    "weight_concentration_prior_type": _options(PRIOR_TYPES),
    "weight_concentration_prior": (_positive_or_none, _POSITIVE),
    "mean_precision_prior": (_positive_or_none, _POSITIVE),
    "mean_prior": (_array_like_or_none, "None or an array-like"),
    "degrees_of_freedom_prior": (_positive_or_none, _POSITIVE),
    "covariance_prior": (lambda v: _positive_or_none(v) or _array_like_or_none(v),
                         "None, an array-like or a float in the range (0.0, inf)"),
}


def _check_finite(n_nan, n_inf, dtype):
    if n_nan:
        raise ValueError(NAN_MESSAGE.replace("GaussianMixture", "BayesianGaussianMixture", 1))
    if n_inf:
        raise ValueError(f"Input X contains infinity or a value too large for {dtype!r}.")


class BayesianGaussianMixture(DensityMixin, BaseEstimator):
    """Variational Bayesian Gaussian mixture, on numpy arrays or on dask arrays.

    Same parameters, defaults, attributes, methods and errors as
    :class:`sklearn.mixture.BayesianGaussianMixture`; each iteration is one pass over the
    data with :class:`GaussianMixture`'s per-chunk kernel and statistics, and the
    variational updates and lower bound run on the client from the merged statistics.
    ``n_components`` is an upper bound: components the data do not need get weights
    near 0.

    Parameters
    ----------
    n_components : int, default=1
        The most components the mixture may use.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    tol : float, default=1e-3
        Convergence threshold on the change of the lower bound (a total over the rows).
    reg_covar : float, default=1e-6
    max_iter : int, default=100
    n_init : int, default=1
        Initialisations, advanced in lock-step; the best lower bound is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
    weight_concentration_prior_type : {'dirichlet_process', 'dirichlet_distribution'}, \
default='dirichlet_process'
    weight_concentration_prior : float or None, default=None
        Concentration of the weights' prior; None is ``1 / n_components``.
    mean_precision_prior : float or None, default=None
        Precision of the means' prior; None is 1.
    mean_prior : array-like of shape (n_features,), default=None
        Mean of the means' prior; None is the mean of X.
    degrees_of_freedom_prior : float or None, default=None
        Degrees of freedom of the Wishart prior; None is n_features.
    covariance_prior : float or array-like, default=None
        Covariance of the Wishart prior, shaped (n_features, n_features) for 'full' and
        'tied', (n_features,) for 'diag', a float for 'spherical'; None is the covariance
        of X (its variances for 'diag', their mean for 'spherical').
    random_state : int, RandomState instance or None, default=None
    warm_start : bool, default=False
    verbose : int, default=0
    verbose_interval : int, default=10
    dtype : {numpy.float64, numpy.float32, None}, default=None
        Compute dtype of the E-step (see :class:`GaussianMixture`).
    persist : {'auto', True, False}, default='auto'
    split_every : int or None, default=None

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_, precisions_, precisions_cholesky_ : ndarray
        Shaped by ``covariance_type`` as in :class:`GaussianMixture`.
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
    lower_bounds_ : list of float
    weight_concentration_prior_ : float
    weight_concentration_ : tuple of two ndarray of shape (n_components,), or ndarray
        The Beta parameters (dirichlet_process) or the Dirichlet parameters.
    mean_precision_prior_ : float
    mean_precision_ : ndarray of shape (n_components,)
    mean_prior_ : ndarray of shape (n_features,)
    degrees_of_freedom_prior_ : float
    degrees_of_freedom_ : ndarray of shape (n_components,), or float for 'tied'
    covariance_prior_ : float or ndarray
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
    n_passes_ : int
        Passes over the data the last fit made (priors and initialisation included).
    """

    def __init__(
        self,
        *,
        n_components=1,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        weight_concentration_prior_type="dirichlet_process",
        weight_concentration_prior=None,
        mean_precision_prior=None,
        mean_prior=None,
        degrees_of_freedom_prior=None,
        covariance_prior=None,
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
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.dtype = dtype
        self.persist = persist
        self.split_every = split_every

    # Input checks, prediction and sampling are GaussianMixture's: they need only the
    # E-step model (``_model``) and the fitted attributes both estimators share.
    _compute_dtype = GaussianMixture._compute_dtype
    _validate_dask = GaussianMixture._validate_dask
    _validate_X = GaussianMixture._validate_X
    _apply = GaussianMixture._apply
    predict = GaussianMixture.predict
    predict_proba = GaussianMixture.predict_proba
    score_samples = GaussianMixture.score_samples
    score = GaussianMixture.score
    sample = GaussianMixture.sample
    _print_verbose_msg_init_beg = GaussianMixture._print_verbose_msg_init_beg
    _print_verbose_msg_iter_end = GaussianMixture._print_verbose_msg_iter_end
    _print_verbose_msg_init_end = GaussianMixture._print_verbose_msg_init_end

    # ---------------------------------------------------------------- priors

    def _given_priors(self, n_features):
        """The priors that do not depend on the data, checked as sklearn's
        ``_check_parameters`` does (before any pass); None where the data decide."""
        given = {
            "weight_concentration_prior": (1.0 / self.n_components
                                           if self.weight_concentration_prior is None
                                           else self.weight_concentration_prior),
            "mean_precision_prior": (1.0 if self.mean_precision_prior is None
                                     else self.mean_precision_prior),
            "mean_prior": None,
            "covariance_prior": None,
        }
        if self.mean_prior is not None:
            given["mean_prior"] = check_array(self.mean_prior, dtype=[np.float64, np.float32],
                                              ensure_2d=False)
            _check_shape(given["mean_prior"], (n_features,), "means")
        if self.degrees_of_freedom_prior is None:
            given["degrees_of_freedom_prior"] = n_features
        elif self.degrees_of_freedom_prior > n_features - 1.0:
            given["degrees_of_freedom_prior"] = self.degrees_of_freedom_prior
        else:
            raise ValueError(
                "The parameter 'degrees_of_freedom_prior' "
                "should be greater than %d, but got %.3f."
                % (n_features - 1, self.degrees_of_freedom_prior))
        if self.covariance_prior is not None:
            given["covariance_prior"] = self._check_covariance_prior(n_features)
        return given

    def _check_covariance_prior(self, n_features):
        if self.covariance_type == "spherical":
            return self.covariance_prior
        prior = check_array(self.covariance_prior, dtype=[np.float64, np.float32],
                            ensure_2d=False)
        if self.covariance_type in ("full", "tied"):
            _check_shape(prior, (n_features, n_features),
                         "%s covariance_prior" % self.covariance_type)
            _check_precision_matrix(prior, self.covariance_type)
        else:
            _check_shape(prior, (n_features,), "%s covariance_prior" % self.covariance_type)
            if np.any(np.less_equal(prior, 0.0)):
                raise ValueError("'%s precision' should be positive" % self.covariance_type)
        return prior

    def _priors(self, data, describe, given):
        """All priors: the given ones, the others from the describe pass (mean,
        variances) or, for a full or tied covariance prior, one more pass."""
        mean = np.asarray(describe["mean"], np.float64)
        mean_prior = mean if given["mean_prior"] is None else given["mean_prior"]
        covariance_prior = given["covariance_prior"]
        if covariance_prior is None:
            variance = np.asarray(describe["m2"]) / (data.n_samples - 1)
            covariance_prior = {
                "diag": lambda: variance,
                "spherical": lambda: variance.mean(),
                "full": lambda: empirical_covariance(
                    data.reduce(scatter_chunk, _kernels.combine_sums, mean)[0], mean),
            }[self.covariance_type if self.covariance_type != "tied" else "full"]()
        return Priors(
            self.weight_concentration_prior_type, float(given["weight_concentration_prior"]),
            float(given["mean_precision_prior"]), np.asarray(mean_prior, np.float64),
            float(given["degrees_of_freedom_prior"]),
            np.asarray(covariance_prior, np.float64))

    # --------------------------------------------------------------- fitting

    def _fit(self, X, *, restore=None, save=None):
        """Fit; return the validated data (for a final prediction) and the chosen state.

        ``save`` is the fit core's checkpoint hook (:func:`~pipeline.mixture._fit.fit_states`);
        ``restore(names)`` its other one, given the names of this fit's runs.
        """
        validate_params(self, CONSTRAINTS)
        X = self._validate_X(X, reset=True)
        n_samples, n_features = X.shape
        if n_samples < self.n_components:
            raise ValueError(
                "Expected n_samples >= n_components "
                f"but got n_components = {self.n_components}, n_samples = {n_samples}")
        given = self._given_priors(n_features)
        dtype = X.dtype
        eps = float(np.finfo(dtype).eps)
        data = ChunkedData(X, persist=self.persist, split_every=self.split_every)
        priors = []
        warm = None
        if self.warm_start and hasattr(self, "converged_"):
            warm = VariationalState(
                self.covariance_type, self.reg_covar, self.tol, self.max_iter, None,
                np.asarray(self.weight_concentration_), self.mean_precision_, self.means_,
                self.degrees_of_freedom_, self.covariances_, self.precisions_cholesky_,
                lower_bound=self.lower_bound_)

        def on_describe(describe):
            # after the describe pass, before initialisation: the priors the data give
            _check_finite(describe["n_nan"], describe["n_inf"], dtype)
            priors.append(self._priors(data, describe, given))
            if warm is not None:
                warm.priors = priors[0]

        def make_state(*args, **params):
            return VariationalState.initial(*args, priors=priors[0], n_samples=n_samples,
                                            eps=eps, **params)

        if warm is not None:
            starts = [Start(state=warm)]
        else:
            random_state = check_random_state(self.random_state)
            seeds = [int(random_state.randint(np.iinfo(np.int32).max))
                     for _ in range(self.n_init)]
            starts = [Start(f"init {i}" if self.n_init > 1 else "",
                            InitJob(self.n_components, self.covariance_type, self.init_params,
                                    seed, self.reg_covar, with_precisions=False),
                            make_state=make_state)
                      for i, seed in enumerate(seeds)]
        fitted = fit_states(
            data, starts, dtype, tol=self.tol, max_iter=self.max_iter,
            check_finite=on_describe, save=save,
            restore=None if restore is None else (
                lambda: restore([start.name for start in starts])),
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
        self._set_fitted(best.priors, best.parameters(), **history)
        self.n_passes_ = data.n_passes
        return X, best

    def fit(self, X, y=None):
        """Estimate the variational parameters, one pass over X per iteration.

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
        X, _ = self._fit(X)
        return self._apply(X, _kernels.predict_chunk, "labels", validated=True)

    def _set_fitted(self, priors, params, *, converged, n_iter, lower_bound, lower_bounds):
        """Set the priors, the parameters (sklearn's ``_get_parameters`` order) and the
        history: the one place they are set."""
        self.weight_concentration_prior_ = priors.weight_concentration_prior
        self.mean_precision_prior_ = priors.mean_precision_prior
        self.mean_prior_ = priors.mean_prior
        self.degrees_of_freedom_prior_ = priors.degrees_of_freedom_prior
        prior = priors.covariance_prior
        self.covariance_prior_ = float(prior) if prior.ndim == 0 else prior
        (weight_concentration, mean_precision, means, degrees_of_freedom, covariances,
         precisions_cholesky) = params
        process = priors.weight_concentration_prior_type == "dirichlet_process"
        self.weight_concentration_ = (
            tuple(np.asarray(a, np.float64) for a in weight_concentration) if process
            else np.asarray(weight_concentration, np.float64))
        self.mean_precision_ = np.asarray(mean_precision, np.float64)
        self.means_ = np.asarray(means, np.float64)
        self.degrees_of_freedom_ = (np.float64(degrees_of_freedom)
                                    if self.covariance_type == "tied"
                                    else np.asarray(degrees_of_freedom, np.float64))
        self.covariances_ = np.asarray(covariances, np.float64)
        self.precisions_cholesky_ = np.asarray(precisions_cholesky, np.float64)
        self.weights_ = mixture_weights(self.weight_concentration_,
                                        priors.weight_concentration_prior_type)
        self.precisions_ = _covariance.precisions_from_cholesky(self.precisions_cholesky_,
                                                                self.covariance_type)
        self.converged_ = bool(converged)
        self.n_iter_ = int(n_iter)
        self.lower_bound_ = float(lower_bound)
        self.lower_bounds_ = [float(v) for v in lower_bounds]
        return self

    @classmethod
    def _from_parameters(cls, priors, params, *, converged, n_iter, lower_bound, lower_bounds,
                         n_features_in=None, feature_names_in=None, **estimator_params):
        """A fitted estimator from its :class:`~pipeline.mixture._variational.Priors`,
        ``params`` (sklearn's ``_get_parameters`` order) and history (a loaded model)."""
        estimator = cls(**estimator_params)
        if n_features_in is not None:
            estimator.n_features_in_ = n_features_in
        if feature_names_in is not None:
            estimator.feature_names_in_ = np.asarray(feature_names_in, dtype=object)
        return estimator._set_fitted(priors, params, converged=converged, n_iter=n_iter,
                                     lower_bound=lower_bound, lower_bounds=lower_bounds)

    def _model(self, dtype):
        """The kernels' model of the fitted variational parameters (as sklearn's
        ``_estimate_weighted_log_prob``)."""
        return variational_model(
            self.weight_concentration_, self.mean_precision_, self.means_,
            self.degrees_of_freedom_, self.precisions_cholesky_, self.covariance_type,
            self.weight_concentration_prior_type, dtype)
