"""The training baseline: sums over rows in the fit's final pass, and what is kept of them.

- The baseline comes from the final pass model selection already makes (the likelihood
  of every candidate under its final parameters): :func:`final_pass` gives each
  candidate's total log-likelihood, bit for bit the number the criteria always used,
  together with a histogram of the per-row log-density, the hard-assignment counts,
  per-component sums and per-feature moments (:class:`Sums`). The chosen candidate's
  become :func:`baseline`, saved in model.json. No extra pass.
- A scoring pass adds the same sums per file, in the tasks that write the assignments
  (``pipeline.assign``), and counts the rows below :func:`threshold`, the training
  log-density at ``monitor.outlier_quantile`` (the ``outlier`` column).

The log-density histogram is on a fixed grid of depths below an upper bound that the
model itself gives (no row can be denser than the densest component's peak,
``max_k log det P_k - D/2 log 2 pi``): bins ``1 nat * (exp(0.005 i) - 1)`` deep, fine
near the peak (0.005 nats) and relatively fine (0.5 %) far from it, 4096 of them down
to ~8e8 nats. Quantiles are read from it to a fraction of a bin.
"""

import datetime as dt
import logging
import math
from dataclasses import dataclass

import numpy as np

from pipeline.mixture import _covariance, _kernels

logger = logging.getLogger("pipeline.monitor")

QUANTILES = (0.001, 0.01, 0.05, 0.5)
_BIN_SCALE = 1.0
_BIN_LOG_RATIO = 0.005
N_BINS = 4096
# a component's rows are compared only when at least this many fall in it
MIN_COMPONENT_ROWS = 10


def upper_bound(precisions_cholesky, covariance_type, n_features):
    """The highest log-density the mixture can give any row (its densest peak)."""
    log_det = np.asarray(_covariance.log_det_cholesky(precisions_cholesky, covariance_type,
                                                      n_features), np.float64)
    return float(log_det.max() - 0.5 * n_features * math.log(2 * math.pi))


def _bin_of(depth):
    index = np.floor(np.log1p(depth / _BIN_SCALE) / _BIN_LOG_RATIO)
    return np.minimum(index, N_BINS - 1).astype(np.int64)


def _edge(i):
    return _BIN_SCALE * math.expm1(i * _BIN_LOG_RATIO)


def _depth_quantile(histogram, p):
    """The depth below which a share ``p`` of the rows lies, interpolated in its bin."""
    cumulative = np.cumsum(histogram)
    target = p * cumulative[-1]
    i = int(np.searchsorted(cumulative, target, side="left"))
    below = cumulative[i - 1] if i else 0
    inside = (target - below) / histogram[i] if histogram[i] else 0.0
    return _edge(i) + inside * (_edge(i + 1) - _edge(i))


class Sums:
    """Per-row figures of one model over blocks of rows, accumulated in float64.

    Parameters
    ----------
    n_components, n_features : int
    upper : float
        The model's :func:`upper_bound`: depths are measured below it.
    shift : ndarray of shape (n_features,)
        Feature moments are taken about it (the data's digits, not the origin's).
    threshold : float, optional
        Rows whose log-density is below it are counted as ``below`` (the outliers).
    histogram : bool
        Keep the depth histogram (the final pass: the baseline's quantiles).
    """

    def __init__(self, n_components, n_features, upper, shift, threshold=None,
                 histogram=True):
        self.upper, self.threshold = float(upper), threshold
        self.shift = np.asarray(shift, np.float64)
        self.n, self.loglik, self.depth, self.depth_squares, self.below = 0, 0.0, 0.0, 0.0, 0
        self.counts = np.zeros(n_components, np.int64)
        self.component_loglik = np.zeros(n_components)
        self.component_sums = np.zeros((n_components, n_features))
        self.feature_sums = np.zeros(n_features)
        self.feature_squares = np.zeros(n_features)
        self.histogram = np.zeros(N_BINS, np.int64) if histogram else None

    def add_by_sub_blocks(self, X, log_prob_norm, labels, model):
        """:meth:`add` the rows sub-block by sub-block of ``model``'s E-step
        (:func:`pipeline.mixture._kernels.log_prob_blocks`), as the final pass adds them:
        the same rows give the same sums, bit for bit, wherever they are scored."""
        n_rows, n_features = X.shape
        for start, stop in _kernels.sub_blocks(n_rows, model, n_features):
            self.add(X[start:stop], log_prob_norm[start:stop], labels[start:stop])

    def add(self, X, log_prob_norm, labels):
        """Add rows ``X`` (rows, D) in the model's space, their log-density and component."""
        n_components = self.counts.shape[0]
        # the EM pass's own sum of this block (pipeline.mixture._statistics): bit for bit
        self.loglik += float(log_prob_norm.sum(dtype=np.float64))
        density = log_prob_norm.astype(np.float64)
        depth = np.maximum(self.upper - density, 0.0)
        centered = X.astype(np.float64, copy=False) - self.shift
        self.n += X.shape[0]
        self.depth += float(depth.sum())
        self.depth_squares += float(np.dot(depth, depth))
        self.counts += np.bincount(labels, minlength=n_components)
        self.component_loglik += np.bincount(labels, weights=density, minlength=n_components)
        members = (labels[None, :] == np.arange(n_components)[:, None]).astype(np.float64)
        # np.dot gives the GIL up around BLAS (np.matmul here held it: worker threads)
        self.component_sums += np.dot(members, centered)
        self.feature_sums += centered.sum(axis=0)
        self.feature_squares += np.einsum("ij,ij->j", centered, centered)
        if self.histogram is not None:
            self.histogram += np.bincount(_bin_of(depth), minlength=N_BINS)
        if self.threshold is not None:
            self.below += int(np.count_nonzero(density < self.threshold))

    def stats(self):
        """A dict of numbers and arrays; dicts of several blocks merge by addition."""
        out = {name: getattr(self, name) for name in (
            "n", "loglik", "depth", "depth_squares", "below", "counts", "component_loglik",
            "component_sums", "feature_sums", "feature_squares")}
        if self.histogram is not None:
            out["histogram"] = self.histogram
        return out


