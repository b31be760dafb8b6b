"""The model selection's pick without scikit-learn (pipeline.mixture._fitted.FittedMixture):
the same attributes, predictions and saved model as the estimator it stands for."""

import inspect
import json

import numpy as np
import pytest

from pipeline import store
from pipeline.mixture import GaussianMixture, _kernels
from pipeline.mixture._fitted import FittedMixture
from pipeline.selection import select


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(2)
    return np.vstack([rng.normal(size=(400, 3)) + shift for shift in (0.0, 6.0, -6.0)])


def test_the_defaults_it_keeps_are_the_estimators():
    defaults = inspect.signature(GaussianMixture).parameters
    ours = inspect.signature(FittedMixture).parameters
    assert ours["verbose_interval"].default == defaults["verbose_interval"].default


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_pick_is_the_estimator_it_stands_for(blobs, covariance_type, dtype, tmp_path):
    result = select(blobs, n_components=[2, 3], covariance_types=[covariance_type],
                    random_state=0, dtype=dtype)
    model, estimator = result.model, result.estimator
    assert isinstance(model, FittedMixture) and isinstance(estimator, GaussianMixture)
    assert result.estimator is estimator  # built once
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        value = getattr(model, name)
        assert value.dtype == getattr(estimator, name).dtype == np.float64
        np.testing.assert_array_equal(value, getattr(estimator, name))
    for name in ("converged_", "n_iter_", "lower_bound_", "lower_bounds_"):
        assert getattr(model, name) == getattr(estimator, name)
    assert {k: getattr(model, k) for k in store.ESTIMATOR_PARAMS} == {
        k: v for k, v in estimator.get_params().items() if k in store.ESTIMATOR_PARAMS}
    X = blobs.astype(dtype)
    np.testing.assert_array_equal(_kernels.predict_chunk(X, model._model(np.dtype(dtype))),
                                  estimator.predict(X))
    assert model._n_parameters() == estimator._n_parameters()
    # saved either way: the same files, byte for byte
    paths = [str(tmp_path / name) for name in ("model", "estimator")]
    for fitted, path in zip((model, estimator), paths):
        store.save_model(fitted, path, features=["a", "b", "c"])
    for name in ("model.json", "params.npz"):
        first, second = ((tmp_path / folder / name).read_bytes()
                         for folder in ("model", "estimator"))
        assert first == second, name
    loaded, _ = store.load_model(paths[0])
    np.testing.assert_array_equal(loaded.predict(X), estimator.predict(X))
    plain, _ = store.load_model(paths[0], estimator=False)
    assert isinstance(plain, FittedMixture) and not isinstance(plain, GaussianMixture)
    for name in ("means_", "precisions_cholesky_", "lower_bounds_", "dtype", "n_init"):
        np.testing.assert_array_equal(getattr(plain, name), getattr(loaded, name))
    np.testing.assert_array_equal(
        _kernels.predict_chunk(X, plain._model(np.dtype(dtype))), estimator.predict(X))
    assert json.loads((tmp_path / "model" / "model.json").read_text())["params"]["dtype"] == (
        None if dtype == "float64" else "float32")
