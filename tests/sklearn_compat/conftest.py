"""scikit-learn's own GaussianMixture tests, run against ``pipeline.GaussianMixture``.

The tests are imported from the installed scikit-learn (``sklearn/mixture/tests``) rather
than copied, so they are exactly those of the version installed. Here: the fixtures that
sklearn's conftest defines for them, and the swap of the estimator they construct.
"""

import numpy as np
import pytest

upstream = pytest.importorskip(
    "sklearn.mixture.tests.test_gaussian_mixture",
    reason="scikit-learn installed without its tests")


@pytest.fixture(params=[np.float32, np.float64])
def global_dtype(request):
    """sklearn's fixture, with float32 always on (sklearn runs it only on request)."""
    return request.param


@pytest.fixture(params=[42])
def global_random_seed(request):
    """sklearn's default seed (its SKLEARN_TESTS_GLOBAL_RANDOM_SEED is not read here)."""
    return request.param


@pytest.fixture(autouse=True)
def our_estimator(monkeypatch):
    """Every ``GaussianMixture(...)`` in sklearn's test module builds ours."""
    from pipeline.mixture import GaussianMixture

    monkeypatch.setattr(upstream, "GaussianMixture", GaussianMixture)
