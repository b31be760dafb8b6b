"""Parameter and input validation with scikit-learn's wording.

The constructor parameters are checked in ``fit`` from one table of allowed values, and
the error says what sklearn's ``InvalidParameterError`` says, so that a user moving from
``sklearn.mixture.GaussianMixture`` reads the same message. The input ``X`` is checked
as sklearn's ``validate_data`` checks it (numpy) or with the same messages without
computing anything (dask; its values are checked in the fit's first pass).

scikit-learn is imported by the functions that call it, not here: the model selection of
a `mixlake run` uses this module's checks without importing scikit-learn (1.5 s or more).
"""

import logging
import math
from numbers import Integral, Real

import numpy as np

from pipeline.mixture._chunks import is_dask_collection
from pipeline.mixture._covariance import COVARIANCE_TYPES, COVARIANCES
from pipeline.mixture._init import INIT_METHODS

logger = logging.getLogger("pipeline.mixture")


class InvalidParameterError(ValueError, TypeError):
    """A constructor parameter has a wrong type or value (as sklearn's)."""


# bool is an Integral and a Real: sklearn's Interval constraints accept True and False
# (n_init=True fits one initialisation there), so they are accepted here too.
def _is_int(v):
    return isinstance(v, Integral)


def _is_real(v):
    return isinstance(v, Real)


def _int_range(low):
    return (lambda v: _is_int(v) and v >= low, f"an int in the range [{low}, inf)")


def _float_range(low):
    return (lambda v: _is_real(v) and v >= low, f"a float in the range [{float(low)}, inf)")


def _options(options):
    shown = ", ".join(repr(o) for o in sorted(options))
    return (lambda v: isinstance(v, str) and v in options, f"a str among {{{shown}}}")


def _array_like_or_none(v):
    return v is None or (hasattr(v, "__len__") or hasattr(v, "shape") or
                         hasattr(v, "__array__")) and not isinstance(v, str)


def _random_state(v):
    return v is None or isinstance(v, np.random.RandomState) or (
        _is_int(v) and 0 <= v <= 2**32 - 1)


def _boolean(v):
    return isinstance(v, bool | np.bool_)


def _dtype(v):
    if v is None:
        return True
    try:
        return np.dtype(v) in (np.float32, np.float64)
    except TypeError:
        return False


PARAMETER_CONSTRAINTS = {
    "n_components": _int_range(1),
    "covariance_type": _options(COVARIANCE_TYPES),
    "tol": _float_range(0.0),
    "reg_covar": _float_range(0.0),
    "max_iter": _int_range(0),
    "n_init": _int_range(1),
    "init_params": _options(INIT_METHODS),
    "weights_init": (_array_like_or_none, "an array-like or None"),
    "means_init": (_array_like_or_none, "an array-like or None"),
    "precisions_init": (_array_like_or_none, "an array-like or None"),
    "random_state": (_random_state, "an int in the range [0, 4294967295], an instance of "
                     "'numpy.random.mtrand.RandomState' or None"),
    "warm_start": (_boolean, "an instance of 'bool' or an instance of 'numpy.bool'"),
    "verbose": (lambda v: (_is_int(v) and v >= 0) or _boolean(v),
                "an int in the range [0, inf), an instance of 'bool' or an instance of "
                "'numpy.bool'"),
    "verbose_interval": _int_range(1),
    "dtype": (_dtype, "numpy.float64, numpy.float32 or None"),
    "persist": (lambda v: (isinstance(v, str) and v == "auto") or _boolean(v),
                "'auto', True or False"),
    "split_every": (lambda v: v is None or (_is_int(v) and v >= 2),
                    "an int in the range [2, inf) or None"),
}


def validate_params(estimator, constraints=None):
    """Raise InvalidParameterError for the first parameter outside its table entry.

    ``constraints``: the estimator's table, :data:`PARAMETER_CONSTRAINTS` if None.
    """
    name_of = type(estimator).__name__
    constraints = PARAMETER_CONSTRAINTS if constraints is None else constraints
    for name, value in estimator.get_params(deep=False).items():
        check, allowed = constraints[name]
        if not check(value):
            raise InvalidParameterError(
                f"The {name!r} parameter of {name_of} must be {allowed}. Got {value!r} instead."
            )


# --------------------------------------------------------------- init arrays


def _check_shape(param, param_shape, name):
    if param.shape != param_shape:
        raise ValueError(
            "The parameter '%s' should have the shape of %s, but got %s"
            % (name, param_shape, param.shape)
        )


def check_weights(weights, n_components):
    from sklearn.utils import check_array

    weights = check_array(weights, dtype=[np.float64, np.float32], ensure_2d=False)
    _check_shape(weights, (n_components,), "weights")
    if np.any(weights < 0.0) or np.any(weights > 1.0):
        raise ValueError(
            "The parameter 'weights' should be in the range [0, 1], but got max value "
            "%.5f, min value %.5f" % (np.min(weights), np.max(weights))
        )
    atol = 1e-6 if weights.dtype == np.float32 else 1e-8
    if not np.allclose(abs(1.0 - np.sum(weights)), 0.0, atol=atol):
        raise ValueError(
            "The parameter 'weights' should be normalized, but got sum(weights) = %.5f"
            % np.sum(weights)
        )
    return weights


