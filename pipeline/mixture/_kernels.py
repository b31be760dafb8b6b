"""Pure numpy kernels: one block of rows in, small numbers out.

Nothing here knows about dask. Every function takes a 2-D block ``X`` of shape
(n_rows, n_features) and model parameters prepared on the client by
:func:`prepare_model`, and returns arrays whose size does not depend on n_rows
(reductions) or one row of output per row of input (predictions).

How an EM pass is computed (see benchmarks/RESULTS.md for the profile behind it).
Rows are taken in sub-blocks of a few hundred to a few thousand rows (up to 16,384 for
the expanded form, whose rows are narrow), transposed to features x rows so that every
elementwise step runs along contiguous rows, and the per-component work is done by a few
large matrix products per sub-block instead of a loop over components. A sub-block is a
dozen numpy calls on buffers looked up once per chunk (:class:`_EStep`): on the embedded
default's worker threads, the Python between the calls holds the GIL that the other
threads' calls wait for.

- E-step, whitening form (``full``, and any type whose components sit far from the
  common center): ``Y = W @ [x - center; 1]`` with ``W`` the K precision Cholesky
  factors P_k stacked (each type's ``per_component_matrices``), ``-P_k^T offset_k`` in
  the last column. ``Y`` holds every component's whitened difference; squared and
  summed over features it gives the squared Mahalanobis distances, shape (K, rows). No
  (K, rows, D) difference array.
- E-step, expanded form (each type's ``expanded``: ``tied``, ``diag``, ``spherical``,
  in float64): the distance is a quadratic in features of the row (``[x; 1; x^2]``, or
  ``[z; 1; |z|^2]`` with ``z = P^T x`` for ``tied``), so one (K, F) x (F, rows) product
  gives it. Expanding costs digits in proportion to the squared whitened distance
  between a component and the center; :func:`prepare_model` uses it only while that
  loses at most ~1e-10 of a log-density, and the whitening form otherwise.
- Statistics: an accumulator per covariance type and E-step form, chosen from
  :data:`pipeline.mixture._covariance.COVARIANCES` (see :mod:`._statistics`). On the
  whitening form they are taken about each component's mean from the stacked
  ``[r_k (x - shift_k); r_k]``; on the expanded form about the common center from the
  E-step's own features, then shifted to each component on the chunk's totals.

Each sub-block's sums are in the compute dtype over at most ``_MAX_BLOCK_ROWS`` rows
and are accumulated over sub-blocks and chunks in float64.
"""

import math
import threading

import numpy as np

from pipeline.mixture import _covariance

# Elements of the largest per-sub-block temporary (K (D+1) x rows), by compute dtype.
# float64: 2**18 is 2 MiB; fewer make the products short and cost time per row, more
# gain nothing (2**19 the same, 2**20 slower). float32: 2**20 (4 MiB): its arithmetic
# per numpy call is half, so the Python around each call (the GIL hand-over between
# worker threads) was twice its share; per pass of 1M x 16 x 8 on 2 threads, 108 ms at
# 2**18, 100 at 2**19, 89 at 2**20, 112 at 2**21 (float64: 199 / 204 / 218 / 252 ms).
_BLOCK_ELEMENTS = {np.dtype(np.float64): 2**18, np.dtype(np.float32): 2**20}
_MIN_BLOCK_ROWS = 128
# Bounds the rows summed in float32 before the sum is added to a float64 total: a
# sub-block's float32 sums of 8,192 rows differ from float64's by ~6e-8 relative on the
# benchmark data (4.8e-8 at 2,048 rows).
_MAX_BLOCK_ROWS = 8192
# The expanded form computes in float64 and has a few features per row: its sub-blocks
# are longer, so that the Python around each numpy call (which holds the GIL the other
# worker threads wait for) is a small share of the call's arithmetic.
_MAX_EXPANDED_ROWS = 16384
# The expanded (quadratic-feature) E-step loses ~ eps * |whitened offset|^2 of a
# log-density; allowed while that stays below ~1e-10 in float64.
_EXPANDED_MAX_SQ_DISTANCE = 1e6
# log of the smallest relative term of a log-sum-exp (smaller ones are raised to it):
# exp of it stays a normal number with room to spare for the products of the
# statistics (float64 ~1e-261, float32 ~1e-26), far below the last digit of the sum.
_FLUSH = {np.float64: -600.0, np.float32: -60.0}


