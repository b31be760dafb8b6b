"""Saved models: exact round trip without pickle, and damaged files refused by name."""

import json
import zipfile

import numpy as np
import pytest

from pipeline import GaussianMixture
from pipeline.store import ModelFileError, load_model, model_id, save_model

FEATURES = ["x0", "x1", "x2"]
COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def blobs(n=300, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0, 0.0], [6.0, 6.0, 0.0], [0.0, 7.0, 7.0]])
    labels = rng.integers(3, size=n)
    return centers[labels] + rng.standard_normal((n, 3)) * [1.0, 0.5, 1.5]


@pytest.fixture(scope="module")
def X():
    return blobs()


@pytest.fixture(scope="module")
def estimators(X):
    return {ct: GaussianMixture(3, covariance_type=ct, random_state=0).fit(X)
            for ct in COVARIANCE_TYPES}


@pytest.fixture
def saved(tmp_path, estimators):
    """A folder holding a saved full-covariance model."""
    path = tmp_path / "model"
    save_model(estimators["full"], str(path), features=FEATURES)
    return path


def assert_same_predictions(original, loaded, X):
    assert np.array_equal(loaded.predict(X), original.predict(X))
    assert np.array_equal(loaded.predict_proba(X), original.predict_proba(X))
    assert np.array_equal(loaded.score_samples(X), original.score_samples(X))


# ------------------------------------------------------------------ round trip


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_round_trip_predicts_exactly_the_same(tmp_path, estimators, X, covariance_type):
    original = estimators[covariance_type]
    ident = save_model(original, str(tmp_path / "m"), features=FEATURES,
                       extra={"run_id": "r1"})
    loaded, meta = load_model(str(tmp_path / "m"))
    assert_same_predictions(original, loaded, X)
    assert np.array_equal(loaded.sample(5)[0].shape, (5, 3))
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        assert np.array_equal(getattr(loaded, name), getattr(original, name)), name
    assert loaded.covariance_type == covariance_type
    assert loaded.n_components == 3 and loaded.n_features_in_ == 3
    assert loaded.converged_ == original.converged_ and loaded.n_iter_ == original.n_iter_
    assert loaded.lower_bound_ == original.lower_bound_
    assert ident == meta["model_id"] == model_id(original) == model_id(loaded)
    assert meta["run"] == {"run_id": "r1"}
    assert meta["preprocessing"] is None


