"""Distributed initialisation: every init_params finds well-separated clusters."""

import warnings

import dask.array as da
import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from pipeline.mixture import GaussianMixture

INIT_PARAMS = ["kmeans", "k-means++", "random", "random_from_data"]
CHUNKS = (200, 0, 450, 350, 500)

# what each method needs to succeed here, as it would with sklearn
INIT_KWARGS = {
    "kmeans": {},
    "k-means++": {},
    # random responsibilities start every mean near the global mean; with the default
    # tol EM stops there after 2 iterations (sklearn too: ARI 0.4, measured)
    "random": {"tol": 1e-8, "max_iter": 500},
    # three random rows come from three different blobs with probability 2/9
    "random_from_data": {"n_init": 8},
}


def _blobs():
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 5.0]])
    y = np.repeat([0, 1, 2], 500)
    X = rng.normal(size=(1500, 3)) + centers[y]
    order = rng.permutation(len(X))
    return X[order], y[order]


def _as_input(X, kind):
    return X if kind == "numpy" else da.from_array(X, chunks=(CHUNKS, -1))


@pytest.mark.parametrize("kind", ["numpy", "dask"])
@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_every_init_recovers_well_separated_clusters(client2, init_params, kind):
    X, y = _blobs()
    model = GaussianMixture(3, init_params=init_params, random_state=0,
                            **INIT_KWARGS[init_params])
    labels = np.asarray(model.fit_predict(_as_input(X, kind)))
    assert model.converged_
    assert adjusted_rand_score(y, labels) > 0.95


@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_kmeans_init_centers_are_the_cluster_means(client2, kind):
    X, y = _blobs()
    model = GaussianMixture(3, init_params="kmeans", max_iter=0, random_state=0)
    model.fit(_as_input(X, kind))
    order = np.argsort(model.means_[:, 0] + 2 * model.means_[:, 1])
    expected = np.stack([X[y == k].mean(axis=0) for k in range(3)])
    assert_allclose(model.means_[order], expected, rtol=1e-9, atol=1e-9)
    assert_allclose(model.weights_[order], [1 / 3] * 3, rtol=1e-9)


@pytest.mark.parametrize("init_params", ["k-means++", "random_from_data"])
def test_row_based_inits_start_from_rows_of_X(init_params):
    X, _ = _blobs()
    model = GaussianMixture(3, init_params=init_params, max_iter=0, random_state=1).fit(X)
    # up to sklearn's 10 * eps in nk: mean = x / (1 + 10 eps)
    nearest = np.abs(X[None, :, :] - model.means_[:, None, :]).max(axis=2).min(axis=1)
    assert np.all(nearest < 1e-12), nearest
    assert len({tuple(m) for m in model.means_}) == 3


@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_init_depends_on_random_state(init_params):
    X, _ = _blobs()
    means = [GaussianMixture(3, init_params=init_params, max_iter=0, random_state=seed)
             .fit(X).means_ for seed in (0, 0, 1)]
    assert np.array_equal(means[0], means[1])
    if init_params != "kmeans":  # k-means converges to the same centers from any seed
        assert not np.array_equal(means[0], means[2])


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_given_pieces_replace_the_estimated_ones(covariance_type):
    X, _ = _blobs()
    base = GaussianMixture(3, covariance_type=covariance_type, max_iter=0,
                           random_state=0).fit(X)
    means = base.means_ + 0.5
    weights = np.array([0.2, 0.3, 0.5])
    only_means = GaussianMixture(3, covariance_type=covariance_type, max_iter=0,
                                 means_init=means, random_state=0).fit(X)
    assert np.array_equal(only_means.means_, means)
    assert np.array_equal(only_means.weights_, base.weights_)
    only_weights = GaussianMixture(3, covariance_type=covariance_type, max_iter=0,
                                   weights_init=weights, random_state=0).fit(X)
    assert np.array_equal(only_weights.weights_, weights)
    assert np.array_equal(only_weights.means_, base.means_)
    precisions = base.precisions_ * 2.0
    only_precisions = GaussianMixture(3, covariance_type=covariance_type, max_iter=0,
                                      precisions_init=precisions, random_state=0).fit(X)
    assert_allclose(only_precisions.precisions_, precisions, rtol=1e-12)
    assert_allclose(only_precisions.covariances_, base.covariances_ / 2.0, rtol=1e-9)
    assert np.array_equal(only_precisions.means_, base.means_)


def test_n_init_restarts_advance_in_lock_step():
    X, _ = _blobs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        one = GaussianMixture(3, init_params="random", max_iter=5, tol=0, random_state=0).fit(X)
        four = GaussianMixture(3, init_params="random", max_iter=5, tol=0, n_init=4,
                               random_state=0).fit(X)
    # one pass for NaN/inf, one for the random responsibilities, one per iteration,
    # however many restarts
    assert one.n_passes_ == four.n_passes_ == 1 + 1 + 5


@pytest.mark.parametrize("kind", ["numpy", "dask"])
@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_fewer_distinct_rows_than_components_fit_as_in_sklearn(client2, init_params, kind):
    # two distinct rows, three components: sklearn fits (reg_covar keeps the
    # covariances definite); k-means++ used to fail here once every row sat on a center
    rows = np.random.default_rng(0).normal(size=(2, 2))
    X = np.repeat(rows, 10, axis=0)
    data = X if kind == "numpy" else da.from_array(X, chunks=(7, -1))
    with warnings.catch_warnings():
        # "Number of distinct clusters (2) found smaller than n_clusters (3)"
        warnings.simplefilter("ignore", ConvergenceWarning)
        SkGaussianMixture(3, init_params=init_params, random_state=0).fit(X)
        model = GaussianMixture(3, init_params=init_params, random_state=0).fit(data)
    assert np.all(np.isfinite(model.means_)) and np.all(np.isfinite(model.covariances_))
    assert_allclose(model.weights_.sum(), 1.0)
    assert np.isfinite(model.score(X))