def block_rows(model, n_features):
    """Rows per sub-block for ``model``: its largest per-row temporary times the rows is
    about ``_BLOCK_ELEMENTS`` of its compute dtype. Whitening form: the whitened
    differences, K D per row (at most ``_MAX_BLOCK_ROWS`` rows, summed in the compute
    dtype); expanded form: the row features or the K log-densities, whichever is wider
    (float64 throughout)."""
    n_components = model["offsets"].shape[0]
    coef = model.get("expanded")
    if coef is None:
        budget = _BLOCK_ELEMENTS[model["center"].dtype]
        rows = budget // max(1, n_components * (n_features + 1))
        return int(min(_MAX_BLOCK_ROWS, max(_MIN_BLOCK_ROWS, rows)))
    rows = _BLOCK_ELEMENTS[np.dtype(np.float64)] // max(n_components, coef.shape[1])
    return int(min(_MAX_EXPANDED_ROWS, max(_MIN_BLOCK_ROWS, rows)))


def sub_blocks(n_rows, model, n_features):
    """``(start, stop)`` of the sub-blocks the kernels take ``model``'s rows in."""
    step = block_rows(model, n_features)
    return [(start, min(start + step, n_rows)) for start in range(0, n_rows, step)]


# ------------------------------------------------------------------ models


def _whitening_matrix(prec_chol, offsets, covariance_type, dtype):
    """(K D, D + 1): rows k D + j give ``(x - center - offset_k) @ P_k[:, j]``."""
    n_components, n_features = offsets.shape
    factors = _covariance.COVARIANCES[covariance_type].per_component_matrices(
        prec_chol, n_components, n_features)
    whiten = np.empty((n_components, n_features, n_features + 1))
    whiten[:, :, :n_features] = factors.transpose(0, 2, 1)
    whiten[:, :, n_features] = -np.einsum("ki,kij->kj", offsets, factors)
    return whiten.reshape(n_components * n_features, n_features + 1).astype(dtype)


def _expanded_form(prec_chol, offsets, covariance_type):
    """Coefficients of the squared distance as a linear form in row features, or None.

    None when the type has no expanded form (full), or when the components sit too far
    from the center (in their own metric) for the expansion to keep the digits.
    """
    form = _covariance.COVARIANCES[covariance_type].expanded
    if form is None:
        return None
    coef, whitened = form.coefficients(prec_chol, offsets)
    if not np.all(np.isfinite(coef)):
        return None
    if (whitened**2).sum(axis=1).max(initial=0.0) > _EXPANDED_MAX_SQ_DISTANCE:
        return None
    return coef


def prepare_model(weights, means, precisions_cholesky, covariance_type, dtype):
    """Parameters of one model as the kernels use them (small, sent to every chunk).

    Means are expressed relative to a common ``center`` (the weighted mean of the
    means), so that the block is shifted once and each component's difference
    ``x - mean_k`` never cancels digits, even at large offsets in float32.

    Returns
    -------
    model : dict
        ``covariance_type``, ``center`` (D,), ``offsets`` (K, D), ``prec_chol``,
        ``const`` (K,) = log weight + log det - D/2 log(2 pi), all in ``dtype``
        except ``const`` (float64), and ``shift`` (K, D) float64: the exact
        point each component's statistics are accumulated about. Also ``whiten``
        (K D, D + 1) in ``dtype`` (the stacked factors of the whitening E-step) and
        ``expanded`` (K, F) float64 or None (the expanded E-step, see the module
        docstring), both computed from the ``dtype``-rounded offsets and factors.
    """
    # float64 whatever the attributes' dtype (float32 after a float32 fit, as sklearn's)
    weights = np.asarray(weights, np.float64)
    means = np.asarray(means, np.float64)
    precisions_cholesky = np.asarray(precisions_cholesky, np.float64)
    n_features = means.shape[1]
    center = (weights / weights.sum()) @ means
    center_d = center.astype(dtype)
    offsets_d = (means - center_d.astype(np.float64)).astype(dtype)
    log_det = _covariance.log_det_cholesky(precisions_cholesky, covariance_type, n_features)
    with np.errstate(divide="ignore"):
        log_weights = np.log(weights)
    const = log_weights + log_det - 0.5 * n_features * math.log(2 * math.pi)
    prec_chol_d = np.asarray(precisions_cholesky, np.float64).astype(dtype)
    offsets64 = offsets_d.astype(np.float64)
    prec_chol64 = prec_chol_d.astype(np.float64)
    return {
        "covariance_type": covariance_type,
        "center": center_d,
        "offsets": offsets_d,
        "prec_chol": prec_chol_d,
        "const": np.asarray(const, np.float64) * np.ones(means.shape[0]),
        "shift": center_d.astype(np.float64) + offsets64,
        "whiten": _whitening_matrix(prec_chol64, offsets64, covariance_type, dtype),
        "expanded": _expanded_form(prec_chol64, offsets64, covariance_type),
    }


