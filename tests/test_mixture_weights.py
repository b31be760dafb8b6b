"""Sample weights as frequency weights: a row of integer weight w is w copies of it.

Given the same initial parameters, a weighted fit is the fit of the repeated rows (every
parameter within 1e-10, the same n_iter_), for every covariance type, on numpy and on
dask input at any chunking and on 1 or 2 workers; weight 0 is a dropped row. Every
initialisation draws and counts rows by weight. Bad weights raise sklearn's errors.
"""

import functools
import warnings

import dask.array as da
import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.validation import _check_sample_weight

from pipeline.mixture import GaussianMixture

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
INIT_PARAMS = ["kmeans", "k-means++", "random", "random_from_data"]
PARAMETERS = ("weights_", "means_", "covariances_", "precisions_cholesky_")
# uneven row chunks, one empty
CHUNKS = (50, 0, 97, 60, 33)


@functools.cache
def _data():
    """Three overlapping blobs (EM takes a dozen iterations) and integer weights 0 to 3."""
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [3.0, 0.5], [0.5, 3.0]])
    X = np.vstack([rng.normal(size=(80, 2)) * s + c for s, c in zip((1.0, 0.8, 1.2), centers)])
    X = X[rng.permutation(len(X))]
    weights = rng.integers(0, 4, size=len(X)).astype(np.float64)
    assert len(X) == sum(CHUNKS) and (weights == 0).sum() > 20
    return X, weights


@functools.cache
def _start(covariance_type):
    """Initial parameters, away from the optimum, given to both fits."""
    X, _ = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        first = GaussianMixture(3, covariance_type=covariance_type, init_params="random",
                                max_iter=1, random_state=0).fit(X)
    return {"weights_init": first.weights_, "means_init": first.means_,
            "precisions_init": first.precisions_}


def _fit(X, covariance_type, sample_weight=None, **kwargs):
    model = GaussianMixture(3, covariance_type=covariance_type, tol=1e-9, max_iter=500,
                            **_start(covariance_type), **kwargs)
    return model.fit(X, sample_weight=sample_weight)


@functools.cache
def _repeated(covariance_type):
    X, weights = _data()
    return _fit(np.repeat(X, weights.astype(int), axis=0), covariance_type)


def _assert_same_model(ours, reference, tol=1e-10):
    for name in PARAMETERS:
        assert_allclose(getattr(ours, name), getattr(reference, name), rtol=0, atol=tol,
                        err_msg=name)
    assert ours.n_iter_ == reference.n_iter_ > 5
    assert_allclose(ours.lower_bounds_, reference.lower_bounds_, rtol=0, atol=tol)


def _as_dask(values, chunks=CHUNKS):
    return da.from_array(values, chunks=(chunks,) + ((-1,) if values.ndim == 2 else ()))


# ------------------------------------------------------------ weighted = repeated


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_integer_weights_fit_as_the_repeated_rows_on_numpy(covariance_type):
    X, weights = _data()
    _assert_same_model(_fit(X, covariance_type, weights), _repeated(covariance_type))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("client", ["client1", "client2"])
def test_integer_weights_fit_as_the_repeated_rows_on_dask(request, client, covariance_type):
    request.getfixturevalue(client)
    X, weights = _data()
    # the weights chunked otherwise than X: rechunked to X's rows
    ours = _fit(_as_dask(X), covariance_type, _as_dask(weights, (120, 120)))
    _assert_same_model(ours, _repeated(covariance_type))


def test_a_weighted_dask_fit_is_the_same_on_1_and_2_workers(request):
    X, weights = _data()
    fits = []
    for client in ("client1", "client2"):
        request.getfixturevalue(client)
        fits.append(_fit(_as_dask(X), "full", _as_dask(weights), init_params="kmeans"))
    for name in PARAMETERS:
        assert np.array_equal(getattr(fits[0], name), getattr(fits[1], name)), name


def test_a_weighted_streamed_fit_equals_the_persisted_one(client2):
    X, weights = _data()
    persisted = _fit(_as_dask(X), "diag", _as_dask(weights), persist=True)
    streamed = _fit(_as_dask(X), "diag", _as_dask(weights), persist=False)
    for name in PARAMETERS:
        assert np.array_equal(getattr(persisted, name), getattr(streamed, name)), name


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_a_zero_weight_is_a_dropped_row(covariance_type):
    X, weights = _data()
    weights = (weights > 0).astype(np.float64)
    X = X.copy()
    X[weights == 0] *= 1e3  # far away: they would pull any component they counted in
    _assert_same_model(_fit(X, covariance_type, weights),
                       _fit(X[weights > 0], covariance_type))


def test_weights_of_one_fit_as_no_weights():
    X, _ = _data()
    _assert_same_model(_fit(X, "tied", np.ones(len(X))), _fit(X, "tied"), tol=1e-12)


@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_fit_predict_with_weights_is_fit_then_predict(client2, kind):
    X, weights = _data()
    data, w = (X, weights) if kind == "numpy" else (_as_dask(X), _as_dask(weights))
    model = GaussianMixture(3, random_state=0)
    labels = np.asarray(model.fit_predict(data, sample_weight=w))
    assert np.array_equal(labels, np.asarray(model.predict(data)))
    refit = GaussianMixture(3, random_state=0).fit(data, sample_weight=w)
    assert np.array_equal(refit.means_, model.means_)


# ------------------------------------------------------------- initialisation


def _far_zero_weight_rows():
    """The blobs, plus a far cluster of weight 0 that a center must never come from."""
    X, weights = _data()
    far = np.random.default_rng(1).normal(size=(40, 2)) + [60.0, 60.0]
    return np.vstack([X, far]), np.concatenate([weights, np.zeros(len(far))])


