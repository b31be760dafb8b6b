"""k-means on a sample of the rows starts EM no worse than scikit-learn's k-means on all.

The issue asks for "no worse starts: over 10 seeds, the final log-likelihood per row is
on average at least sklearn's k-means init's on the same data". What sampling risks is
the small clusters: a cluster of 1 % of the rows has ~30 rows in a sample of 3,000, and
k-means (k-means++ seeding, then Lloyd) on the sample must still give it a center, or EM
starts with two components in one large cluster and none on the small one, and ends in a
worse optimum. ``benchmarks/init_quality.py`` measures the full-size cases; this is a
scaled-down one, with the sample at 5 % of the rows.
"""

import numpy as np
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from threadpoolctl import threadpool_limits

from pipeline.mixture import GaussianMixture, _init

# six clusters from 50 % down to 1 % of the rows, broad large ones and tight small ones
WEIGHTS = (0.5, 0.25, 0.13, 0.08, 0.03, 0.01)
SCALES = (1.5, 1.2, 1.0, 0.8, 0.6, 0.5)
SEEDS = range(10)
# Two fits that reach the same optimum stop at different points of it (EM stops once an
# iteration gains less than tol = 1e-3): on these data their means over the seeds differ
# by ~1e-5. One seed out of 10 in a worse optimum costs the mean at least 6.6e-3 here
# (the smallest such loss, 0.066 per row, measured with a 50-row sample). 1e-3, EM's own
# tol, is far above the former and well below the latter.
TOLERANCE = 1e-3


def _unequal_clusters(n_samples=60_000, n_features=4, seed=1):
    """Five clusters 6 apart around the origin (scales 0.5 to 1.5 per feature, so they
    overlap a little) and the 1 % one, tight, 14 away from the largest."""
    rng = np.random.default_rng([seed, 3])
    K, D = len(WEIGHTS), n_features
    means = np.vstack([np.zeros(D), 6.0 * np.eye(D)[: K - 2],
                       np.full((1, D), -14.0 / np.sqrt(D))])
    factors = ((rng.normal(scale=0.35 / np.sqrt(D), size=(K, D, D)) + np.eye(D))
               * np.asarray(SCALES)[:, None, None])
    labels = np.repeat(np.arange(K), rng.multinomial(n_samples, WEIGHTS))
    rng.shuffle(labels)
    X = np.einsum("nd,nde->ne", rng.standard_normal((n_samples, D)), factors[labels])
    return X + means[labels]


def test_kmeans_on_a_five_percent_sample_starts_no_worse_than_sklearn(monkeypatch):
    monkeypatch.setattr(_init, "KMEANS_SAMPLE_ROWS", 3_000)
    monkeypatch.setattr(_init, "KMEANS_SAMPLE_ROWS_PER_CLUSTER", 100)
    X = _unequal_clusters()
    assert _init.kmeans_sample_size(len(WEIGHTS)) == len(X) // 20
    # one BLAS thread: with two, the 20 fits took 42 s instead of 13 s while another
    # process held one of this machine's two cores
    with threadpool_limits(1):
        ours = [GaussianMixture(len(WEIGHTS), covariance_type="full", random_state=seed)
                .fit(X).score(X) for seed in SEEDS]
        theirs = [SkGaussianMixture(len(WEIGHTS), random_state=seed).fit(X).score(X)
                  for seed in SEEDS]
    assert np.mean(ours) >= np.mean(theirs) - TOLERANCE, (ours, theirs)