# ------------------------------------------------------------ sub-blocks


class _Workspace:
    """Flat buffers reused by every sub-block: views of their first ``rows * width``
    elements are contiguous, whatever the block's length.

    One per thread for the life of the process (:func:`_workspace`): allocating them per
    call costs more than the arithmetic of a sub-block (page faults and zeroing of a few
    MB; see benchmarks/RESULTS.md), and a worker calls the kernel once per chunk and pass.
    """

    def __init__(self):
        self._buffers = {}

    def get(self, name, shape, dtype):
        # by dtype too: a float32 grid mixes whitening (float32) and expanded (float64)
        # models, which would otherwise reallocate a shared buffer at every model
        key = (name, np.dtype(dtype).char)
        size = math.prod(shape)
        buffer = self._buffers.get(key)
        if buffer is None or buffer.size < size:
            buffer = self._buffers[key] = np.empty(size, dtype)
        return buffer[:size].reshape(shape)


_THREAD = threading.local()


def _workspace():
    """This thread's :class:`_Workspace` (a few MiB, kept between calls)."""
    work = getattr(_THREAD, "work", None)
    if work is None:
        work = _THREAD.work = _Workspace()
    return work


class _EStep:
    """One model's E-step on sub-blocks of ``n_rows`` rows: the buffers (views of the
    thread's workspace) and what does not depend on the rows, looked up once per chunk
    and length.

    Per sub-block it is a dozen numpy calls and little else: on worker threads the Python
    around each call holds the GIL that the other workers' calls wait for (see
    benchmarks/RESULTS.md, "What limits each number"). Products are ``np.dot``, which
    gives the GIL up around BLAS; ``np.matmul`` of a transposed operand kept it.

    Whitening form: ``xt = [x - center; 1]`` transposed, (D + 1, rows), in the compute
    dtype, is also the E-step's features. Expanded form: float64 whatever the compute
    dtype (the expansion needs it); ``xt`` is the first rows of a buffer of the form's
    ``block_rows`` from which its ``features`` are built (for diag/spherical the buffer
    becomes ``[x; 1; x^2]``, built once per sub-block for the E-step and the statistics).
    The row of ones is written once, here.
    """

    def __init__(self, model, n_rows, n_features, work):
        D = n_features
        n_components = model["const"].shape[0]
        self.n_rows = n_rows
        coef = model.get("expanded")
        if coef is None:
            dtype = model["center"].dtype
            self.block = work.get("xt", (D + 1, n_rows), dtype)
            self.origin = model["center"][:, None]
            self.whiten = model["whiten"]
            whitened = work.get("whitened", (n_components * D, n_rows), dtype)
            self.whitened = whitened
            self.squares = whitened.reshape(n_components, D, n_rows)
            self.form = None
            self.dist = work.get("dist", (n_components, n_rows), dtype)
        else:
            dtype = np.dtype(np.float64)
            self.form = _covariance.COVARIANCES[model["covariance_type"]].expanded
            self.block = work.get("features", (self.form.block_rows(D), n_rows), dtype)
            self.origin = model["center"].astype(np.float64)[:, None]
            # -0.5 d(x) as one product: scaling by a power of two is exact
            self.coef = -0.5 * coef
            self.prec_chol, self.work = model["prec_chol"], work
            self.dist = work.get("dist64", (n_components, n_rows), dtype)
        self.xt = self.block[: D + 1]
        self.x = self.block[:D]
        self.xt[D] = 1
        self.const = model["const"][:, None].astype(dtype)
        self.top = work.get("top", (n_rows,), dtype)
        self.scaled = work.get("scaled", (n_components, n_rows), dtype)
        self.total = work.get("total", (n_rows,), dtype)
        self.log_prob_norm = work.get("log_prob_norm", (n_rows,), dtype)
        self.flush = dtype.type(_FLUSH[dtype.type])
        self.absent = _absent(model)

    def center(self, X):
        """(xt, features) of the sub-block X (rows, D)."""
        np.subtract(X.T, self.origin, out=self.x)
        if self.form is None:
            return self.xt, self.xt
        return self.xt, self.form.features(self.block, self.prec_chol, self.work)

    def weighted_log_prob(self, features):
        """log w_k + log N(x | k) for every component and row: (K, rows)."""
        dist = self.dist
        if self.form is None:
            np.dot(self.whiten, features, out=self.whitened)
            np.einsum("kdn,kdn->kn", self.squares, self.squares, out=dist)
            dist *= -0.5
        else:
            np.dot(self.coef, features, out=dist)
        dist += self.const
        return dist

    def _log_sum_exp(self, weighted_log_prob):
        """log p(x) per row into ``log_prob_norm``, exp(weighted - top) into ``scaled``
        and their sum into ``total``.

        Terms below ``exp(_FLUSH[dtype])`` of the row's largest are raised to that value:
        far below the last digit of the sum, they change nothing, while exponentials of
        very negative numbers take numpy's slow underflow path (several times the time of
        the exp on clustered data) and give subnormal numbers that slow the products of
        the statistics. Components of weight 0 (``absent``) still get exactly 0.
        """
        top, scaled = self.top, self.scaled
        np.maximum.reduce(weighted_log_prob, axis=0, out=top)
        # one reduction instead of a test per row: the sum of finite tops is finite
        # (or overflows, and then the test below changes nothing)
        if not math.isfinite(np.add.reduce(top)):
            top[~np.isfinite(top)] = 0
        np.subtract(weighted_log_prob, top, out=scaled)
        np.maximum(scaled, self.flush, out=scaled)
        np.exp(scaled, out=scaled)
        if self.absent is not None:
            scaled[self.absent] = 0
        np.add.reduce(scaled, axis=0, out=self.total)
        np.log(self.total, out=self.log_prob_norm)
        self.log_prob_norm += top

    def log_prob(self, X):
        """(log p(x) (rows,), log w_k + log N(x | k) (K, rows)) of the sub-block X."""
        weighted_log_prob = self.weighted_log_prob(self.center(X)[1])
        with np.errstate(under="ignore", divide="ignore", invalid="ignore"):
            self._log_sum_exp(weighted_log_prob)
        return self.log_prob_norm, weighted_log_prob

    def normalise(self, weighted_log_prob):
        """(log p(x) (rows,), responsibilities (K, rows)) from the log-densities."""
        with np.errstate(under="ignore", divide="ignore", invalid="ignore"):
            self._log_sum_exp(weighted_log_prob)
            np.divide(self.scaled, self.total, out=self.scaled)
        return self.log_prob_norm, self.scaled

    def responsibilities(self, X):
        """(xt, features, log p(x) (rows,), responsibilities (K, rows)) of the sub-block X."""
        xt, features = self.center(X)
        return xt, features, *self.normalise(self.weighted_log_prob(features))