@pytest.mark.parametrize("kind", ["numpy", "dask"])
@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_every_init_ignores_rows_of_weight_0(client2, init_params, kind):
    X, weights = _far_zero_weight_rows()
    data, w = (X, weights) if kind == "numpy" else (_as_dask(X, (100, 0, 100, 80)),
                                                    _as_dask(weights, (100, 0, 100, 80)))
    for seed in range(3):
        start = GaussianMixture(3, init_params=init_params, max_iter=0, random_state=seed)
        start.fit(data, sample_weight=w)
        assert np.all(start.means_ < 10), start.means_
        if init_params in ("kmeans", "random"):
            assert_allclose(start.weights_.sum(), 1.0, rtol=1e-9)
        else:
            # as sklearn: one start row per component, 1 / total (repeated rows: 1 / n)
            assert_allclose(start.weights_, 1.0 / weights.sum(), rtol=1e-9)
            # the start rows themselves (up to sklearn's 10 eps in nk), of positive weight
            distance = np.abs(X[None] - start.means_[:, None]).max(axis=2)
            assert np.all(weights[distance.argmin(axis=1)] > 0)
            assert np.all(distance.min(axis=1) < 1e-12)


@pytest.mark.parametrize("init_params", ["k-means++", "random_from_data"])
def test_row_based_inits_draw_rows_by_weight(init_params):
    # two blobs, one of them 1000 times lighter: start rows come from the heavy one
    X, _ = _data()
    weights = np.where(X[:, 0] > 1.5, 1.0, 1e-3)
    chosen = []
    for seed in range(10):
        start = GaussianMixture(2, init_params=init_params, max_iter=0, random_state=seed)
        chosen.append(start.fit(X, sample_weight=weights).means_[:, 0])
    heavy = np.mean(np.concatenate(chosen) > 1.5)
    # random_from_data draws both rows by weight; k-means++ its first row, the second
    # by weight x squared distance (which a light row's distance makes up for a little)
    assert heavy > (0.9 if init_params == "random_from_data" else 0.6), heavy


def test_kmeans_init_is_the_weighted_means_of_its_clusters():
    rng = np.random.default_rng(3)
    centers = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    X = np.vstack([rng.normal(size=(60, 2)) + c for c in centers])
    y = np.repeat(np.arange(3), 60)
    weights = rng.integers(0, 4, size=len(X)).astype(np.float64)
    start = GaussianMixture(3, init_params="kmeans", max_iter=0, random_state=0)
    start.fit(X, sample_weight=weights)
    for mean, weight in zip(start.means_, start.weights_):
        members = y == np.argmin(((centers - mean) ** 2).sum(axis=1))
        assert_allclose(mean, np.average(X[members], axis=0, weights=weights[members]),
                        rtol=1e-9)
        assert_allclose(weight, weights[members].sum() / weights.sum(), rtol=1e-9)


def test_fewer_rows_of_positive_weight_than_components_raise():
    X, _ = _data()
    weights = np.zeros(len(X))
    weights[:2] = 1.0
    with pytest.raises(ValueError, match="n_components = 3, n_samples = 2 .*positive"):
        GaussianMixture(3).fit(X, sample_weight=weights)


# ------------------------------------------------------------- score, BIC, AIC


@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_score_bic_aic_with_weights(client2, kind):
    X, weights = _data()
    model = GaussianMixture(3, random_state=0).fit(X, sample_weight=weights)
    data, w = (X, weights) if kind == "numpy" else (_as_dask(X), _as_dask(weights))
    log_prob = model.score_samples(X)  # unweighted, as sklearn's
    assert_allclose(model.score(data, sample_weight=w),
                    np.average(log_prob, weights=weights), rtol=1e-12)
    repeated = np.repeat(X, weights.astype(int), axis=0)
    assert_allclose(model.score(data, sample_weight=w), model.score(repeated), rtol=1e-12)
    total, n_positive = weights @ log_prob, np.count_nonzero(weights)
    p = model._n_parameters()
    assert_allclose(model.bic(data, sample_weight=w), -2 * total + p * np.log(n_positive),
                    rtol=1e-12)
    assert_allclose(model.aic(data, sample_weight=w), -2 * total + 2 * p, rtol=1e-12)
    # without weights: as before
    assert_allclose(model.bic(data), -2 * log_prob.sum() + p * np.log(len(X)), rtol=1e-12)


# ------------------------------------------------------------------ bad weights


def _bad_weights(n):
    return {
        "negative": np.r_[-1.0, np.ones(n - 1)],
        "nan": np.r_[np.nan, np.ones(n - 1)],
        "inf": np.r_[np.inf, np.ones(n - 1)],
        "all zero": np.zeros(n),
        "wrong length": np.ones(n - 1),
        "2-D": np.ones((n, 1)),
    }


@pytest.mark.parametrize("kind", ["numpy", "dask"])
@pytest.mark.parametrize("bad", list(_bad_weights(3)))
def test_bad_weights_raise_sklearns_errors(client2, kind, bad):
    X, _ = _data()
    weights = _bad_weights(len(X))[bad]
    with pytest.raises(ValueError) as expected:
        _check_sample_weight(weights, X, ensure_non_negative=True)
    data, w = (X, weights) if kind == "numpy" else (_as_dask(X), da.from_array(weights))
    for call in (lambda: GaussianMixture(3).fit(data, sample_weight=w),
                 lambda: GaussianMixture(3).fit_predict(data, sample_weight=w)):
        with pytest.raises(ValueError) as ours:
            call()
        assert str(ours.value) == str(expected.value)
    fitted = GaussianMixture(3, random_state=0).fit(X)
    with pytest.raises(ValueError) as ours:
        fitted.score(data, sample_weight=w)
    assert str(ours.value) == str(expected.value)
