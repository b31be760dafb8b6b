"""What scikit-learn's mixtures share (its ``sklearn/mixture/_base.py``): input checks,
predictions and scores on numpy or dask input, sampling, the verbose messages.

A subclass provides the fit and ``_model(dtype)``, the parameters prepared for the
per-chunk kernels (:func:`pipeline.mixture._kernels.prepare_model`).
"""

import time

import numpy as np
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import check_is_fitted

from pipeline.mixture import _kernels
from pipeline.mixture._chunks import is_dask_collection
from pipeline.mixture._validation import (
    check_finite,
    check_random_state,
    check_sample_weight,
    check_weight_values,
    compute_dtype,
    is_dask_dataframe,
    validate_dask,
    validate_X,
)


def _finite_block(X, model, kernel, estimator_name="GaussianMixture"):
    """``kernel`` on one block of dask input, after the finiteness check sklearn makes.

    sklearn checks the whole of X before predicting; a lazy prediction checks each
    block as it is computed, so NaN fails the same way instead of giving label 0.
    """
    check_finite(np.isnan(X).any(), np.isinf(X).any(), X.dtype, estimator_name)
    return kernel(X, model)


def _weighted_sums(log_prob, sample_weight):
    """(sum w log p, sum w, rows of w > 0) for per-row log-likelihoods (numpy or dask);
    a row of weight 0 adds nothing, whatever its log-likelihood."""
    weight = check_sample_weight(sample_weight, log_prob)
    if not is_dask_collection(log_prob):
        return (float(weight @ np.where(weight > 0, log_prob, 0.0)), float(weight.sum()),
                int(np.count_nonzero(weight > 0)))
    import dask
    import dask.array as da

    sums = dask.compute(
        (weight * da.where(weight > 0, log_prob, 0.0)).sum(dtype=np.float64), weight.sum(),
        (weight > 0).sum(), da.isnan(weight).sum(), da.isinf(weight).sum(),
        (weight != 0).sum(), (weight < 0).sum())
    check_weight_values(*sums[3:])
    return float(sums[0]), float(sums[1]), int(sums[2])


class BaseMixture(DensityMixin, BaseEstimator):
    """Base of the mixtures: everything but the fit and the E-step model."""

    def _compute_dtype(self, input_dtype):
        return compute_dtype(self.dtype, input_dtype)

    def _validate_dask(self, X, reset):
        return validate_dask(self, X, reset)

    def _validate_X(self, X, reset):
        return validate_X(self, X, reset)

    def _apply(self, X, kernel, kind, validated=False):
        check_is_fitted(self)
        if not validated:
            X = self._validate_X(X, reset=False)
        model = self._model(X.dtype)
        if not is_dask_collection(X):
            return kernel(X, model)
        X = X.rechunk({1: -1})
        name = type(self).__name__
        if kind == "proba":
            return X.map_blocks(_finite_block, model, kernel, name, dtype=X.dtype,
                                chunks=(X.chunks[0], (self.n_components,)))
        dtype = np.int64 if kind == "labels" else X.dtype
        return X.map_blocks(_finite_block, model, kernel, name, dtype=dtype, drop_axis=1)

    def predict(self, X):
        """Predict the most probable component of each row.

        Returns
        -------
        labels : ndarray of shape (n_samples,), or a dask array chunked like X
        """
        return self._apply(X, _kernels.predict_chunk, "labels")

    def predict_proba(self, X):
        """Posterior probability of each component for each row.

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components), or a dask array chunked like X
        """
        return self._apply(X, _kernels.predict_proba_chunk, "proba")

    def score_samples(self, X):
        """Log-likelihood of each row under the model.

        Returns
        -------
        log_prob : ndarray of shape (n_samples,), or a dask array chunked like X
        """
        return self._apply(X, _kernels.score_samples_chunk, "score")

    def score(self, X, y=None, sample_weight=None):
        """Per-sample average log-likelihood of X (a float; computes for dask input).

        With ``sample_weight`` (n_samples,), the weighted average: sum w log p / sum w.
        """
        log_prob = self.score_samples(X)
        if sample_weight is not None:
            log_likelihood, total, _ = _weighted_sums(log_prob, sample_weight)
            return log_likelihood / total
        if is_dask_collection(log_prob):
            return float(log_prob.mean(dtype=np.float64).compute())
        return float(np.mean(log_prob))  # as sklearn: in the dtype of the log-densities

    def _n_samples(self, X):
        return int(X.shape[0]) if not is_dask_dataframe(X) else int(
            X.map_partitions(len).sum().compute())

    def sample(self, n_samples=1):
        """Generate random samples from the fitted mixture (as sklearn, on the client).

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        if n_samples < 1:
            raise ValueError(
                "Invalid value for 'n_samples': %d . The sampling requires at "
                "least one sample." % (self.n_components))
        _, n_features = self.means_.shape
        rng = check_random_state(self.random_state)
        n_samples_comp = rng.multinomial(n_samples, self.weights_)
        if self.covariance_type == "full":
            X = np.vstack([rng.multivariate_normal(mean, covariance, int(sample))
                           for mean, covariance, sample in
                           zip(self.means_, self.covariances_, n_samples_comp)])
        elif self.covariance_type == "tied":
            X = np.vstack([rng.multivariate_normal(mean, self.covariances_, int(sample))
                           for mean, sample in zip(self.means_, n_samples_comp)])
        else:
            X = np.vstack([mean + rng.standard_normal(size=(sample, n_features))
                           * np.sqrt(covariance)
                           for mean, covariance, sample in
                           zip(self.means_, self.covariances_, n_samples_comp)])
        y = np.concatenate([np.full(sample, j, dtype=np.int64)
                            for j, sample in enumerate(n_samples_comp)])
        return X, y

    # ------------------------------------------------------------- progress

    def _print_verbose_msg_init_beg(self, n_init):
        if self.verbose >= 1:
            print("Initialization %d" % n_init)
        if self.verbose >= 2:
            self._init_prev_time = time.time()
            self._iter_prev_time = self._init_prev_time

    def _print_verbose_msg_iter_end(self, state, change, seconds):
        n_iter = state.n_iter
        if not self.verbose or n_iter % self.verbose_interval:
            return
        prefix = f"[{state.name}] " if state.name else ""
        if self.verbose == 1:
            print(f"  {prefix}Iteration {n_iter}")
        else:
            print("  %sIteration %d\t time lapse %.5fs\t ll change %.5f"
                  % (prefix, n_iter, seconds, change))

    def _print_verbose_msg_init_end(self, lb, init_has_converged, index):
        converged_msg = "converged" if init_has_converged else "did not converge"
        if self.verbose == 1:
            print(f"Initialization {converged_msg}.")
        elif self.verbose >= 2:
            t = time.time() - self._init_prev_time
            print(f"Initialization {converged_msg}. time lapse {t:.5f}s\t lower bound"
                  f" {lb:.5f}.")
