"""BayesianGaussianMixture against sklearn's, from the same initial responsibilities.

Parity: ``init_params='random'`` draws each chunk's responsibilities from
``default_rng([seed, chunk index])`` with ``seed`` the first draw of ``random_state``
(see pipeline/mixture/_init.py); the tests build the same responsibilities and hand them
to sklearn's ``_initialize`` (:class:`_SkFromResp`). From there both run the same
variational iterations; what differs is the arithmetic (one fused pass per iteration,
statistics about the means, the tree reduction, the lower bound from merged statistics).
"""

import functools
import json
import warnings

import dask.array as da
import numpy as np
import pytest
from distributed import Client
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import BayesianGaussianMixture as SkBayesianGaussianMixture
from sklearn.utils import check_random_state

from pipeline import BayesianGaussianMixture
from pipeline.mixture._variational import VariationalState

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
PRIOR_TYPES = ["dirichlet_process", "dirichlet_distribution"]
FITTED = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_",
          "mean_precision_", "degrees_of_freedom_", "weight_concentration_", "lower_bound_",
          "lower_bounds_", "mean_prior_", "covariance_prior_")
CHUNKS = (200, 77, 0, 313, 150, 160)  # 900 rows, one empty chunk
PARITY = 1e-6  # the bound; observed differences are ~1e-13 (see the report)


@functools.cache
def _blobs(n=900, seed=0):
    """Three overlapping anisotropic blobs in 3-D, shuffled."""
    rng = np.random.default_rng(seed)
    sizes = (n // 2, n // 3, n - n // 2 - n // 3)
    X = np.vstack([rng.normal(size=(m, 3)) @ rng.normal(size=(3, 3))
                   + rng.normal(scale=4.0, size=3) for m in sizes])
    return X[rng.permutation(n)]


def _random_resp(chunks, n_components, random_state):
    """The responsibilities our 'random' initialisation draws for this row chunking."""
    seed = int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    resp = np.vstack([np.random.default_rng([seed, i]).uniform(size=(rows, n_components))
                      for i, rows in enumerate(chunks)])
    return resp / resp.sum(axis=1)[:, None]


class _SkFromResp(SkBayesianGaussianMixture):
    """sklearn's estimator initialised from given responsibilities (``resp``)."""

    def _initialize_parameters(self, X, random_state, xp=None):
        self._initialize(X, self.resp)


def _fits(X, chunks, **params):
    params = {"n_components": 5, "init_params": "random", "random_state": 0, **params}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = BayesianGaussianMixture(**params).fit(X)
        theirs = _SkFromResp(**params)
        theirs.resp = _random_resp(chunks, params["n_components"], params["random_state"])
        theirs.fit(_blobs())
    return ours, theirs


def _relative_difference(ours, theirs):
    """Largest difference over the fitted attributes, relative to max(|sklearn's|, 1)."""
    worst = 0.0
    for name in FITTED:
        a = np.asarray(getattr(ours, name), np.float64)
        b = np.asarray(getattr(theirs, name), np.float64).reshape(a.shape)
        worst = max(worst, float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1.0),
                                        initial=0.0)))
    return worst


def _assert_parity(ours, theirs, X):
    assert (ours.n_iter_, ours.converged_) == (theirs.n_iter_, theirs.converged_)
    assert _relative_difference(ours, theirs) < PARITY
    assert np.array_equal(ours.predict(X), theirs.predict(X))
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=PARITY)
    np.testing.assert_allclose(ours.score_samples(X), theirs.score_samples(X),
                               rtol=PARITY)


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_agrees_with_sklearn_from_the_same_responsibilities(covariance_type, prior_type):
    X = _blobs()
    ours, theirs = _fits(X, (len(X),), covariance_type=covariance_type,
                         weight_concentration_prior_type=prior_type, max_iter=200, tol=1e-6)
    assert ours.n_iter_ > 10
    _assert_parity(ours, theirs, X)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_agrees_with_sklearn_given_priors(covariance_type):
    prior = {"full": np.eye(3) * 2, "tied": np.eye(3) * 3, "diag": np.full(3, 0.5),
             "spherical": 0.7}[covariance_type]
    ours, theirs = _fits(
        _blobs(), (len(_blobs()),), covariance_type=covariance_type, max_iter=50, tol=0,
        weight_concentration_prior=5.0, mean_precision_prior=0.1, mean_prior=[1.0, -1.0, 0.0],
        degrees_of_freedom_prior=4.5, covariance_prior=prior)
    _assert_parity(ours, theirs, _blobs())


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_agrees_with_sklearn_on_dask_input(client2, covariance_type, prior_type):
    X = _blobs()
    ours, theirs = _fits(da.from_array(X, chunks=(CHUNKS, -1)), CHUNKS,
                         covariance_type=covariance_type,
                         weight_concentration_prior_type=prior_type, max_iter=20, tol=0)
    assert ours.n_iter_ == 20
    _assert_parity(ours, theirs, X)