def check_means(means, n_components, n_features):
    from sklearn.utils import check_array

    means = check_array(means, dtype=[np.float64, np.float32], ensure_2d=False)
    _check_shape(means, (n_components, n_features), "means")
    return means


def _check_precision_matrix(precision, covariance_type):
    if not (np.allclose(precision, precision.T) and np.all(np.linalg.eigvalsh(precision) > 0.0)):
        raise ValueError("'%s precision' should be symmetric, positive-definite" % covariance_type)


def check_precisions(precisions, covariance_type, n_components, n_features):
    from sklearn.utils import check_array

    covariance = COVARIANCES[covariance_type]
    shape = covariance.shape(n_components, n_features)
    precisions = check_array(precisions, dtype=[np.float64, np.float32], ensure_2d=False,
                             allow_nd=len(shape) > 2)
    _check_shape(precisions, shape, "%s precision" % covariance_type)
    if covariance.matrix:
        for precision in precisions.reshape(-1, n_features, n_features):
            _check_precision_matrix(precision, covariance_type)
    elif np.any(precisions <= 0.0):
        raise ValueError("'%s precision' should be positive" % covariance_type)
    return precisions


# ---------------------------------------------------------------------- X


def nan_message(estimator_name):
    """sklearn's error for NaN in X, naming the estimator."""
    return (
        f"Input X contains NaN.\n{estimator_name} does not accept missing values encoded as "
        "NaN natively. For supervised learning, you might want to consider "
        "sklearn.ensemble.HistGradientBoostingClassifier and Regressor which accept missing "
        "values encoded as NaNs natively. Alternatively, it is possible to preprocess the "
        "data, for instance by using an imputer transformer in a pipeline or drop samples "
        "with missing values. See https://scikit-learn.org/stable/modules/impute.html You "
        "can find a list of all estimators that handle NaN values at the following page: "
        "https://scikit-learn.org/stable/modules/impute.html#estimators-that-handle-nan-values"
    )


NAN_MESSAGE = nan_message("GaussianMixture")


def check_finite(n_nan, n_inf, dtype, estimator_name="GaussianMixture"):
    """Raise sklearn's error for NaN or infinite values of X (NaN takes precedence)."""
    if n_nan:
        raise ValueError(nan_message(estimator_name))
    if n_inf:
        raise ValueError(f"Input X contains infinity or a value too large for {dtype!r}.")


def is_dask_dataframe(X):
    return is_dask_collection(X) and hasattr(X, "columns")


def compute_dtype(requested, input_dtype):
    """The E-step's dtype: ``requested``, or as sklearn float32 for float32 input and
    float64 for anything else."""
    if requested is not None:
        return np.dtype(requested)
    return np.dtype(np.float32) if input_dtype == np.float32 else np.dtype(np.float64)


def validate_dask(estimator, X, reset):
    """Shape, dtype and feature checks for dask input (values are checked in a pass)."""
    from sklearn.utils.validation import validate_data

    if X.ndim != 2:
        raise ValueError(
            f"Expected 2D array, got {X.ndim}D array instead. Reshape your data either "
            "using array.reshape(-1, 1) if your data has a single feature or "
            "array.reshape(1, -1) if it contains a single sample.")
    # sklearn's own checks of feature names and n_features, so that every mismatch
    # (and the fitted-with/without-names warnings) reads as sklearn's; a dask
    # DataFrame is checked through its empty pandas meta, so nothing is computed.
    if is_dask_dataframe(X):
        validate_data(estimator, X._meta, reset=reset, skip_check_array=True)
        X = X.to_dask_array(lengths=True)
    else:
        validate_data(estimator, X, reset=reset, skip_check_array=True)
    if any(math.isnan(c) for c in X.chunks[0]):
        logger.info("dask input has unknown chunk sizes: computing them (one pass)")
        X = X.compute_chunk_sizes()
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise ValueError(f"dtype='numeric' is not compatible with arrays of dtype {X.dtype}. "
                         "Cast the features to float before fitting.")
    n_samples, n_features = X.shape
    if reset:
        name = type(estimator).__name__
        if n_samples < 2:
            raise ValueError(
                f"Found array with {n_samples} sample(s) (shape={X.shape}) while a minimum "
                f"of 2 is required by {name}.")
        if n_features < 1:
            raise ValueError(
                f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 "
                f"is required by {name}.")
    dtype = compute_dtype(getattr(estimator, "dtype", None), X.dtype)
    return X.astype(dtype) if X.dtype != dtype else X


