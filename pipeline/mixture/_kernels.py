"""Pure numpy kernels: one block of rows in, small numbers out.

Nothing here knows about dask. Every function takes a 2-D block ``X`` of shape
(n_rows, n_features) and model parameters prepared on the client by
:func:`prepare_model`, and returns arrays whose size does not depend on n_rows
(reductions) or one row of output per row of input (predictions).

Rows are processed in sub-blocks so that the (n_components, rows, n_features)
temporaries stay cache-sized, whatever the chunk size.
"""

import math

import numpy as np

from pipeline.mixture import _covariance

# Elements of the (K, rows, D) temporaries per sub-block: 2**20 float64 = 8 MiB.
_BLOCK_ELEMENTS = 2**20


def _sub_blocks(n_rows, n_components, n_features):
    step = max(256, _BLOCK_ELEMENTS // max(1, n_components * n_features))
    return [(start, min(start + step, n_rows)) for start in range(0, n_rows, step)]


# ------------------------------------------------------------------ models


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
        point each component's statistics are accumulated about.
    """
    weights = np.asarray(weights, np.float64)
    means = np.asarray(means, np.float64)
    n_features = means.shape[1]
    center = (weights / weights.sum()) @ means
    center_d = center.astype(dtype)
    offsets_d = (means - center_d.astype(np.float64)).astype(dtype)
    log_det = _covariance.log_det_cholesky(precisions_cholesky, covariance_type, n_features)
    with np.errstate(divide="ignore"):
        log_weights = np.log(weights)
    const = log_weights + log_det - 0.5 * n_features * math.log(2 * math.pi)
    return {
        "covariance_type": covariance_type,
        "center": center_d,
        "offsets": offsets_d,
        "prec_chol": np.asarray(precisions_cholesky, np.float64).astype(dtype),
        "const": np.asarray(const, np.float64) * np.ones(means.shape[0]),
        "shift": center_d.astype(np.float64) + offsets_d.astype(np.float64),
    }


def _differences(X, center, offsets):
    """x - mean_k for every component: shape (K, n, D)."""
    Xs = X - center
    return Xs[None, :, :] - offsets[:, None, :]


def _squared_mahalanobis(diff, model):
    """Squared Mahalanobis distances, shape (K, n)."""
    covariance_type = model["covariance_type"]
    prec_chol = model["prec_chol"]
    if covariance_type == "full":
        y = np.matmul(diff, prec_chol)
    elif covariance_type == "tied":
        y = np.matmul(diff, prec_chol)
    elif covariance_type == "diag":
        y = diff * prec_chol[:, None, :]
    else:
        y = diff * prec_chol[:, None, None]
    return np.einsum("knd,knd->kn", y, y)


def _log_prob_resp(diff, model):
    """(log p(x) per row (n,), log responsibilities (K, n))."""
    weighted_log_prob = -0.5 * _squared_mahalanobis(diff, model) + model["const"][:, None].astype(
        diff.dtype
    )
    top = weighted_log_prob.max(axis=0)
    top = np.where(np.isfinite(top), top, 0)
    with np.errstate(under="ignore", divide="ignore"):
        log_prob_norm = np.log(np.exp(weighted_log_prob - top).sum(axis=0)) + top
        log_resp = weighted_log_prob - log_prob_norm
    return log_prob_norm, log_resp


def _moments(diff, resp, covariance_type):
    """Sufficient statistics about the shift the differences were taken from.

    The sums run over up to a whole sub-block of rows; in float32 mode they would
    lose about 1e-5 relative per 1e5 rows (einsum and sgemm accumulate in the input
    dtype). The E-step stays in the compute dtype, the accumulation is float64.
    """
    diff = diff.astype(np.float64, copy=False)
    resp = resp.astype(np.float64, copy=False)
    nk = resp.sum(axis=1)
    s = np.einsum("kn,knd->kd", resp, diff)
    if _covariance.second_moment_is_matrix(covariance_type):
        S = np.matmul(diff.transpose(0, 2, 1) * resp[:, None, :], diff)
    else:
        S = np.einsum("kn,knd->kd", resp, diff * diff)
    return nk, s, S


def empty_stats(n_components, n_features, covariance_type):
    D = n_features
    second = (n_components, D, D) if _covariance.second_moment_is_matrix(covariance_type) else (
        n_components,
        D,
    )
    return {
        "n": 0.0,
        "loglik": 0.0,
        "nk": np.zeros(n_components),
        "s": np.zeros((n_components, D)),
        "S": np.zeros(second),
    }


def _accumulate(total, nk, s, S, n, loglik):
    total["n"] += n
    total["loglik"] += loglik
    total["nk"] += nk
    total["s"] += s
    total["S"] += S


# ---------------------------------------------------------------- EM pass


def em_chunk(X, models):
    """E-step for each model's current parameters and the statistics of its next M-step.

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features)
    models : list of dict
        Prepared by :func:`prepare_model`.

    Returns
    -------
    stats : list of dict
        One statistics dict per model, about that model's ``shift`` (its means).
    """
    n_rows, n_features = X.shape
    out = []
    for model in models:
        n_components = model["offsets"].shape[0]
        total = empty_stats(n_components, n_features, model["covariance_type"])
        for start, stop in _sub_blocks(n_rows, n_components, n_features):
            diff = _differences(X[start:stop], model["center"], model["offsets"])
            log_prob_norm, log_resp = _log_prob_resp(diff, model)
            resp = np.exp(log_resp)
            nk, s, S = _moments(diff, resp, model["covariance_type"])
            _accumulate(
                total, nk, s, S, stop - start, float(log_prob_norm.sum(dtype=np.float64))
            )
        out.append(total)
    return out


def resp_chunk(X, resp, shift, covariance_type):
    """Statistics for given responsibilities (initialisation), about ``shift`` (K, D)."""
    n_rows, n_features = X.shape
    n_components = shift.shape[0]
    total = empty_stats(n_components, n_features, covariance_type)
    shift = np.asarray(shift, np.float64)
    for start, stop in _sub_blocks(n_rows, n_components, n_features):
        diff = X[start:stop].astype(np.float64)[None, :, :] - shift[:, None, :]
        nk, s, S = _moments(diff, np.asarray(resp[start:stop], np.float64).T, covariance_type)
        _accumulate(total, nk, s, S, stop - start, 0.0)
    return total


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


def log_prob_resp(X, model):
    """log p(x) (n,) and log responsibilities (n, K) for one model."""
    n_rows, n_features = X.shape
    n_components = model["offsets"].shape[0]
    log_prob_norm = np.empty(n_rows, dtype=X.dtype)
    log_resp = np.empty((n_rows, n_components), dtype=X.dtype)
    for start, stop in _sub_blocks(n_rows, n_components, n_features):
        diff = _differences(X[start:stop], model["center"], model["offsets"])
        lpn, lr = _log_prob_resp(diff, model)
        log_prob_norm[start:stop] = lpn
        log_resp[start:stop] = lr.T
    return log_prob_norm, log_resp


def predict_chunk(X, model):
    return log_prob_resp(X, model)[1].argmax(axis=1)


def predict_proba_chunk(X, model):
    return np.exp(log_prob_resp(X, model)[1])


def score_samples_chunk(X, model):
    return log_prob_resp(X, model)[0]


# ------------------------------------------------------------- describe


def describe_chunk(X):
    """Rows, non-finite counts, and mean / sum of squared deviations per column."""
    n = X.shape[0]
    n_nan = int(np.isnan(X).sum())
    n_inf = int(np.isinf(X).sum())
    if n == 0 or n_nan or n_inf:
        mean = np.zeros(X.shape[1])
        m2 = np.zeros(X.shape[1])
    else:
        Xf = X.astype(np.float64)
        mean = Xf.mean(axis=0)
        m2 = ((Xf - mean) ** 2).sum(axis=0)
    return {"n": n, "n_nan": n_nan, "n_inf": n_inf, "mean": mean, "m2": m2}


def combine_describe(parts):
    """Chan et al.'s pairwise merge of counts, means and squared deviations, in order."""
    parts = list(parts)
    acc = dict(parts[0])
    for p in parts[1:]:
        n = acc["n"] + p["n"]
        if p["n"] and acc["n"]:
            delta = p["mean"] - acc["mean"]
            acc["mean"] = acc["mean"] + delta * (p["n"] / n)
            acc["m2"] = acc["m2"] + p["m2"] + delta**2 * (acc["n"] * p["n"] / n)
        elif p["n"]:
            acc["mean"], acc["m2"] = p["mean"], p["m2"]
        acc["n"] = n
        acc["n_nan"] += p["n_nan"]
        acc["n_inf"] += p["n_inf"]
    return acc