def _dask_fit(**params):
    X = da.from_array(_blobs(), chunks=(CHUNKS, -1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return BayesianGaussianMixture(**{"n_components": 5, "random_state": 0,
                                          "max_iter": 15, "tol": 0, **params}).fit(X)


@pytest.mark.parametrize(("covariance_type", "prior_type", "init_params"), [
    ("full", "dirichlet_process", "kmeans"),
    ("tied", "dirichlet_distribution", "random_from_data"),
    ("diag", "dirichlet_process", "k-means++"),
    ("spherical", "dirichlet_distribution", "random"),
])
def test_one_and_two_workers_give_identical_fits(cluster1, cluster2, covariance_type,
                                                 prior_type, init_params):
    fits = []
    for cluster in (cluster1, cluster2):
        with Client(cluster):
            fits.append(_dask_fit(covariance_type=covariance_type, init_params=init_params,
                                  weight_concentration_prior_type=prior_type))
    one, two = fits
    for name in FITTED:
        assert np.array_equal(np.asarray(getattr(one, name)),
                              np.asarray(getattr(two, name))), name
    assert (one.n_iter_, one.converged_, one.n_passes_) == (two.n_iter_, two.converged_,
                                                            two.n_passes_)


def test_a_pass_per_iteration(client2):
    # describe (NaN check, mean and variances), the full covariance prior, the random
    # responsibilities, then one pass per iteration
    assert _dask_fit(init_params="random").n_passes_ == 3 + 15
    assert _dask_fit(init_params="random", covariance_type="diag").n_passes_ == 2 + 15


def test_fit_predict_on_dask_input_is_lazy_and_equals_fit_then_predict(client2):
    Xd = da.from_array(_blobs(), chunks=(CHUNKS, -1))
    params = {"n_components": 4, "random_state": 0, "init_params": "k-means++"}
    labels = BayesianGaussianMixture(**params).fit_predict(Xd)
    assert isinstance(labels, da.Array) and labels.chunks == (CHUNKS,)
    fitted = BayesianGaussianMixture(**params).fit(Xd)
    assert np.array_equal(labels.compute(), fitted.predict(Xd).compute())
    np.testing.assert_allclose(fitted.predict_proba(Xd).compute(),
                               fitted.predict_proba(_blobs()), rtol=1e-12)


def test_nan_in_dask_input_names_the_estimator(client2):
    X = _blobs().copy()
    X[5, 1] = np.nan
    with pytest.raises(ValueError, match="BayesianGaussianMixture does not accept missing"):
        BayesianGaussianMixture(n_components=2).fit(da.from_array(X, chunks=(CHUNKS, -1)))


# ------------------------------------------------------------- sklearn's API


@pytest.mark.parametrize(("name", "value"), [
    ("weight_concentration_prior_type", "dirichlet"), ("weight_concentration_prior", 0),
    ("mean_precision_prior", -1.0), ("mean_prior", "mean"), ("degrees_of_freedom_prior", 0),
    ("covariance_prior", "cov"), ("n_components", 0), ("init_params", "kmeans++"),
])
def test_parameter_errors_read_as_sklearn(name, value):
    X = _blobs()[:50]
    with pytest.raises(ValueError) as theirs:
        SkBayesianGaussianMixture(**{name: value}).fit(X)
    expected = str(theirs.value)
    if "str among" in expected:  # sklearn shows a set, in hash order; ours sorted
        expected = expected.split(" must be")[0]
    with pytest.raises(ValueError) as ours:
        BayesianGaussianMixture(**{name: value}).fit(X)
    assert str(ours.value).startswith(expected)


@pytest.mark.parametrize(("params", "message"), [
    ({"mean_prior": [0.0, 1.0]}, "'means' should have the shape of (3,)"),
    ({"covariance_prior": np.eye(2)}, "'full covariance_prior' should have the shape"),
    ({"covariance_prior": -np.eye(3)}, "'full precision' should be symmetric"),
    ({"covariance_type": "diag", "covariance_prior": [1.0, -1.0, 1.0]},
     "'diag precision' should be positive"),
    ({"degrees_of_freedom_prior": 2.0}, "should be greater than 2, but got 2.000."),
])
def test_prior_errors_read_as_sklearn(params, message):
    for estimator in (SkBayesianGaussianMixture, BayesianGaussianMixture):
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            estimator(**params).fit(_blobs()[:50])


@pytest.mark.parametrize("prior_type", PRIOR_TYPES)
def test_covariance_types_agree_after_initialisation(prior_type):
    """sklearn's test_compare_covar_type, through the public API: max_iter=0 keeps the
    parameters of the initialisation (the variational M-step of the k-means labels)."""
    X = _blobs()
    fitted = {c: BayesianGaussianMixture(
        n_components=6, covariance_type=c, max_iter=0, random_state=0,
        weight_concentration_prior_type=prior_type).fit(X) for c in COVARIANCE_TYPES}
    full = fitted["full"].covariances_ * fitted["full"].degrees_of_freedom_[:, None, None]
    tied = fitted["tied"].covariances_ * fitted["tied"].degrees_of_freedom_
    np.testing.assert_allclose(tied, full.mean(axis=0), rtol=1e-12)
    diag = fitted["diag"].covariances_ * fitted["diag"].degrees_of_freedom_[:, None]
    np.testing.assert_allclose(diag, np.array([np.diag(c) for c in full]), rtol=1e-12)
    spherical = fitted["spherical"].covariances_ * fitted["spherical"].degrees_of_freedom_
    np.testing.assert_allclose(spherical, diag.mean(axis=1), rtol=1e-12)
    assert all(f.n_iter_ == 0 and f.lower_bound_ == -np.inf for f in fitted.values())


def test_unneeded_components_get_no_weight():
    rng = np.random.default_rng(1)
    centers = rng.uniform(-10, 10, size=(4, 4))
    X = centers[rng.integers(4, size=4000)] + rng.normal(size=(4000, 4))
    fitted = BayesianGaussianMixture(n_components=10, random_state=0, max_iter=500).fit(X)
    assert int((fitted.weights_ > 0.01).sum()) == 4
    assert fitted.converged_


# ------------------------------------------------------------------ the state


def test_the_state_survives_a_checkpoint_bit_for_bit():
    fitted = BayesianGaussianMixture(n_components=3, max_iter=3, tol=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        saved = []
        fitted._fit(_blobs(), save=lambda states, errors, passes: saved.append(
            [s.to_dict() for s in states]))
    values, arrays = saved[-1][0]
    values = json.loads(json.dumps(values))
    restored = VariationalState.from_dict(values, arrays)
    again = restored.to_dict()
    assert again[0] == values
    for name, array in arrays.items():
        assert np.array_equal(again[1][name], array), name
    assert restored.n_iter == 3 and restored.lower_bound == fitted.lower_bound_
    # and a fit resumed from it is the fit itself
    resumed = BayesianGaussianMixture(n_components=3, max_iter=3, tol=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        resumed._fit(_blobs(), restore=lambda names: ([restored], [None], 5))
    for name in FITTED:
        assert np.array_equal(np.asarray(getattr(resumed, name)),
                              np.asarray(getattr(fitted, name))), name