def validate_X(estimator, X, reset):
    """X as the fit's compute dtype: a numpy array checked by sklearn's ``validate_data``,
    or a dask array (a dask DataFrame becomes one) checked by :func:`validate_dask`."""
    from sklearn.utils.validation import validate_data

    if is_dask_collection(X):
        return validate_dask(estimator, X, reset)
    kwargs = {"ensure_min_samples": 2} if reset else {}
    X = validate_data(estimator, X, dtype=[np.float64, np.float32], reset=reset, **kwargs)
    dtype = compute_dtype(getattr(estimator, "dtype", None), X.dtype)
    return X.astype(dtype) if X.dtype != dtype else X


# ------------------------------------------------------------ sample weights


def check_random_state(seed):
    """scikit-learn's ``check_random_state``, without importing scikit-learn: None (or
    ``np.random``) gives numpy's global RandomState, an int a new one seeded with it, a
    RandomState itself."""
    if seed is None or seed is np.random:
        return np.random.mtrand._rand
    if isinstance(seed, Integral):
        return np.random.RandomState(seed)
    if isinstance(seed, np.random.RandomState):
        return seed
    raise ValueError(f"{seed!r} cannot be used to seed a numpy.random.RandomState instance")


def check_weight_values(n_nan, n_inf, n_nonzero, n_negative):
    """Raise sklearn's ``_check_sample_weight`` error for bad weight values, in its order."""
    if n_nan:
        raise ValueError("Input sample_weight contains NaN.")
    if n_inf:
        raise ValueError("Input sample_weight contains infinity or a value too large for "
                         "dtype('float64').")
    if not n_nonzero:
        raise ValueError("Sample weights must contain at least one non-zero number.")
    if n_negative:
        raise ValueError("Negative values in data passed to `sample_weight`.")


def _check_weight_shape(sample_weight, n_samples):
    if sample_weight.ndim != 1:
        raise ValueError(
            f"Sample weights must be 1D array or scalar, got {sample_weight.ndim}D array. "
            f"Expected either a scalar value or a 1D array of length {n_samples}.")
    if sample_weight.shape != (n_samples,):
        raise ValueError(
            f"sample_weight.shape == {sample_weight.shape}, expected {(n_samples,)}!")


def check_sample_weight(sample_weight, X):
    """Frequency weights of X's rows, in float64, with sklearn's errors; or None.

    For numpy ``X`` (or any ``X`` whose rows are not chunked): a numpy array, its values
    checked here. For dask ``X``: a dask array chunked like X's rows (a numpy array or a
    dask array or Series of weights is rechunked to them), its shape checked here and
    its values in the fit's first pass (:func:`check_weight_values`).
    """
    if sample_weight is None:
        return None
    n_samples = int(X.shape[0])
    if isinstance(sample_weight, Real):
        sample_weight = np.full(n_samples, float(sample_weight))
    if is_dask_collection(sample_weight) and not hasattr(sample_weight, "ndim"):
        sample_weight = sample_weight.to_dask_array(lengths=True)  # a dask Series
    if not is_dask_collection(X):
        from sklearn.utils import check_array

        if is_dask_collection(sample_weight):
            sample_weight = sample_weight.compute()
        weight = check_array(sample_weight, ensure_2d=False, dtype=np.float64,
                             ensure_all_finite=False, input_name="sample_weight")
        _check_weight_shape(weight, n_samples)
        check_weight_values(np.isnan(weight).sum(), np.isinf(weight).sum(),
                            np.count_nonzero(weight), (weight < 0).sum())
        return weight
    if not is_dask_collection(sample_weight):
        sample_weight = np.asarray(sample_weight)
    if not (np.issubdtype(sample_weight.dtype, np.number) or sample_weight.dtype == bool):
        raise ValueError(f"dtype='numeric' is not compatible with arrays of dtype "
                         f"{sample_weight.dtype}. Cast sample_weight to float.")
    if is_dask_collection(sample_weight) and any(math.isnan(c) for c in
                                                 sample_weight.chunks[0]):
        sample_weight = sample_weight.compute_chunk_sizes()
    _check_weight_shape(sample_weight, n_samples)
    if not is_dask_collection(sample_weight):
        import dask.array as da

        sample_weight = da.from_array(sample_weight, chunks=(X.chunks[0],))
    return sample_weight.astype(np.float64).rechunk((X.chunks[0],))


def check_described(describe, dtype, n_components, weighted, estimator_name="GaussianMixture"):
    """The checks made on the fit's first (describe) pass: X's values, then, with
    weights, theirs (dask input is checked only here) and the rows of positive weight."""
    check_finite(describe["n_nan"], describe["n_inf"], dtype, estimator_name)
    if not weighted:
        return
    check_weight_values(describe["w_nan"], describe["w_inf"],
                        describe["n_positive"] + describe["w_negative"], describe["w_negative"])
    if describe["n_positive"] < n_components:
        raise ValueError(
            "Expected n_samples >= n_components but got n_components = "
            f"{n_components}, n_samples = {describe['n_positive']} (the rows with a "
            "positive sample_weight)")
