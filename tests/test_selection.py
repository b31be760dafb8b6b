"""Model selection: lock-step candidates, pass counting, agreement with solo fits."""

import warnings

import dask.array as da
import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning

from pipeline import GaussianMixture
from pipeline.selection import select

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=6000, n_features=3, centers=3, cluster_std=0.7,
                      random_state=3)
    return X, y


def _solo(X, k, covariance_type, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianMixture(k, covariance_type=covariance_type, **kw).fit(X)


def test_grid_costs_no_more_passes_than_its_slowest_candidate(blobs):
    X, _ = blobs
    Xd = da.from_array(X, chunks=(1000, 3))
    result = select(Xd, n_components=[2, 3, 4], covariance_types=COVARIANCE_TYPES,
                    random_state=0, max_iter=50)
    solo_passes = [_solo(Xd, k, c, random_state=0, max_iter=50).n_passes_
                   for k in (2, 3, 4) for c in COVARIANCE_TYPES]
    # the grid adds exactly one pass: the likelihood under the final parameters
    assert result.n_passes <= max(solo_passes) + 1
    assert result.n_passes < sum(solo_passes) / 4


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_each_candidate_equals_its_solo_fit(blobs, covariance_type):
    X, _ = blobs
    result = select(X, n_components=[2, 3], covariance_types=COVARIANCE_TYPES, n_init=2,
                    random_state=7, max_iter=30)
    for candidate in result.candidates:
        if candidate.covariance_type != covariance_type or candidate.init != 0:
            continue
        # n_init=2 in the grid draws two seeds; the solo fit with n_init=2 runs both
        solo = _solo(X, candidate.n_components, covariance_type, random_state=7, n_init=2,
                     max_iter=30)
        restarts = [c for c in result.candidates if c.covariance_type == covariance_type
                    and c.n_components == candidate.n_components]
        best = max(restarts, key=lambda c: c.state.lower_bound)
        np.testing.assert_array_equal(best.state.means, solo.means_)
        np.testing.assert_array_equal(best.state.covariances, solo.covariances_)
        assert best.state.n_iter == solo.n_iter_


def test_bic_picks_the_true_number_of_components(blobs):
    X, _ = blobs
    result = select(X, n_components=[1, 2, 3, 4, 5], covariance_types=["full", "diag"],
                    random_state=0)
    assert result.best.n_components == 3
    assert result.criterion == "bic"
    chosen = result.estimator
    assert chosen.n_components == 3
    np.testing.assert_allclose(chosen.bic(X), result.best.bic, rtol=1e-9)
    np.testing.assert_allclose(chosen.aic(X), result.best.aic, rtol=1e-9)
    aic = select(X, n_components=[2, 3], covariance_types=["full"], random_state=0,
                 criterion="aic")
    assert aic.best.n_components == 3 and aic.criterion == "aic"


def test_a_failing_candidate_is_recorded_and_the_others_go_on():
    # two far-apart triangles (6 distinct rows) repeated: 2 components fit, 8 cannot all
    # get a covariance without reg_covar
    triangle = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    X = np.repeat(np.vstack([triangle, triangle + 20]), 40, axis=0)
    result = select(X, n_components=[2, 8, 300], covariance_types=["full"], random_state=0,
                    reg_covar=0.0)
    by_k = {c.n_components: c for c in result.candidates}
    assert by_k[300].error and "exceeds" in by_k[300].error
    assert by_k[8].error and "reg_covar" in by_k[8].error
    assert by_k[2].error is None and result.best.n_components == 2
    row = by_k[8].row()
    assert row["error"] and row["bic"] is None


def test_every_candidate_failing_raises():
    X = np.zeros((50, 2))
    with pytest.raises(ValueError, match="every candidate failed"):
        select(X, n_components=[2], covariance_types=["full"], reg_covar=0.0, random_state=0)


@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_weighted_criteria_use_the_weighted_log_likelihood_and_rows_of_positive_weight(
        blobs, kind):
    X, _ = blobs
    weights = np.random.default_rng(0).integers(0, 3, size=len(X)).astype(np.float64)
    data, w = (X, weights) if kind == "numpy" else (
        da.from_array(X, chunks=(1000, 3)), da.from_array(weights, chunks=1500))
    result = select(data, n_components=[2, 3], covariance_types=["full", "diag"],
                    random_state=0, max_iter=30, sample_weight=w)
    for candidate in result.candidates:
        state = candidate.state
        model = GaussianMixture._from_parameters(
            state.parameters(), **state.history(), n_components=candidate.n_components,
            covariance_type=candidate.covariance_type)
        assert np.isclose(candidate.log_likelihood, model.score(X, sample_weight=weights),
                          rtol=1e-12)
        assert np.isclose(candidate.bic, model.bic(X, sample_weight=weights), rtol=1e-12)
        assert np.isclose(candidate.aic, model.aic(X, sample_weight=weights), rtol=1e-12)
        # each candidate is its solo weighted fit (on the same chunks)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            solo = GaussianMixture(candidate.n_components,
                                   covariance_type=candidate.covariance_type,
                                   random_state=0, max_iter=30).fit(data, sample_weight=w)
        np.testing.assert_array_equal(state.means, solo.means_)
    assert result.best.n_components == 3