def _e_steps(X, model, work):
    """``(start, stop, _EStep)`` over the sub-blocks of X for ``model`` (one _EStep per
    length: the full one and the last)."""
    n_rows, n_features = X.shape
    step = None
    for start, stop in sub_blocks(n_rows, model, n_features):
        if step is None or step.n_rows != stop - start:
            step = _EStep(model, stop - start, n_features, work)
        yield start, stop, step


def _absent(model):
    """Components whose weight is 0 (their log-density is -inf), or None."""
    finite = np.isfinite(model["const"])
    return None if finite.all() else ~finite


def _accumulator(model):
    """A fresh accumulator for the model's covariance type and E-step form."""
    covariance = _covariance.COVARIANCES[model["covariance_type"]]
    if model.get("expanded") is None:
        return covariance.statistics(model["offsets"])
    return covariance.expanded.statistics(model["offsets"])


def empty_stats(n_components, n_features, covariance_type):
    """The statistics of no rows (zeros of each statistic's shape)."""
    statistics = _covariance.COVARIANCES[covariance_type].statistics
    return statistics(np.zeros((n_components, n_features))).stats()


# ---------------------------------------------------------------- EM pass


def em_chunk(X, models, sample_weight=None):
    """E-step for each model's current parameters and the statistics of its next M-step.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features)
    models : list of dict
        Prepared by :func:`prepare_model`.
    sample_weight : ndarray of shape (n_rows,), optional
        Frequency weights (float64): every statistic of a row is multiplied by its weight.

    Returns
    -------
    stats : list of dict
        One statistics dict per model, about that model's ``shift`` (its means).
    """
    if sample_weight is not None and not np.all(sample_weight > 0):
        # a row of weight 0 is a dropped row, exactly (whatever its log-likelihood)
        keep = sample_weight > 0
        X, sample_weight = X[keep], sample_weight[keep]
    work = _workspace()
    out = []
    for model in models:
        statistics = _accumulator(model)
        for start, stop, step in _e_steps(X, model, work):
            xt, features, log_prob_norm, resp = step.responsibilities(X[start:stop])
            if sample_weight is None:
                statistics.add(xt, features, resp, log_prob_norm, work)
            else:
                statistics.add_weighted(xt, features, resp, log_prob_norm, work,
                                        sample_weight[start:stop])
        out.append(statistics.stats())
    return out