def merge(parts):
    """The sum of several :meth:`Sums.stats` dicts (files of a run), or None for none."""
    parts = [p for p in parts if p is not None]
    return _kernels.combine_sums([[p] for p in parts])[0] if parts else None


# ------------------------------------------------------------------ the final pass


def final_pass_chunk(X, models, uppers, shift):
    """The final pass's kernel: one :meth:`Sums.stats` per model for one chunk."""
    out = []
    for model, upper in zip(models, uppers):
        sums = Sums(model["offsets"].shape[0], X.shape[1], upper, shift)
        for start, stop, log_prob_norm, log_resp in _kernels.log_prob_blocks(X, model):
            sums.add(X[start:stop], log_prob_norm, log_resp.argmax(axis=0))
        out.append(sums.stats())
    return out


def final_pass_scores(X, model, upper, shift):
    """:func:`final_pass_chunk` for one model, keeping the rows' scores for the writer:
    ``([stats], scores)`` (:func:`pipeline.mixture._kernels.score_rows`). The same sums,
    sub-block by sub-block, as :func:`final_pass_chunk`."""
    sums = Sums(model["offsets"].shape[0], X.shape[1], upper, shift)
    scores = _kernels.score_rows(X, model)
    log_prob_norm, _, labels = scores
    sums.add_by_sub_blocks(X, log_prob_norm, labels, model)
    return [sums.stats()], scores


@dataclass
class FinalPass:
    """Per state: its total log-likelihood and its sums (see :func:`baseline`); with
    ``keep``, ``scores``: one future per chunk of the rows' scores, on the workers."""

    log_likelihoods: list
    stats: list
    scores: list | None = None


def final_pass(data, states, dtype, keep=False):
    """One pass: the total log-likelihood of the data under each state's parameters (for
    BIC/AIC) and the sums of each state's training baseline.

    ``keep`` (one state, data persisted on a distributed cluster): the pass also keeps
    every chunk's :func:`pipeline.mixture._kernels.score_rows` in the workers' memory,
    so that writing the assignments does not score the rows again.
    """
    logger.info("final pass: the log-likelihood of %d run(s) under their parameters",
                len(states), extra={"progress": {"phase": "final pass", "total": 1}})
    models = [state.model(dtype) for state in states]
    uppers = [upper_bound(s.precisions_cholesky, s.covariance_type, data.n_features)
              for s in states]
    shift = models[0]["center"].astype(np.float64)
    scores = None
    if keep and len(states) == 1:
        kept = data.reduce_keeping(final_pass_scores, _kernels.combine_sums, models[0],
                                   uppers[0], shift)
        if kept is not None:
            stats, scores = kept
    if scores is None:
        stats = data.reduce(final_pass_chunk, _kernels.combine_sums, models, uppers, shift)
    for s, upper in zip(stats, uppers):
        s["upper"], s["shift"] = upper, shift
    return FinalPass([float(s["loglik"]) for s in stats], stats, scores)


def _rows_mean(sums, counts, shift):
    with np.errstate(invalid="ignore", divide="ignore"):
        return shift + sums / counts[:, None]


