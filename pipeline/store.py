"""Save and load a fitted model without pickle: JSON metadata + an .npz of arrays.

``model/model.json`` holds the estimator's parameters, the feature names, the fit's
history, the preprocessing and the training baseline (:mod:`pipeline.monitor`);
``model/params.npz`` the arrays, read back with ``allow_pickle=False``. Loading checks
shapes, finiteness and positive-definiteness (and the baseline's form), so a damaged or
hand-edited model fails with the file's name instead of predicting nonsense.
"""

import hashlib
import io
import json
import posixpath
import zipfile

import numpy as np

from pipeline.mixture import _covariance
from pipeline.mixture._fitted import ESTIMATOR_PARAMS, FittedMixture
from pipeline.monitor import baseline_problem
from pipeline.storage import filesystem

FORMAT = "mixlake-model"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A saved model is missing, malformed or not a valid Gaussian mixture."""


# A BayesianGaussianMixture ("kind": "bayesian") also keeps its variational parameters,
# which its predictions depend on, and its priors.
BAYESIAN_PARAMS = ("weight_concentration_prior_type", "weight_concentration_prior",
                   "mean_precision_prior", "degrees_of_freedom_prior")
BAYESIAN_PRIORS = ("weight_concentration_prior", "mean_precision_prior",
                   "degrees_of_freedom_prior")


def _kind(estimator):
    return "bayesian" if hasattr(estimator, "weight_concentration_") else "gaussian"


def _arrays(estimator):
    arrays = {
        "weights": estimator.weights_,
        "means": estimator.means_,
        "covariances": estimator.covariances_,
        "precisions_cholesky": estimator.precisions_cholesky_,
    }
    if _kind(estimator) == "bayesian":
        arrays.update({name: np.asarray(getattr(estimator, f"{name}_")) for name in (
            "weight_concentration", "mean_precision", "degrees_of_freedom", "mean_prior",
            "covariance_prior")})
    return arrays


def model_id(estimator):
    """A content hash of the fitted parameters (first 16 hex digits of sha256)."""
    digest = hashlib.sha256()
    for name, array in sorted(_arrays(estimator).items()):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


def save_model(estimator, path, *, features, preprocessing=None, extra=None, baseline=None,
               storage_options=None):
    """Write ``model.json`` and ``params.npz`` into the folder ``path``.

    Parameters
    ----------
    estimator : GaussianMixture or BayesianGaussianMixture, fitted
    path : str
        Local folder or URL.
    features : list of str
        Feature column names, in the order the model expects.
    preprocessing : dict, optional
        ``{"mean": array, "scale": array}`` when the features were standardized.
    extra : dict, optional
        JSON-able metadata stored under ``"run"``.
    baseline : dict, optional
        The training baseline (:func:`pipeline.monitor.baseline`), JSON-able.

    Returns
    -------
    model_id : str
    """
    n_features = int(estimator.means_.shape[1])
    if len(features) != n_features:
        raise ValueError(f"features: {len(features)} names given for a model of "
                         f"{n_features} features")
    arrays = {k: np.asarray(v, np.float64) for k, v in _arrays(estimator).items()}
    if preprocessing:
        arrays["scaler_mean"] = np.asarray(preprocessing["mean"], np.float64)
        arrays["scaler_scale"] = np.asarray(preprocessing["scale"], np.float64)
    kind = _kind(estimator)
    names = ESTIMATOR_PARAMS + (BAYESIAN_PARAMS if kind == "bayesian" else ())
    params = {k: getattr(estimator, k) for k in names}
    params = {k: v.item() if isinstance(v, np.generic) else v for k, v in params.items()}
    if not isinstance(params["random_state"], int | type(None)):
        params["random_state"] = None  # a RandomState instance: not reproducible from JSON
    if params["dtype"] is not None:
        params["dtype"] = np.dtype(params["dtype"]).name
    names_in = getattr(estimator, "feature_names_in_", None)
    ident = model_id(estimator)
    from pipeline import __version__

    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "mixlake_version": __version__,
        "model_id": ident,
        "covariance_type": estimator.covariance_type,
        "n_components": int(estimator.n_components),
        "n_features": n_features,
        "features": list(features),
        # only when fitted on a DataFrame: otherwise a loaded model would warn on arrays
        "feature_names_in": None if names_in is None else [str(n) for n in names_in],
        "standardized": bool(preprocessing),
        "params": params,
        "fit": {
            "converged": bool(estimator.converged_),
            "n_iter": int(estimator.n_iter_),
            "lower_bound": float(estimator.lower_bound_),
            "lower_bounds": [float(v) for v in estimator.lower_bounds_],
        },
        "run": extra or {},
        **({"baseline": baseline} if baseline is not None else {}),
    }
    if kind == "bayesian":
        meta["kind"] = kind
        meta["priors"] = {k: float(getattr(estimator, f"{k}_")) for k in BAYESIAN_PRIORS}
    fs, root = filesystem(path, storage_options)
    fs.makedirs(root, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with fs.open(posixpath.join(root, "params.npz"), "wb") as handle:
        handle.write(buffer.getvalue())
    with fs.open(posixpath.join(root, "model.json"), "w") as handle:
        handle.write(json.dumps(meta, indent=2, sort_keys=True, allow_nan=True))
    return ident


def _fail(path, message):
    raise ModelFileError(f"{path}: {message}")


def _read_meta(fs, json_path):
    try:
        with fs.open(json_path, "r") as handle:
            meta = json.loads(handle.read())
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        _fail(json_path, f"not valid JSON ({exc})")
    if not isinstance(meta, dict):
        _fail(json_path, "not a mixlake model (the JSON is not an object)")
    if meta.get("format") != FORMAT:
        _fail(json_path, f"not a mixlake model (format {meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        _fail(json_path, f"format_version {meta.get('format_version')!r} is not supported "
                         f"(this mixlake reads {FORMAT_VERSION}); load it with the mixlake "
                         f"version that wrote it ({meta.get('mixlake_version')})")
    for key, kind in (("n_components", int), ("n_features", int), ("covariance_type", str),
                      ("features", list), ("params", dict), ("fit", dict)):
        if key not in meta:
            _fail(json_path, f"{key!r} is missing")
        value = meta[key]
        if not isinstance(value, kind) or isinstance(value, bool) or (
                kind is int and value < 1):
            _fail(json_path, f"{key!r} is {value!r}, not a valid {kind.__name__}")
    if meta["covariance_type"] not in _covariance.COVARIANCE_TYPES:
        _fail(json_path, f"unknown covariance_type {meta['covariance_type']!r}")
    if len(meta["features"]) != meta["n_features"]:
        _fail(json_path, f"lists {len(meta['features'])} features but n_features is "
                         f"{meta['n_features']}")
    for key in ("n_components", "covariance_type"):
        if meta["params"].get(key) != meta[key]:
            _fail(json_path, f"params.{key} ({meta['params'].get(key)!r}) differs from "
                             f"{key} ({meta[key]!r})")
    fit = meta["fit"]
    missing = {"converged", "n_iter", "lower_bound", "lower_bounds"} - set(fit)
    if missing:
        _fail(json_path, f"fit: {sorted(missing)} missing")
    number = int | float
    if not (isinstance(fit["converged"], bool) and isinstance(fit["n_iter"], int)
            and isinstance(fit["lower_bound"], number) and isinstance(fit["lower_bounds"], list)
            and all(isinstance(v, number) for v in fit["lower_bounds"])):
        _fail(json_path, "fit: converged, n_iter, lower_bound and lower_bounds must be a "
                         "boolean, an integer, a number and a list of numbers")
    if "baseline" in meta:  # models saved before monitoring have none
        problem = baseline_problem(meta["baseline"], meta["n_components"], meta["n_features"])
        if problem:
            _fail(json_path, f"baseline: {problem}; refit the model (mixlake run) to write a "
                             "new one")
    return meta


def _read_arrays(fs, npz_path):
    try:
        with fs.open(npz_path, "rb") as handle:
            npz = np.load(io.BytesIO(handle.read()), allow_pickle=False)
        if not isinstance(npz, np.lib.npyio.NpzFile):
            _fail(npz_path, "not an .npz archive of named arrays")
        with npz:
            return {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        _fail(npz_path, f"not a readable .npz without pickle ({exc})")


def _check_arrays(npz_path, arrays, covariance_type):
    """Values a predicting model relies on: finite, a distribution, positive-definite."""
    weights = arrays["weights"]
    if np.any(weights < 0) or not np.isclose(weights.sum(), 1.0, atol=1e-6):
        _fail(npz_path, "weights must be non-negative and sum to 1")
    chol = arrays["precisions_cholesky"]
    matrices = _covariance.COVARIANCES[covariance_type].matrix
    diagonal = np.diagonal(chol, axis1=-2, axis2=-1) if matrices else chol
    if np.any(diagonal <= 0):
        _fail(npz_path, "precisions_cholesky is not the factor of a positive-definite "
                        "precision (non-positive diagonal)")
    if matrices and np.any(np.tril(chol, -1) != 0):
        _fail(npz_path, "precisions_cholesky is not upper triangular, so not a Cholesky "
                        "factor of the precision")
    covariances = arrays["covariances"]
    try:
        if matrices:
            np.linalg.cholesky(covariances)
        elif np.any(covariances <= 0):
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        _fail(npz_path, "array 'covariances' is not positive-definite")
    if "scaler_scale" in arrays and np.any(arrays["scaler_scale"] <= 0):
        _fail(npz_path, "array 'scaler_scale' must be positive")


def load_model(path, storage_options=None, *, estimator=True):
    """Read a model folder written by :func:`save_model`.

    ``estimator=False`` gives a Gaussian mixture as a
    :class:`~pipeline.mixture._fitted.FittedMixture` (what the run paths score and monitor
    with), without importing scikit-learn; a Bayesian mixture is its estimator either way.

    Returns
    -------
    estimator : GaussianMixture, FittedMixture or BayesianGaussianMixture
        Fitted: predicts exactly as the estimator that was saved.
    meta : dict
        The JSON metadata, plus ``"preprocessing"`` (``{"mean", "scale"}`` or None).
    """
    fs, root = filesystem(path, storage_options)
    json_path = posixpath.join(root, "model.json")
    npz_path = posixpath.join(root, "params.npz")
    for p in (json_path, npz_path):
        if not fs.exists(p):
            _fail(p, "missing; point to a model folder written by a mixlake fit run")
    meta = _read_meta(fs, json_path)
    arrays = _read_arrays(fs, npz_path)
    covariance_type = meta["covariance_type"]
    K, D = meta["n_components"], meta["n_features"]
    expected = {
        "weights": (K,),
        "means": (K, D),
        "covariances": _covariance.covariance_shape(covariance_type, K, D),
        "precisions_cholesky": _covariance.covariance_shape(covariance_type, K, D),
    }
    if meta.get("standardized"):
        expected.update({"scaler_mean": (D,), "scaler_scale": (D,)})
    for name, shape in expected.items():
        if name not in arrays:
            _fail(npz_path, f"array {name!r} is missing")
        if arrays[name].dtype.kind not in "fiu":
            _fail(npz_path, f"array {name!r} has dtype {arrays[name].dtype}, expected float64")
        if arrays[name].shape != shape:
            _fail(npz_path, f"array {name!r} has shape {arrays[name].shape}, expected {shape}")
        arrays[name] = arrays[name].astype(np.float64, copy=False)
        if not np.all(np.isfinite(arrays[name])):
            _fail(npz_path, f"array {name!r} contains NaN or inf")
    _check_arrays(npz_path, arrays, covariance_type)
    fit = meta["fit"]
    if meta.get("kind", "gaussian") == "bayesian":
        return _load_bayesian(json_path, npz_path, meta, arrays), _with_preprocessing(
            meta, arrays)
    params = (arrays["weights"], arrays["means"], arrays["covariances"],
              arrays["precisions_cholesky"])
    history = dict(converged=fit["converged"], n_iter=fit["n_iter"],
                   lower_bound=fit["lower_bound"], lower_bounds=fit["lower_bounds"])
    try:
        if estimator:
            from pipeline.mixture.gaussian import GaussianMixture

            model = GaussianMixture._from_parameters(
                params, **history, n_features_in=D,
                feature_names_in=meta.get("feature_names_in"), **meta["params"])
        else:
            model = FittedMixture(params, **history, **meta["params"])
    except TypeError as exc:
        _fail(json_path, f"params: {exc}")
    return model, _with_preprocessing(meta, arrays)


def _with_preprocessing(meta, arrays):
    meta["preprocessing"] = ({"mean": arrays["scaler_mean"], "scale": arrays["scaler_scale"]}
                             if meta.get("standardized") else None)
    return meta


def _load_bayesian(json_path, npz_path, meta, arrays):
    """The BayesianGaussianMixture of a model of ``kind: bayesian``, its arrays checked."""
    from pipeline.mixture import BayesianGaussianMixture
    from pipeline.mixture._variational import Priors

    covariance_type, K, D = meta["covariance_type"], meta["n_components"], meta["n_features"]
    process = meta["params"].get("weight_concentration_prior_type") == "dirichlet_process"
    expected = {
        "weight_concentration": (2, K) if process else (K,),
        "mean_precision": (K,),
        "degrees_of_freedom": () if covariance_type == "tied" else (K,),
        "mean_prior": (D,),
        "covariance_prior": {"full": (D, D), "tied": (D, D), "diag": (D,),
                             "spherical": ()}[covariance_type],
    }
    for name, shape in expected.items():
        array = arrays.get(name)
        if array is None or array.shape != shape or array.dtype.kind not in "fiu":
            _fail(npz_path, f"array {name!r} missing or not of shape {shape} (a Bayesian "
                            "mixture's)")
        arrays[name] = array.astype(np.float64)
        if not np.all(np.isfinite(arrays[name])):
            _fail(npz_path, f"array {name!r} contains NaN or inf")
    priors = meta.get("priors")
    if not isinstance(priors, dict) or set(priors) != set(BAYESIAN_PRIORS) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in priors.values()):
        _fail(json_path, f"priors: expected numbers for {', '.join(BAYESIAN_PRIORS)}")
    fit = meta["fit"]
    try:
        return BayesianGaussianMixture._from_parameters(
            Priors(meta["params"]["weight_concentration_prior_type"], **priors,
                   mean_prior=arrays["mean_prior"],
                   covariance_prior=arrays["covariance_prior"]),
            (arrays["weight_concentration"], arrays["mean_precision"], arrays["means"],
             arrays["degrees_of_freedom"], arrays["covariances"],
             arrays["precisions_cholesky"]),
            converged=fit["converged"], n_iter=fit["n_iter"], lower_bound=fit["lower_bound"],
            lower_bounds=fit["lower_bounds"], n_features_in=D,
            feature_names_in=meta.get("feature_names_in"), **meta["params"])
    except (TypeError, KeyError) as exc:
        _fail(json_path, f"params: {exc}")