def resp_chunk(X, resp, shift, covariance_type, sample_weight=None):
    """Statistics for given responsibilities (initialisation), about ``shift`` (K, D);
    with ``sample_weight`` (n_rows,), of the responsibilities times the weights."""
    n_rows, n_features = X.shape
    shift = np.asarray(shift, np.float64)
    center = shift.mean(axis=0)
    model = {"covariance_type": covariance_type, "offsets": shift - center, "expanded": None,
             "center": center}
    statistics = _accumulator(model)
    work = _workspace()
    X = np.asarray(X)
    resp = np.asarray(resp)
    if sample_weight is not None:
        resp = resp * np.asarray(sample_weight, np.float64)[:, None]
    for start, stop in sub_blocks(n_rows, model, n_features):
        xt = work.get("xt", (n_features + 1, stop - start), np.float64)
        np.subtract(X[start:stop].T, center[:, None], out=xt[:n_features])
        xt[n_features] = 1
        block_resp = np.ascontiguousarray(resp[start:stop].T, dtype=np.float64)
        statistics.add(xt, xt, block_resp, np.zeros(0), work)
    stats = statistics.stats()
    stats["loglik"] = 0.0
    return stats


def combine_sums(parts):
    """Sum per-chunk lists of dicts of arrays element by element, in chunk order."""
    parts = list(parts)
    total = [{key: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v)
              for key, v in stats.items()} for stats in parts[0]]
    for part in parts[1:]:
        for acc, stats in zip(total, part):
            for key in acc:
                acc[key] = acc[key] + stats[key]
    return total


# ------------------------------------------------------------- prediction


def log_prob_blocks(X, model):
    """Per sub-block of X, exactly as the EM pass computes it: ``(start, stop, log p(x)
    (rows,), log responsibilities (K, rows))``. The log-densities are the E-step's own
    (a sum of them is bit for bit the pass's ``loglik``); they live in this thread's
    workspace and are valid until the next sub-block."""
    for start, stop, step in _e_steps(X, model, _workspace()):
        lpn, weighted_log_prob = step.log_prob(X[start:stop])
        # in place: the log-densities' buffer is the next sub-block's anyway
        yield start, stop, lpn, np.subtract(weighted_log_prob, lpn, out=weighted_log_prob)


def score_rows(X, model):
    """What an assignment file holds of X's rows: ``(log p(x) (n,) in the model's dtype,
    responsibilities (K, n) float64, most likely component (n,) int32)``."""
    n_rows = X.shape[0]
    n_components = model["offsets"].shape[0]
    log_prob_norm = np.empty(n_rows, dtype=model["center"].dtype)
    # each component's responsibilities are one contiguous row: a column of the output
    resp = np.empty((n_components, n_rows), dtype=np.float64)
    labels = np.empty(n_rows, dtype=np.int32)
    for start, stop, lpn, block_log_resp in log_prob_blocks(X, model):
        log_prob_norm[start:stop] = lpn
        np.argmax(block_log_resp, axis=0, out=labels[start:stop])
        np.exp(block_log_resp, out=resp[:, start:stop])
    return log_prob_norm, resp, labels


