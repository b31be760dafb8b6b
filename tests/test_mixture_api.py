"""The estimator's API against scikit-learn's, after sklearn's test_gaussian_mixture.py.

Wherever sklearn raises or prints, the same call on our estimator is made and the two
messages compared, so a user moving from ``sklearn.mixture.GaussianMixture`` reads the
same thing.
"""

import copy
import logging
import re
import warnings

import dask.array as da
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.utils.estimator_checks import parametrize_with_checks

from pipeline.mixture import GaussianMixture

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
CHUNKS = (150, 0, 250, 200)


def _blobs(n_per_blob=200, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0], [8.0, 0.0], [0.0, 8.0]])
    y = np.repeat(np.arange(3), n_per_blob)
    X = rng.normal(size=(3 * n_per_blob, 2)) + centers[y]
    order = rng.permutation(len(X))
    return X[order], y[order]


def _dask(X):
    return da.from_array(X, chunks=(CHUNKS, -1)) if len(X) == sum(CHUNKS) else (
        da.from_array(X, chunks=(max(1, len(X) // 3), -1)))


def _message(callable_, exception=Exception):
    """The message of what ``callable_`` raises (which must be ``exception``)."""
    with pytest.raises(exception) as info:
        callable_()
    return str(info.value)


def _sorted_sets(message):
    """sklearn prints StrOptions as a set, in hash order: sort the items inside {...}."""
    return re.sub(r"\{([^{}]*)\}",
                  lambda m: "{" + ", ".join(sorted(m.group(1).split(", "))) + "}", message)


@pytest.fixture(scope="module")
def blobs():
    return _blobs()


@pytest.fixture(scope="module")
def fitted(blobs):
    X, _ = blobs
    return GaussianMixture(3, random_state=0).fit(X)


# ------------------------------------------------------------ fit / predict


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("max_iter", [1, 2, 20])
def test_fit_predict_equals_fit_then_predict(blobs, covariance_type, max_iter):
    X, _ = blobs
    # noisy overlapping data: labels still move after each iteration
    X = X + np.random.default_rng(1).normal(scale=2.0, size=X.shape)
    kwargs = {"covariance_type": covariance_type, "max_iter": max_iter, "random_state": 0,
              "tol": 1e-12}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = GaussianMixture(3, **kwargs).fit_predict(X)
        expected = GaussianMixture(3, **kwargs).fit(X).predict(X)
    assert np.array_equal(labels, expected)


def test_predict_proba_rows_sum_to_one_and_argmax_is_predict(blobs, fitted):
    X, _ = blobs
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), 3)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    assert np.array_equal(proba.argmax(axis=1), fitted.predict(X))


def test_predictions_equal_sklearn_with_the_same_parameters(blobs, fitted):
    X, _ = blobs
    reference = SkGaussianMixture(3)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        setattr(reference, name, getattr(fitted, name))
    reference.n_features_in_ = 2
    assert np.array_equal(fitted.predict(X), reference.predict(X))
    assert_allclose(fitted.predict_proba(X), reference.predict_proba(X), rtol=1e-9,
                    atol=1e-12)
    assert_allclose(fitted.score_samples(X), reference.score_samples(X), rtol=1e-12)
    assert_allclose(fitted.score(X), reference.score(X), rtol=1e-12)
    assert_allclose(fitted.bic(X), reference.bic(X), rtol=1e-12)
    assert_allclose(fitted.aic(X), reference.aic(X), rtol=1e-12)


def test_score_is_the_mean_of_score_samples(blobs, fitted):
    X, _ = blobs
    assert_allclose(fitted.score(X), fitted.score_samples(X).mean(), rtol=1e-14)
    assert isinstance(fitted.score(X), float)


# ------------------------------------------------------------ warm start, n_init


@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_warm_start_continues_where_the_last_fit_stopped(client2, blobs, kind):
    X, _ = blobs
    X = X if kind == "numpy" else _dask(X)
    kwargs = {"random_state": 0, "tol": 0, "init_params": "random_from_data"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cold = GaussianMixture(3, max_iter=6, **kwargs).fit(X)
        warm = GaussianMixture(3, max_iter=3, warm_start=True, **kwargs).fit(X)
        assert warm.n_iter_ == 3
        first_bounds = list(warm.lower_bounds_)
        # n_init is ignored on a warm start: no restart, no new initialisation
        warm.set_params(n_init=4).fit(X)
    assert warm.n_iter_ == 3
    assert_allclose(first_bounds + warm.lower_bounds_, cold.lower_bounds_, rtol=1e-12)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert_allclose(getattr(warm, name), getattr(cold, name), rtol=1e-10, err_msg=name)


def test_warm_start_converges_by_small_steps_like_sklearn(blobs):
    X, _ = blobs
    for cls in (GaussianMixture, SkGaussianMixture):
        model = cls(3, max_iter=1, warm_start=True, random_state=0, tol=1e-3)
        steps = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            while not model.fit(X).converged_:
                steps += 1
                assert steps < 50
        assert model.n_iter_ == 1 and steps >= 1


def test_without_warm_start_a_refit_starts_over(blobs):
    X, _ = blobs
    model = GaussianMixture(3, random_state=0, max_iter=100)
    first = model.fit(X).means_.copy()
    assert np.array_equal(model.fit(X).means_, first)


def test_n_init_keeps_the_best_lower_bound(blobs, capsys):
    X, _ = blobs
    X = X + np.random.default_rng(2).normal(scale=1.5, size=X.shape)
    # random responsibilities with the default tol stop at different places
    kwargs = {"init_params": "random", "random_state": 0, "max_iter": 8, "verbose": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        one = GaussianMixture(3, **kwargs).fit(X)
        capsys.readouterr()
        five = GaussianMixture(3, n_init=5, **kwargs).fit(X)
    printed = [float(b) for b in re.findall(r"lower bound (-?[\d.]+)\.", capsys.readouterr().out)]
    assert len(printed) == 5 and len(set(printed)) > 1
    assert_allclose(five.lower_bound_, max(printed), atol=1e-5)
    # the first restart is the single fit's: the best of five is at least as good
    assert five.lower_bound_ >= one.lower_bound_
    assert five.lower_bounds_[-1] == five.lower_bound_


# ------------------------------------------------------------ regularisation


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_degenerate_data_need_reg_covar(client2, covariance_type, kind):
    # sklearn's test_regularisation: two points repeated, ten components
    X = np.vstack((np.ones((5, 5)), np.zeros((5, 5))))
    data = X if kind == "numpy" else da.from_array(X, chunks=(3, -1))
    kwargs = {"covariance_type": covariance_type, "random_state": 0}
    with warnings.catch_warnings():
        # k-means finds 2 distinct clusters for 10 centers: sklearn's KMeans warns
        warnings.simplefilter("ignore", ConvergenceWarning)
        expected = _message(lambda: SkGaussianMixture(10, reg_covar=0, **kwargs).fit(X),
                            ValueError)
        message = _message(lambda: GaussianMixture(10, reg_covar=0, **kwargs).fit(data),
                           ValueError)
        model = GaussianMixture(10, reg_covar=1e-6, **kwargs).fit(data)
    assert "increase reg_covar" in message
    assert message == expected
    assert np.all(np.isfinite(model.covariances_))


# ------------------------------------------------------------ sample


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_sample_shapes_labels_and_sklearn_equality(blobs, covariance_type):
    X, _ = blobs
    model = GaussianMixture(3, covariance_type=covariance_type, random_state=3).fit(X)
    samples, labels = model.sample(2000)
    assert samples.shape == (2000, 2) and labels.shape == (2000,)
    assert labels.dtype == np.int64 and set(np.unique(labels)) == {0, 1, 2}
    for k in range(3):
        assert_allclose(samples[labels == k].mean(axis=0), model.means_[k], atol=0.3)
    assert_allclose(np.bincount(labels) / 2000, model.weights_, atol=0.05)
    # the same parameters and random_state draw the same numbers as sklearn
    reference = SkGaussianMixture(3, covariance_type=covariance_type, random_state=3)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        setattr(reference, name, getattr(model, name))
    expected_samples, expected_labels = reference.sample(2000)
    assert np.array_equal(labels, expected_labels)
    assert_allclose(samples, expected_samples, rtol=1e-12)


def test_sample_zero_raises_sklearn_error(fitted):
    reference = SkGaussianMixture(3, random_state=0).fit(_blobs()[0])
    expected = _message(lambda: reference.sample(0), ValueError)
    assert _message(lambda: fitted.sample(0), ValueError) == expected


# ------------------------------------------------------------ information criteria


@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_bic_picks_the_number_of_blobs(client2, blobs, kind):
    X, _ = blobs
    data = X if kind == "numpy" else _dask(X)
    candidates = range(1, 6) if kind == "numpy" else range(2, 5)
    bic = {k: GaussianMixture(k, init_params="k-means++", random_state=0).fit(data).bic(data)
           for k in candidates}
    assert min(bic, key=bic.get) == 3
    aic = {k: GaussianMixture(k, random_state=0).fit(X).aic(X) for k in (2, 3)}
    assert aic[3] < aic[2]


def test_bic_aic_definitions(blobs, fitted):
    X, _ = blobs
    n_parameters = 3 * 2 * 3 / 2 + 3 * 2 + 3 - 1  # full covariances, means, weights
    log_likelihood = fitted.score(X) * len(X)
    assert_allclose(fitted.bic(X), -2 * log_likelihood + n_parameters * np.log(len(X)))
    assert_allclose(fitted.aic(X), -2 * log_likelihood + 2 * n_parameters)


# ------------------------------------------------------------ iterations


def test_max_iter_zero_gives_the_initial_parameters_without_warning(blobs):
    X, _ = blobs
    start = GaussianMixture(3, random_state=0).fit(X)
    init = {"weights_init": start.weights_, "means_init": start.means_ + 0.1,
            "precisions_init": start.precisions_}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = GaussianMixture(3, max_iter=0, **init).fit(X)
        kmeans = GaussianMixture(3, max_iter=0, random_state=0).fit(X)
    assert (model.n_iter_, model.converged_, model.lower_bound_, model.lower_bounds_) == (
        0, False, -np.inf, [])
    assert np.array_equal(model.weights_, init["weights_init"])
    assert np.array_equal(model.means_, init["means_init"])
    assert_allclose(model.precisions_, init["precisions_init"], rtol=1e-12)
    assert_allclose(model.covariances_, start.covariances_, rtol=1e-9)
    assert kmeans.n_iter_ == 0 and kmeans.means_.shape == (3, 2)


def test_convergence_warning_when_max_iter_is_reached(blobs):
    X, _ = blobs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        SkGaussianMixture(3, max_iter=1, tol=0, random_state=0).fit(X)
    with pytest.warns(ConvergenceWarning) as sklearn_record:
        SkGaussianMixture(3, max_iter=1, tol=0, random_state=0).fit(X)
    with pytest.warns(ConvergenceWarning) as record:
        model = GaussianMixture(3, max_iter=1, tol=0, random_state=0).fit(X)
    assert [str(w.message) for w in record] == [str(w.message) for w in sklearn_record]
    assert not model.converged_ and model.n_iter_ == 1


def test_no_warning_when_converged(blobs):
    X, _ = blobs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = GaussianMixture(3, random_state=0).fit(X)
    assert model.converged_ and 1 <= model.n_iter_ < 100


# ------------------------------------------------------------ input errors


@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_samples", "score",
                                    "sample", "bic", "aic"])
def test_not_fitted_error(blobs, method):
    X, _ = blobs
    args = () if method == "sample" else (X,)
    expected = _message(lambda: getattr(SkGaussianMixture(3), method)(*args), NotFittedError)
    message = _message(lambda: getattr(GaussianMixture(3), method)(*args), NotFittedError)
    assert message == expected.replace("SkGaussianMixture", "GaussianMixture")


@pytest.mark.parametrize("kind", ["numpy", "dask"])
@pytest.mark.parametrize("method", ["predict", "predict_proba", "score_samples"])
def test_predict_with_the_wrong_number_of_features(client2, blobs, fitted, kind, method):
    X, _ = blobs
    reference = SkGaussianMixture(3, random_state=0).fit(X)
    wrong = np.hstack([X, X[:, :1]])
    expected = _message(lambda: getattr(reference, method)(wrong), ValueError)
    data = wrong if kind == "numpy" else _dask(wrong)
    assert _message(lambda: getattr(fitted, method)(data), ValueError) == expected
    assert expected == "X has 3 features, but GaussianMixture is expecting 2 features as input."


@pytest.mark.parametrize("kind", ["numpy", "dask"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_raise_sklearn_errors(client2, blobs, fitted, kind, dtype, bad):
    X, _ = blobs
    X = X.astype(dtype)
    X[123, 1] = bad
    expected = _message(lambda: SkGaussianMixture(3).fit(X), ValueError)
    data = X if kind == "numpy" else _dask(X)
    assert _message(lambda: GaussianMixture(3).fit(data), ValueError) == expected
    # lazy predictions fail the same way when computed
    predicted = _message(lambda: np.asarray(fitted.predict(data)), ValueError)
    assert predicted == expected


@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_nan_on_a_warm_start_raises_the_nan_error(client2, blobs, kind):
    X, _ = blobs
    model = GaussianMixture(3, warm_start=True, random_state=0).fit(
        X if kind == "numpy" else _dask(X))
    bad = X.copy()
    bad[5, 0] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        model.fit(bad if kind == "numpy" else _dask(bad))


@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_more_components_than_samples(client2, kind):
    X = np.random.default_rng(0).normal(size=(4, 2))
    expected = _message(lambda: SkGaussianMixture(5).fit(X), ValueError)
    data = X if kind == "numpy" else da.from_array(X, chunks=(2, -1))
    assert _message(lambda: GaussianMixture(5).fit(data), ValueError) == expected


@pytest.mark.parametrize("kind", ["numpy", "dask"])
@pytest.mark.parametrize("shape", [(600,), (1, 2), (0, 2), (600, 0)])
def test_bad_shapes_raise_sklearn_errors(client2, kind, shape):
    X = np.ones(shape)
    expected = _message(lambda: SkGaussianMixture(1).fit(X), ValueError)
    data = X if kind == "numpy" else da.from_array(X)
    message = _message(lambda: GaussianMixture(1).fit(data), ValueError)
    if len(shape) == 1 and kind == "dask":  # sklearn prints the values; a dask array has none
        assert message.startswith("Expected 2D array, got 1D array instead")
        assert message.endswith(expected.split("\n")[-1])
    else:
        assert message == expected


# ------------------------------------------------------------ init arrays


def _bad_init_arrays(covariance_type):
    good_precisions = {
        "full": np.stack([np.eye(2)] * 3),
        "tied": np.eye(2),
        "diag": np.ones((3, 2)),
        "spherical": np.ones(3),
    }[covariance_type]
    not_positive = -good_precisions
    not_symmetric = np.array([[1.0, 0.5], [0.0, 1.0]])
    cases = {
        "weights shape": {"weights_init": [0.5, 0.5]},
        "weights range": {"weights_init": [-0.5, 0.5, 1.0]},
        "weights sum": {"weights_init": [0.5, 0.5, 0.5]},
        "means shape": {"means_init": np.zeros((2, 2))},
        "means features": {"means_init": np.zeros((3, 3))},
        "precisions shape": {"precisions_init": np.ones(7)},
        "precisions not positive": {"precisions_init": not_positive},
    }
    if covariance_type == "full":
        cases["precisions not symmetric"] = {"precisions_init": np.stack([not_symmetric] * 3)}
    if covariance_type == "tied":
        cases["precisions not symmetric"] = {"precisions_init": not_symmetric}
    return cases


INIT_ARRAY_CASES = [(covariance_type, case) for covariance_type in COVARIANCE_TYPES
                    for case in _bad_init_arrays(covariance_type)]


@pytest.mark.parametrize(("covariance_type", "case"), INIT_ARRAY_CASES)
def test_init_array_errors_match_sklearn(blobs, covariance_type, case):
    X, _ = blobs
    kwargs = {"covariance_type": covariance_type, **_bad_init_arrays(covariance_type)[case]}
    expected = _message(lambda: SkGaussianMixture(3, **kwargs).fit(X), ValueError)
    assert _message(lambda: GaussianMixture(3, **kwargs).fit(X), ValueError) == expected


# ------------------------------------------------------------ parameters


INVALID_PARAMETERS = [
    {"n_components": 0},
    {"n_components": 1.5},
    {"n_components": "3"},
    {"covariance_type": "x"},
    {"tol": -1},
    {"tol": "a"},
    {"reg_covar": -1e-6},
    {"max_iter": -1},
    {"max_iter": 2.0},
    {"n_init": 0},
    {"init_params": "x"},
    {"weights_init": "abc"},
    {"means_init": 3},
    {"random_state": "x"},
    {"random_state": -1},
    {"warm_start": 1},
    {"verbose": -1},
    {"verbose": 1.5},
    {"verbose_interval": 0},
]


@pytest.mark.parametrize("params", INVALID_PARAMETERS, ids=lambda p: "-".join(map(str, p.items())))
def test_parameter_errors_match_sklearn(blobs, params):
    X, _ = blobs
    expected = _message(lambda: SkGaussianMixture(**params).fit(X), ValueError)
    message = _message(lambda: GaussianMixture(**params).fit(X), ValueError)
    assert _sorted_sets(message) == _sorted_sets(expected)


@pytest.mark.parametrize("params", [{"dtype": np.int32}, {"persist": "sometimes"},
                                    {"split_every": 1}])
def test_our_own_parameters_are_validated_too(blobs, params):
    X, _ = blobs
    name = next(iter(params))
    with pytest.raises(ValueError, match=f"The '{name}' parameter of GaussianMixture must be"):
        GaussianMixture(**params).fit(X)


def test_bools_are_ints_as_in_sklearn(blobs):
    X, _ = blobs
    # sklearn's Interval(Integral) constraint accepts True: so do we
    assert GaussianMixture(n_init=True, random_state=0).fit(X).n_iter_ >= 1


def test_get_params_set_params_clone():
    model = GaussianMixture(4, covariance_type="diag", tol=1e-4, random_state=3,
                            split_every=4)
    params = model.get_params()
    sklearn_params = SkGaussianMixture().get_params()
    assert set(params) == set(sklearn_params) | {"dtype", "persist", "split_every"}
    defaults = GaussianMixture().get_params()
    assert {k: defaults[k] for k in sklearn_params} == sklearn_params
    assert (params["n_components"], params["covariance_type"], params["tol"]) == (4, "diag",
                                                                                  1e-4)
    assert model.set_params(n_components=2, tol=1e-2) is model
    assert (model.n_components, model.tol) == (2, 1e-2)
    twin = clone(model)
    assert twin is not model and twin.get_params() == model.get_params()
    with pytest.raises(ValueError, match="Invalid parameter"):
        model.set_params(n_clusters=3)


def test_clone_of_a_fitted_model_is_unfitted(blobs, fitted):
    X, _ = blobs
    twin = clone(fitted)
    assert not hasattr(twin, "means_")
    with pytest.raises(NotFittedError):
        twin.predict(X)
    assert np.array_equal(copy.deepcopy(fitted).predict(X), fitted.predict(X))


def test_keyword_only_after_n_components():
    with pytest.raises(TypeError):
        GaussianMixture(3, "diag")


# ------------------------------------------------------------ feature names


def test_feature_names_from_a_pandas_dataframe(blobs):
    X, _ = blobs
    frame = pd.DataFrame(X, columns=["a", "b"])
    model = GaussianMixture(3, random_state=0).fit(frame)
    assert list(model.feature_names_in_) == ["a", "b"] and model.n_features_in_ == 2
    assert not hasattr(GaussianMixture(3, random_state=0).fit(X), "feature_names_in_")
    # a refit on unnamed data forgets the names
    assert not hasattr(model.fit(X), "feature_names_in_")


@pytest.mark.parametrize("kind", ["pandas", "dask"])
def test_feature_name_mismatch_matches_sklearn(client2, blobs, kind):
    X, _ = blobs
    frame = pd.DataFrame(X, columns=["a", "b"])
    renamed = frame.rename(columns={"a": "c"})
    reference = SkGaussianMixture(3, random_state=0).fit(frame)
    expected = _message(lambda: reference.predict(renamed), ValueError)
    if kind == "dask":
        frame, renamed = dd.from_pandas(frame, npartitions=3), dd.from_pandas(renamed,
                                                                              npartitions=3)
    model = GaussianMixture(3, random_state=0).fit(frame)
    assert _message(lambda: model.predict(renamed), ValueError) == expected
    # fitted with names, predicting without: sklearn's warning
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        model.predict(X if kind == "pandas" else _dask(X))


def test_feature_names_from_a_dask_dataframe(client2, blobs):
    X, _ = blobs
    frame = dd.from_pandas(pd.DataFrame(X, columns=["a", "b"]), npartitions=3)
    model = GaussianMixture(3, random_state=0).fit(frame)
    assert list(model.feature_names_in_) == ["a", "b"] and model.n_features_in_ == 2
    labels = model.predict(frame)
    assert isinstance(labels, da.Array)
    assert np.array_equal(labels.compute(), model.predict(pd.DataFrame(X, columns=["a", "b"])))
    assert model.bic(frame) == pytest.approx(
        model.bic(pd.DataFrame(X, columns=["a", "b"])), rel=1e-12)


def test_integer_column_names_are_not_feature_names(client2, blobs):
    X, _ = blobs
    for frame in (pd.DataFrame(X), dd.from_pandas(pd.DataFrame(X), npartitions=2)):
        model = GaussianMixture(3, random_state=0).fit(frame)
        assert not hasattr(model, "feature_names_in_") and model.n_features_in_ == 2


# ------------------------------------------------------------ dtypes


@pytest.mark.parametrize("kind", ["numpy", "dask"])
def test_float32_input_keeps_float32_attributes_and_outputs_as_sklearn(client2, blobs, kind):
    X32 = blobs[0].astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reference = SkGaussianMixture(3, random_state=0, max_iter=3).fit(X32)
        model = GaussianMixture(3, random_state=0, max_iter=3).fit(
            X32 if kind == "numpy" else _dask(X32))
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert getattr(model, name).dtype == getattr(reference, name).dtype == np.float32
    data = X32 if kind == "numpy" else _dask(X32)
    assert model.predict_proba(data).dtype == reference.predict_proba(X32).dtype
    assert model.score_samples(data).dtype == reference.score_samples(X32).dtype
    # the fit itself ran on float64 statistics: a warm start continues from the float32
    # attributes in float64
    model.set_params(warm_start=True, max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(data)
    assert model.means_.dtype == np.float32


def test_float32_input_is_computed_in_float32_unless_told(blobs):
    X, _ = blobs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        as32 = GaussianMixture(3, random_state=0, max_iter=3).fit(X.astype(np.float32))
        as64 = GaussianMixture(3, random_state=0, max_iter=3,
                               dtype=np.float64).fit(X.astype(np.float32))
        ints = GaussianMixture(3, random_state=0, max_iter=3).fit(np.round(X * 10).astype(int))
    assert as32.score_samples(X.astype(np.float32)).dtype == np.float32
    assert as64.score_samples(X.astype(np.float32)).dtype == np.float64
    assert ints.score_samples(X).dtype == np.float64
    assert not np.array_equal(as32.means_, as64.means_)
    assert_allclose(as32.means_, as64.means_, rtol=1e-4)


# ------------------------------------------------------------ verbose, logging


def _skeleton(text):
    """Printed lines with every number replaced by #."""
    return [re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", "#", line) for line in text.splitlines()]


@pytest.mark.parametrize("verbose", [1, 2])
def test_verbose_prints_like_sklearn(blobs, capsys, verbose):
    X, _ = blobs
    kwargs = {"verbose": verbose, "verbose_interval": 2, "max_iter": 6, "tol": 0,
              "random_state": 0, "n_init": 2}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        SkGaussianMixture(3, **kwargs).fit(X)
        expected = capsys.readouterr().out
        model = GaussianMixture(3, **kwargs).fit(X)
    printed = capsys.readouterr().out
    iterations = [line for line in printed.splitlines() if "Iteration" in line]
    assert len(iterations) == 2 * model.n_iter_ // 2
    if verbose == 2:
        assert all("time lapse" in line and "ll change" in line for line in iterations)
    # same lines, same order, up to the numbers and the restart's name (they run together)
    ours = sorted(_skeleton(re.sub(r"\[init \d+\] ", "", printed)))
    assert ours == sorted(_skeleton(expected))


def test_logger_reports_each_iteration(blobs, caplog):
    X, _ = blobs
    with caplog.at_level(logging.INFO, logger="pipeline.mixture"):
        model = GaussianMixture(3, random_state=0).fit(X)
    records = [r for r in caplog.records
               if r.name == "pipeline.mixture" and "iteration" in r.getMessage()]
    assert len(records) == model.n_iter_ >= 2
    assert all(r.levelno == logging.INFO for r in records)
    assert "log-likelihood" in records[-1].getMessage()


# ------------------------------------------------------------ sklearn's estimator checks


@parametrize_with_checks([GaussianMixture(random_state=0)])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