def test_params_hold_no_objects_and_load_without_pickle(saved):
    with np.load(saved / "params.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == ["covariances", "means", "precisions_cholesky", "weights"]
        for name in npz.files:
            assert npz[name].dtype == np.float64, name
    meta = json.loads((saved / "model.json").read_text())
    assert meta["format"] == "mixlake-model" and meta["format_version"] == 1


def test_feature_names_and_scaler_round_trip(tmp_path, estimators, X):
    mean, scale = np.array([1.0, -2.0, 3.5]), np.array([0.5, 2.0, 1e-3])
    save_model(estimators["diag"], str(tmp_path / "m"), features=FEATURES,
               preprocessing={"mean": mean, "scale": scale})
    loaded, meta = load_model(str(tmp_path / "m"))
    assert meta["features"] == FEATURES and meta["standardized"] is True
    # fitted on an array: no feature_names_in_, so predicting on an array does not warn
    assert not hasattr(loaded, "feature_names_in_")
    assert np.array_equal(meta["preprocessing"]["mean"], mean)
    assert np.array_equal(meta["preprocessing"]["scale"], scale)
    with np.load(tmp_path / "m" / "params.npz", allow_pickle=False) as npz:
        assert {"scaler_mean", "scaler_scale"} <= set(npz.files)


def test_round_trip_of_a_model_fitted_on_a_dataframe(tmp_path, X):
    import pandas as pd

    frame = pd.DataFrame(X, columns=FEATURES)
    original = GaussianMixture(3, random_state=0).fit(frame)
    save_model(original, str(tmp_path / "m"), features=FEATURES)
    loaded, _ = load_model(str(tmp_path / "m"))
    assert list(loaded.feature_names_in_) == FEATURES
    assert_same_predictions(original, loaded, frame)
    with pytest.raises(ValueError, match="feature names"):
        loaded.predict(frame[FEATURES[::-1]])


def test_round_trip_keeps_the_compute_dtype(tmp_path, X):
    original = GaussianMixture(3, random_state=np.int64(3), dtype="float32").fit(X)
    save_model(original, str(tmp_path / "m"), features=FEATURES)
    loaded, meta = load_model(str(tmp_path / "m"))
    assert meta["params"]["random_state"] == 3
    assert loaded.predict_proba(X).dtype == np.float32
    assert_same_predictions(original, loaded, X)


def test_save_refuses_a_feature_list_of_the_wrong_length(tmp_path, estimators):
    with pytest.raises(ValueError, match="3 features"):
        save_model(estimators["full"], str(tmp_path / "m"), features=["x0", "x1"])


# ------------------------------------------------------------------ damaged files


def rewrite_npz(path, **changes):
    """Re-save params.npz with some arrays replaced (None removes one)."""
    with np.load(path / "params.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays.update(changes)
    np.savez(path / "params.npz", **{k: v for k, v in arrays.items() if v is not None})


def rewrite_json(path, **changes):
    meta = json.loads((path / "model.json").read_text())
    meta.update(changes)
    (path / "model.json").write_text(json.dumps(meta))


def load_error(path):
    with pytest.raises(ModelFileError) as info:
        load_model(str(path))
    return str(info.value)


@pytest.mark.parametrize("name", ["model.json", "params.npz"])
def test_missing_file(saved, name):
    (saved / name).unlink()
    message = load_error(saved)
    assert str(saved / name) in message and "missing" in message


def test_missing_folder(tmp_path):
    assert str(tmp_path / "nope" / "model.json") in load_error(tmp_path / "nope")


@pytest.mark.parametrize("text", ["{not json", "", "\udcff".encode("utf-8", "surrogateescape")])
def test_invalid_json(saved, text):
    if isinstance(text, bytes):
        (saved / "model.json").write_bytes(text)
    else:
        (saved / "model.json").write_text(text)
    message = load_error(saved)
    assert str(saved / "model.json") in message and "JSON" in message


def test_json_that_is_not_an_object(saved):
    (saved / "model.json").write_text("[1, 2]")
    assert str(saved / "model.json") in load_error(saved)


@pytest.mark.parametrize("changes, words", [
    ({"format": "sklearn-pickle"}, ["not a mixlake model"]),
    ({"format": None}, ["not a mixlake model"]),
    ({"format_version": 99}, ["format_version 99"]),
    ({"covariance_type": "banana"}, ["covariance_type 'banana'"]),
    ({"n_features": 4}, ["features"]),
    ({"n_components": "three"}, ["n_components"]),
    ({"features": ["x0", "x1"]}, ["features"]),
    ({"params": {"n_components": 3, "covariance_type": "diag"}}, ["covariance_type"]),
    ({"params": {"n_components": 3, "covariance_type": "full", "bogus": 1}}, ["params"]),
    ({"fit": {}}, ["fit"]),
    ({"fit": {"converged": True, "n_iter": "three", "lower_bound": -1.0,
              "lower_bounds": [-1.0]}}, ["fit", "n_iter"]),
    ({"fit": {"converged": True, "n_iter": 3, "lower_bound": None,
              "lower_bounds": [-1.0]}}, ["fit", "lower_bound"]),
])
def test_bad_metadata(saved, changes, words):
    rewrite_json(saved, **changes)
    message = load_error(saved)
    assert str(saved / "model.json") in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("key", ["n_components", "n_features", "covariance_type", "params",
                                 "fit", "features"])
def test_metadata_missing_a_key(saved, key):
    meta = json.loads((saved / "model.json").read_text())
    del meta[key]
    (saved / "model.json").write_text(json.dumps(meta))
    message = load_error(saved)
    assert str(saved / "model.json") in message and key in message


def test_wrong_array_shape(saved):
    rewrite_npz(saved, means=np.zeros((3, 4)))
    message = load_error(saved)
    assert str(saved / "params.npz") in message and "'means'" in message
    assert "(3, 4)" in message and "(3, 3)" in message


def test_missing_array(saved):
    rewrite_npz(saved, covariances=None)
    assert "'covariances' is missing" in load_error(saved)


def test_nan_in_means(saved):
    means = np.load(saved / "params.npz")["means"].copy()
    means[1, 2] = np.nan
    rewrite_npz(saved, means=means)
    message = load_error(saved)
    assert str(saved / "params.npz") in message and "'means'" in message and "NaN" in message


@pytest.mark.parametrize("weights", [[0.5, 0.3, 0.3], [1.2, -0.1, -0.1], [0.3, 0.3, 0.3]])
def test_weights_not_a_distribution(saved, weights):
    rewrite_npz(saved, weights=np.array(weights))
    message = load_error(saved)
    assert str(saved / "params.npz") in message and "weights" in message


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_non_positive_definite_precision(tmp_path, estimators, covariance_type):
    path = tmp_path / "m"
    save_model(estimators[covariance_type], str(path), features=FEATURES)
    chol = np.load(path / "params.npz")["precisions_cholesky"].copy()
    if covariance_type == "full":
        chol[1, 2, 2] = -chol[1, 2, 2]
    elif covariance_type == "tied":
        chol[0, 0] = 0.0
    elif covariance_type == "diag":
        chol[2, 1] = -1.0
    else:
        chol[0] = 0.0
    rewrite_npz(path, precisions_cholesky=chol)
    message = load_error(path)
    assert str(path / "params.npz") in message and "positive-definite" in message


def test_precision_factor_that_is_not_triangular(saved):
    chol = np.load(saved / "params.npz")["precisions_cholesky"].copy()
    chol[0, 2, 0] = 0.5  # below the diagonal of an upper-triangular factor
    rewrite_npz(saved, precisions_cholesky=chol)
    message = load_error(saved)
    assert str(saved / "params.npz") in message and "triangular" in message


def test_covariances_that_are_not_positive_definite(saved):
    covariances = np.load(saved / "params.npz")["covariances"].copy()
    covariances[0] = -np.eye(3)
    rewrite_npz(saved, covariances=covariances)
    message = load_error(saved)
    assert str(saved / "params.npz") in message and "'covariances'" in message


@pytest.mark.parametrize("array", [np.array([None, 1.0, 2.0], dtype=object),
                                   np.array(["a", "b", "c"]),
                                   np.array([1 + 1j, 0, 0])],
                         ids=["object", "string", "complex"])
def test_arrays_that_are_not_real_numbers(saved, array):
    rewrite_npz(saved, weights=array)
    message = load_error(saved)
    assert str(saved / "params.npz") in message


@pytest.mark.parametrize("content", [b"not an npz at all", b"PK\x03\x04 truncated zip",
                                     b"\x93NUMPY"], ids=["text", "truncated-zip", "npy-magic"])
def test_unreadable_npz(saved, content):
    (saved / "params.npz").write_bytes(content)
    assert str(saved / "params.npz") in load_error(saved)


def test_npy_instead_of_npz(saved):
    with open(saved / "params.npz", "wb") as handle:
        np.save(handle, np.zeros(3))
    assert str(saved / "params.npz") in load_error(saved)


def test_zip_without_arrays(saved):
    with zipfile.ZipFile(saved / "params.npz", "w") as archive:
        archive.writestr("readme.txt", "hello")
    assert str(saved / "params.npz") in load_error(saved)
