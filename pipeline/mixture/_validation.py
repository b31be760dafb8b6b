"""Parameter and input validation with scikit-learn's wording.

The constructor parameters are checked in ``fit`` from one table of allowed values, and
the error says what sklearn's ``InvalidParameterError`` says, so that a user moving from
``sklearn.mixture.GaussianMixture`` reads the same message.
"""

from numbers import Integral, Real

import numpy as np
from sklearn.utils import check_array

from pipeline.mixture._covariance import COVARIANCE_TYPES, COVARIANCES
from pipeline.mixture._init import INIT_METHODS


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
    means = check_array(means, dtype=[np.float64, np.float32], ensure_2d=False)
    _check_shape(means, (n_components, n_features), "means")
    return means


def _check_precision_matrix(precision, covariance_type):
    if not (np.allclose(precision, precision.T) and np.all(np.linalg.eigvalsh(precision) > 0.0)):
        raise ValueError("'%s precision' should be symmetric, positive-definite" % covariance_type)


def check_precisions(precisions, covariance_type, n_components, n_features):
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