def baseline(stats, weights):
    """The training baseline of one model from its final-pass sums: JSON-able.

    ``log_density``: mean, std, the quantiles of :data:`QUANTILES`, the upper bound and the
    histogram's non-empty bins; ``weights`` and the training hard-assignment
    ``proportions``; per component the mean log-density and the mean of its rows; per
    feature the mean and standard deviation (in the model's space, after standardize).
    """
    n = int(stats["n"])
    shift = np.asarray(stats["shift"], np.float64)
    depth_mean = stats["depth"] / n
    counts = np.asarray(stats["counts"])
    feature_mean = stats["feature_sums"] / n
    with np.errstate(invalid="ignore", divide="ignore"):
        component_density = stats["component_loglik"] / counts
    histogram = np.asarray(stats["histogram"])
    upper = float(stats["upper"])
    return {
        "rows": n,
        "log_density": {
            "mean": stats["loglik"] / n,
            "std": math.sqrt(max(stats["depth_squares"] / n - depth_mean**2, 0.0)),
            "quantiles": {f"{p:g}": float(upper - _depth_quantile(histogram, 1 - p))
                          for p in QUANTILES},
            "upper_bound": upper,
            "histogram": [[int(i), int(histogram[i])] for i in np.flatnonzero(histogram)],
        },
        "weights": [float(w) for w in weights],
        "proportions": (counts / n).tolist(),
        "components": {
            "rows": counts.tolist(),
            "log_density_mean": [_number(v) for v in component_density],
            "mean": [[_number(v) for v in row]
                     for row in _rows_mean(stats["component_sums"], counts, shift)],
        },
        "features": {
            "mean": (shift + feature_mean).tolist(),
            "std": np.sqrt(np.maximum(stats["feature_squares"] / n - feature_mean**2,
                                      0.0)).tolist(),
        },
    }


def window(source_filter, n_inputs, fingerprint):
    """The data a model was fitted on, kept with its baseline: the filter, the input
    files' count and fingerprint (paths, sizes, modification times), and when."""
    return {"filter": source_filter, "inputs": int(n_inputs), "fingerprint": fingerprint,
            "fitted_at": dt.datetime.now(dt.UTC).isoformat()}


def _number(value):
    return float(value) if np.isfinite(value) else None


def threshold(base, quantile):
    """The training log-density below which a share ``quantile`` of the rows lay."""
    histogram = np.zeros(N_BINS, np.int64)
    for i, count in base["log_density"]["histogram"]:
        histogram[i] = count
    return float(base["log_density"]["upper_bound"] - _depth_quantile(histogram, 1 - quantile))


@dataclass(frozen=True)
class Watch:
    """What a scoring pass measures against a baseline: its outlier ``threshold`` (a
    log-density), the model's upper bound, and the shift of the feature moments (the
    training feature means)."""

    threshold: float
    upper: float
    shift: tuple

    def sums(self, n_components):
        return Sums(n_components, len(self.shift), self.upper, np.asarray(self.shift),
                    self.threshold, histogram=False)


def watch(base, quantile):
    """The :class:`Watch` of a baseline at ``monitor.outlier_quantile``."""
    return Watch(threshold(base, quantile), float(base["log_density"]["upper_bound"]),
                 tuple(float(v) for v in base["features"]["mean"]))


def baseline_problem(base, n_components, n_features):
    """What is wrong with a saved baseline (a sentence), or None."""
    def numbers(value, length, allow_none=False):
        return isinstance(value, list) and len(value) == length and all(
            (allow_none and v is None) or (isinstance(v, int | float)
                                           and not isinstance(v, bool) and math.isfinite(v))
            for v in value)

    if not isinstance(base, dict):
        return "not an object"
    density = base.get("log_density")
    components = base.get("components")
    features = base.get("features")
    rows = base.get("rows")
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 1:
        return f"rows is {rows!r}, not a positive integer"
    if not isinstance(density, dict) or not numbers(
            [density.get(k) for k in ("mean", "std", "upper_bound")], 3):
        return "log_density needs finite numbers mean, std and upper_bound"
    if density["std"] < 0:
        return f"log_density.std is {density['std']}, negative"
    quantiles = density.get("quantiles")
    if not isinstance(quantiles, dict) or set(quantiles) != {f"{p:g}" for p in QUANTILES} \
            or not numbers(list(quantiles.values()), len(QUANTILES)):
        return f"log_density.quantiles must give {', '.join(f'{p:g}' for p in QUANTILES)}"
    histogram = density.get("histogram")
    if not isinstance(histogram, list) or not all(
            isinstance(b, list) and len(b) == 2 and all(isinstance(v, int) for v in b)
            and 0 <= b[0] < N_BINS and b[1] > 0 for b in histogram) \
            or sum(b[1] for b in histogram) != rows:
        return f"log_density.histogram must be [bin, count] pairs counting the {rows} rows"
    for key in ("weights", "proportions"):
        if not numbers(base.get(key), n_components) or abs(sum(base[key]) - 1) > 1e-6:
            return f"{key} must be {n_components} numbers summing to 1"
    if not isinstance(components, dict) \
            or not numbers(components.get("log_density_mean"), n_components, True) \
            or not isinstance(components.get("rows"), list) \
            or not numbers(components["rows"], n_components) \
            or not isinstance(components.get("mean"), list) \
            or len(components["mean"]) != n_components \
            or not all(numbers(m, n_features, True) for m in components["mean"]):
        return (f"components needs rows, log_density_mean ({n_components}) and mean "
                f"({n_components} x {n_features})")
    if not isinstance(features, dict) or not numbers(features.get("mean"), n_features) \
            or not numbers(features.get("std"), n_features) \
            or min(features["std"]) < 0:
        return f"features needs mean and std ({n_features} each, std >= 0)"
    window = base.get("window", {})
    if not isinstance(window, dict) or not isinstance(window.get("fitted_at", ""), str):
        return "window must be an object whose fitted_at is an ISO time"
    return None
