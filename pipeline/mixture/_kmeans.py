"""k-means on the client, in numpy: what initialisation runs on the sample of the rows.

The algorithm of scikit-learn's ``KMeans(algorithm="lloyd")``: greedy k-means++ seeding
(``2 + log k`` local trials per center, the trial that lowers the potential most kept),
then Lloyd iterations until the labels stop changing or the centers move less than
``tol`` times the mean variance of the features, empty clusters given the rows farthest
from their centers, and the best inertia of ``n_init`` restarts. Computed on data
centered on their mean, in float64, with sample weights as frequency weights.

It is here rather than imported from ``sklearn.cluster`` because a `mixlake run` then
never imports scikit-learn: importing it (with scipy.stats and pandas behind it) took
1.5 to 1.9 s of a 1,000,000-row run's 6.5 s on this 2-core machine. The random streams
differ from scikit-learn's, so the centers of a seed differ; their quality does not
(``tests/test_kmeans.py`` compares the inertias with scikit-learn's on the same samples,
``tests/test_init_quality.py`` and ``benchmarks/init_quality.py`` the fits they start).
"""

import math

import numpy as np

MAX_ITER = 300  # scikit-learn's default
TOL = 1e-4  # scikit-learn's default, relative to the mean variance of the features
BLOCK_ROWS = 16_384  # rows per block of distances (the temporaries stay in cache)
ONE_HOT_ELEMENTS = 2**22  # the largest membership matrix (K x rows, 32 MiB) of a Lloyd step


def _min_sq_distances(X, x_sq, centers):
    """(labels, squared distance to the nearest center) of every row, block by block."""
    c_sq = np.einsum("kd,kd->k", centers, centers)
    labels = np.empty(X.shape[0], dtype=np.intp)
    mins = np.empty(X.shape[0], dtype=np.float64)
    for start in range(0, X.shape[0], BLOCK_ROWS):
        block = slice(start, min(start + BLOCK_ROWS, X.shape[0]))
        d2 = X[block] @ centers.T  # ||x||^2 is added to the minimum only
        d2 *= -2.0
        d2 += c_sq
        nearest = d2.argmin(axis=1)
        labels[block] = nearest
        mins[block] = np.take_along_axis(d2, nearest[:, None], axis=1)[:, 0]
    mins += x_sq
    np.maximum(mins, 0.0, out=mins)
    return labels, mins


def _sq_distances_to(X, x_sq, points):
    """Squared distances (len(points), n) of every row to each of ``points``."""
    d2 = points @ X.T
    d2 *= -2.0
    d2 += x_sq
    d2 += np.einsum("kd,kd->k", points, points)[:, None]
    return np.maximum(d2, 0.0, out=d2)


def kmeans_plusplus(X, x_sq, n_clusters, weights, rng):
    """Greedy k-means++ (scikit-learn's ``_kmeans_plusplus``): the first center drawn by
    weight, each next one the best of ``2 + log k`` trials drawn by weight x squared
    distance to the centers so far."""
    n_local_trials = 2 + int(math.log(n_clusters))
    centers = np.empty((n_clusters, X.shape[1]))
    first = rng.choice(X.shape[0], p=weights / weights.sum())
    centers[0] = X[first]
    closest = _sq_distances_to(X, x_sq, X[first : first + 1])[0]
    potential = closest @ weights
    for c in range(1, n_clusters):
        cumulative = np.cumsum(weights * closest)
        trials = np.searchsorted(cumulative, rng.uniform(size=n_local_trials) * potential)
        np.clip(trials, None, X.shape[0] - 1, out=trials)
        distances = _sq_distances_to(X, x_sq, X[trials])
        np.minimum(closest, distances, out=distances)
        potentials = distances @ weights
        best = int(np.argmin(potentials))
        potential, closest = potentials[best], distances[best]
        centers[c] = X[trials[best]]
    return centers


def _weighted_sums(X, labels, weights, n_clusters):
    """(per-cluster sum of w x, per-cluster sum of w): one product with the rows' weighted
    memberships (K x rows) when that is small, else a bincount per feature."""
    if n_clusters * X.shape[0] <= ONE_HOT_ELEMENTS:
        members = (labels == np.arange(n_clusters)[:, None]) * weights
        return members @ X, members.sum(axis=1)
    counts = np.bincount(labels, weights=weights, minlength=n_clusters)
    sums = np.empty((n_clusters, X.shape[1]))
    for d in range(X.shape[1]):
        sums[:, d] = np.bincount(labels, weights=weights * X[:, d], minlength=n_clusters)
    return sums, counts


def _relocate_empty(X, weights, labels, mins, sums, counts):
    """Give each empty cluster one of the rows farthest from their centers (as
    scikit-learn's ``_relocate_empty_clusters_dense``), moving its weight."""
    empty = np.flatnonzero(counts == 0)
    if not len(empty):
        return
    far = np.argsort(-mins, kind="stable")[: len(empty)]
    for cluster, row in zip(empty, far):
        old = labels[row]
        sums[old] -= weights[row] * X[row]
        counts[old] -= weights[row]
        sums[cluster] = weights[row] * X[row]
        counts[cluster] = weights[row]
        labels[row] = cluster


def lloyd(X, x_sq, centers, weights, tol, max_iter=MAX_ITER):
    """Lloyd iterations from ``centers`` until the labels stop changing or the centers
    move less than ``tol`` (squared, summed); returns (centers, inertia)."""
    labels, mins = _min_sq_distances(X, x_sq, centers)
    for _ in range(max_iter):
        sums, counts = _weighted_sums(X, labels, weights, len(centers))
        _relocate_empty(X, weights, labels, mins, sums, counts)
        new = sums / np.maximum(counts, np.finfo(np.float64).tiny)[:, None]
        shift = float(((new - centers) ** 2).sum())
        centers = new
        new_labels, mins = _min_sq_distances(X, x_sq, centers)
        unchanged = np.array_equal(new_labels, labels)
        labels = new_labels
        if unchanged or shift <= tol:
            break
    return centers, float(mins @ weights)


def kmeans(X, n_clusters, *, sample_weight=None, n_init=1, seed=0, tol=TOL,
           max_iter=MAX_ITER):
    """Cluster centers of ``X`` (the best inertia of ``n_init`` k-means++ / Lloyd runs).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    n_clusters : int
        At most the number of rows.
    sample_weight : ndarray of shape (n_samples,), optional
        Non-negative frequency weights, not all zero.
    seed : int
        Seeds the generator of every restart (``numpy.random.default_rng``).

    Returns
    -------
    centers : ndarray of shape (n_clusters, n_features), float64
    """
    X = np.asarray(X, dtype=np.float64)
    if not 1 <= n_clusters <= X.shape[0]:
        raise ValueError(f"n_clusters={n_clusters} must be between 1 and the "
                         f"{X.shape[0]} rows")
    weights = (np.ones(X.shape[0]) if sample_weight is None
               else np.asarray(sample_weight, dtype=np.float64))
    mean = np.average(X, axis=0, weights=weights)
    X = X - mean  # as scikit-learn: distances of centered data lose fewer digits
    x_sq = np.einsum("nd,nd->n", X, X)
    tol = tol * float(np.mean(np.var(X, axis=0)))  # scikit-learn's unweighted _tolerance
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(n_init):
        start = kmeans_plusplus(X, x_sq, n_clusters, weights, rng)
        centers, inertia = lloyd(X, x_sq, start, weights, tol, max_iter)
        if best is None or inertia < best[1]:
            best = (centers, inertia)
    return best[0] + mean