# ------------------------------------------------------------- k-means


def _sq_distances(X, centers, shift):
    """Squared euclidean distances (n, C), computed on shifted float64 data."""
    Xs = X.astype(np.float64) - shift
    cs = centers - shift
    d = (Xs * Xs).sum(axis=1)[:, None] - 2.0 * Xs @ cs.T + (cs * cs).sum(axis=1)[None, :]
    return np.maximum(d, 0.0)


def min_sq_distance_chunk(X, centers_list, shift):
    """For each center set, the squared distance of every row to its nearest center (J, n)."""
    if X.shape[0] == 0:
        return np.zeros((len(centers_list), 0))
    return np.stack([_sq_distances(X, c, shift).min(axis=1) for c in centers_list])


def lloyd_chunk(X, centers_list, shift):
    """For each center set: counts (C,), sums of (x - shift) (C, D), inertia."""
    out = []
    Xs = X.astype(np.float64) - shift
    for centers in centers_list:
        n_centers = centers.shape[0]
        if X.shape[0] == 0:
            out.append({"counts": np.zeros(n_centers), "sums": np.zeros(centers.shape),
                        "inertia": 0.0})
            continue
        d = _sq_distances(X, centers, shift)
        labels = d.argmin(axis=1)
        counts = np.bincount(labels, minlength=n_centers).astype(np.float64)
        sums = np.zeros(centers.shape)
        np.add.at(sums, labels, Xs)
        out.append({"counts": counts, "sums": sums,
                    "inertia": float(d[np.arange(len(labels)), labels].sum())})
    return out


def nearest_center(X, centers, shift):
    return _sq_distances(X, centers, shift).argmin(axis=1)
