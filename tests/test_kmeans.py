"""k-means in numpy (pipeline.mixture._kmeans): scikit-learn's algorithm, as good as its
KMeans on the same rows, without importing scikit-learn."""

import numpy as np
import pytest
from sklearn.cluster import KMeans

from pipeline.mixture import _kmeans


def _blobs(n, d, k, spread, seed=0, sizes=None):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=spread, size=(k, d))
    sizes = sizes or [n // k] * k
    return np.vstack([rng.normal(size=(m, d)) + c for m, c in zip(sizes, centers)])


def _inertia(X, centers, weights=None):
    d2 = ((X[:, None, :] - centers[None]) ** 2).sum(axis=2).min(axis=1)
    return float(d2 @ (np.ones(len(X)) if weights is None else weights))


@pytest.mark.parametrize("n_features, n_clusters, spread", [
    (16, 8, 4.0),  # the benchmark's shape: separated clusters
    (4, 6, 1.5),   # overlapping clusters: several local optima
    (2, 20, 3.0),  # many clusters in few dimensions
])
def test_inertia_is_as_low_as_sklearns(n_features, n_clusters, spread):
    X = _blobs(6_000, n_features, n_clusters, spread)
    for seed in range(3):
        ours = _inertia(X, _kmeans.kmeans(X, n_clusters, n_init=3, seed=seed))
        theirs = KMeans(n_clusters, n_init=3, random_state=seed).fit(X).inertia_
        assert ours <= theirs * 1.01, (seed, ours, theirs)


def test_weights_are_frequencies():
    """Integer weights find the optimum of the repeated rows: the same inertia as
    scikit-learn's weighted KMeans, and the centers of the rows repeated."""
    rng = np.random.default_rng(1)
    X = _blobs(3_000, 3, 5, 5.0)
    weights = rng.integers(0, 4, size=len(X)).astype(float)
    ours = _kmeans.kmeans(X, 5, sample_weight=weights, n_init=3, seed=0)
    theirs = KMeans(5, n_init=3, random_state=0).fit(X, sample_weight=weights).inertia_
    assert _inertia(X, ours, weights) <= theirs * (1 + 1e-9)
    repeated = _kmeans.kmeans(np.repeat(X, weights.astype(int), axis=0), 5, n_init=3, seed=0)
    order = lambda c: c[np.lexsort(c.T)]  # noqa: E731
    np.testing.assert_allclose(order(ours), order(repeated), rtol=1e-10, atol=1e-10)


def test_an_empty_cluster_takes_the_farthest_row():
    X = np.vstack([np.zeros((50, 2)), np.full((50, 2), 10.0), [[30.0, 30.0]]])
    x = X - X.mean(axis=0)
    start = np.array([[-100.0, -100.0], [0.0, 0.0], [100.0, 100.0]]) - X.mean(axis=0)
    centers, inertia = _kmeans.lloyd(x, np.einsum("nd,nd->n", x, x), start,
                                     np.ones(len(X)), tol=0.0)
    assert np.all(np.isfinite(centers))
    found = sorted(map(tuple, np.round(centers + X.mean(axis=0), 9)))
    assert found == [(0.0, 0.0), (10.0, 10.0), (30.0, 30.0)]
    assert inertia == pytest.approx(0.0, abs=1e-9)


def test_seeded_and_exact_on_as_many_clusters_as_rows():
    X = _blobs(500, 3, 4, 3.0)
    np.testing.assert_array_equal(_kmeans.kmeans(X, 4, seed=7), _kmeans.kmeans(X, 4, seed=7))
    rows = X[:5]
    centers = _kmeans.kmeans(rows, 5, seed=0)
    np.testing.assert_allclose(centers[np.lexsort(centers.T)], rows[np.lexsort(rows.T)],
                               atol=1e-12)


def test_float32_rows_give_float64_centers():
    X = _blobs(2_000, 4, 3, 6.0).astype(np.float32)
    centers = _kmeans.kmeans(X, 3, seed=0)
    assert centers.dtype == np.float64 and centers.shape == (3, 4)


def test_more_clusters_than_rows_is_refused():
    with pytest.raises(ValueError, match="n_clusters=4 must be between 1 and the 3 rows"):
        _kmeans.kmeans(np.zeros((3, 2)), 4)


def test_more_restarts_never_keep_a_worse_optimum():
    # the restarts draw from one stream: the first 3 of 5 are the 3 of n_init=3
    X = _blobs(6_000, 4, 6, 1.5, seed=3)
    for seed in range(5):
        three = _inertia(X, _kmeans.kmeans(X, 6, n_init=3, seed=seed))
        five = _inertia(X, _kmeans.kmeans(X, 6, n_init=5, seed=seed))
        assert five <= three * (1 + 1e-12), (seed, three, five)