def log_prob_resp(X, model):
    """log p(x) (n,) and log responsibilities (n, K) for one model."""
    n_rows = X.shape[0]
    n_components = model["offsets"].shape[0]
    log_prob_norm = np.empty(n_rows, dtype=X.dtype)
    log_resp = np.empty((n_rows, n_components), dtype=X.dtype)
    for start, stop, lpn, block_log_resp in log_prob_blocks(X, model):
        log_prob_norm[start:stop] = lpn
        log_resp[start:stop] = block_log_resp.T
    return log_prob_norm, log_resp


def predict_chunk(X, model):
    return log_prob_resp(X, model)[1].argmax(axis=1)


def predict_proba_chunk(X, model):
    return np.exp(log_prob_resp(X, model)[1])


def score_samples_chunk(X, model):
    return log_prob_resp(X, model)[0]


# ------------------------------------------------------------- describe


def squared_deviations(X, mean, block_rows=32_768):
    """``((X - mean) ** 2).sum(axis=0)`` block of rows by block: temporaries of a block's
    size (the chunk's would be fresh pages, zeroed by the kernel, at every chunk)."""
    m2 = np.zeros(X.shape[1])
    for start in range(0, X.shape[0], block_rows):
        deviations = np.subtract(X[start:start + block_rows], mean, dtype=np.float64)
        m2 += np.square(deviations, out=deviations).sum(axis=0)
    return m2


def describe_chunk(X, sample_weight=None):
    """Rows, non-finite counts, and (weighted) mean / sum of squared deviations per column.

    ``weight`` is the total weight (the rows without weights) and ``n_positive`` the rows
    of positive weight; with weights, ``w_nan``, ``w_inf`` and ``w_negative`` count the
    bad ones. Rows of zero weight count in nothing but ``n`` and the X checks.
    """
    n = X.shape[0]
    # every value finite (the usual case) shows in finite column sums: no counts to make
    with np.errstate(over="ignore", invalid="ignore"):
        finite = n == 0 or bool(np.isfinite(np.add.reduce(X, axis=0)).all())
    n_nan = 0 if finite else int(np.isnan(X).sum())
    n_inf = 0 if finite else int(np.isinf(X).sum())
    out = {"n": n, "n_nan": n_nan, "n_inf": n_inf, "weight": float(n), "n_positive": n,
           "w_nan": 0, "w_inf": 0, "w_negative": 0}
    if sample_weight is not None:
        weight = np.asarray(sample_weight, np.float64)
        positive = weight > 0
        finite = np.isfinite(weight)
        out.update(w_nan=int(np.isnan(weight).sum()), w_inf=int(np.isinf(weight).sum()),
                   w_negative=int((weight < 0).sum()), n_positive=int(positive.sum()))
        positive &= finite
        out["weight"] = float(weight[positive].sum())
        if not positive.all():
            X, weight = X[positive], weight[positive]
    if n == 0 or n_nan or n_inf or out["weight"] == 0:
        mean = np.zeros(X.shape[1])
        m2 = np.zeros(X.shape[1])
    elif sample_weight is None:
        Xf = X.astype(np.float64, copy=False)
        mean = Xf.mean(axis=0)
        m2 = squared_deviations(Xf, mean)
    else:
        Xf = X.astype(np.float64)
        mean = weight @ Xf / out["weight"]
        m2 = weight @ (Xf - mean) ** 2
    out.update(mean=mean, m2=m2)
    return out


def combine_describe(parts):
    """Chan et al.'s pairwise merge of (weighted) counts, means and squared deviations,
    in order."""
    parts = list(parts)
    acc = dict(parts[0])
    for p in parts[1:]:
        weight = acc["weight"] + p["weight"]
        if p["weight"] and acc["weight"]:
            delta = p["mean"] - acc["mean"]
            acc["mean"] = acc["mean"] + delta * (p["weight"] / weight)
            acc["m2"] = acc["m2"] + p["m2"] + delta**2 * (acc["weight"] * p["weight"] / weight)
        elif p["weight"]:
            acc["mean"], acc["m2"] = p["mean"], p["m2"]
        acc["weight"] = weight
        for key in ("n", "n_nan", "n_inf", "n_positive", "w_nan", "w_inf", "w_negative"):
            acc[key] += p[key]
    return acc
