"""Initialisation on the cluster: kmeans (on a sample), k-means++, random, random_from_data.

Nothing here collects the data on the client but a sample of rows for k-means. Every
method is a handful of passes over the chunks through
:class:`~pipeline.mixture._chunks.ChunkedData`, and several
initialisations (a grid of candidates, or ``n_init`` restarts) advance in lock-step so
that each pass serves all of them. Randomness is drawn from generators seeded by
``(seed, step, chunk index)``: the result does not depend on the number of workers.
"""

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.mixture import _covariance, _kernels, _kmeans

logger = logging.getLogger("pipeline.mixture")

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")

# k-means runs on a uniform sample of at least this many rows ...
KMEANS_SAMPLE_ROWS = 50_000
# ... and of at least this many per cluster
KMEANS_SAMPLE_ROWS_PER_CLUSTER = 1_000
# restarts of k-means on the sample (the best inertia is kept; the restarts draw from one
# stream, so more never keep a worse one). On benchmarks/init_quality.py's unequal-sizes
# case 26 % of single k-means runs on the sample end in a worse optimum (of inertia 10 %
# higher): the best of 3 was one on 2 of 30 seeds (and its EM ended worse than
# scikit-learn's on 1), the best of 4 or 5 on none. Each costs 0.06 s (the benchmark's
# 1M x 16, K = 8) to 0.14 s (that case) on the client.
KMEANS_N_INIT = 5
# rows per block of the labelling pass's distances (2 MiB of float64 at 16 features)
LABEL_BLOCK_ROWS = 16_384


@dataclass
class InitJob:
    """What one candidate needs to start: its size, type, method and seed."""

    n_components: int
    covariance_type: str
    init_params: str
    seed: int
    reg_covar: float
    weights_init: Any = None
    means_init: Any = None
    precisions_init: Any = None
    # False: no precision Cholesky factors (None in the parameters). The variational
    # mixture derives its own from the priors, and the covariances estimated here may be
    # singular where the variational ones are not (reg_covar=0, a one-point cluster).
    with_precisions: bool = True

    @property
    def fully_given(self):
        return not any(v is None for v in (self.weights_init, self.means_init,
                                            self.precisions_init))


# ------------------------------------------------------------------ helpers


def _rng(*key):
    return np.random.default_rng([int(k) for k in key])


# ------------------------------------------------------- k-means kernels (per chunk)


def _sq_distances(X, centers, shift):
    """Squared euclidean distances (n, C), computed on shifted float64 data."""
    Xs = X.astype(np.float64) - shift
    cs = centers - shift
    # np.dot, not @: matmul of a transposed operand holds the GIL (worker threads)
    d = (Xs * Xs).sum(axis=1)[:, None] - 2.0 * np.dot(Xs, cs.T) + (cs * cs).sum(axis=1)[None, :]
    return np.maximum(d, 0.0)


def min_sq_distance_chunk(X, centers_list, shift, sample_weight=None):
    """For each center set, the squared distance of every row to its nearest center (J, n),
    times the row's weight when there are weights."""
    if X.shape[0] == 0:
        return np.zeros((len(centers_list), 0))
    mins = np.stack([_sq_distances(X, c, shift).min(axis=1) for c in centers_list])
    return mins if sample_weight is None else mins * sample_weight


def nearest_center(X, centers, shift):
    """Each row's nearest center, block of rows by block: the temporaries are of a block's
    size, not of the chunk's (fresh pages for each chunk cost more than the arithmetic)."""
    labels = np.empty(X.shape[0], dtype=np.intp)
    for start in range(0, X.shape[0], LABEL_BLOCK_ROWS):
        stop = min(start + LABEL_BLOCK_ROWS, X.shape[0])
        labels[start:stop] = _sq_distances(X[start:stop], centers, shift).argmin(axis=1)
    return labels


def _top_keys(u, scores, n):
    """Efraimidis-Spirakis keys log(u)/score (-inf where the score is 0): the ``n`` best
    keys and their rows, for sampling ``n`` rows without replacement by score."""
    with np.errstate(divide="ignore"):
        keys = np.where(scores > 0, np.log(u) / np.where(scores > 0, scores, 1.0), -np.inf)
    top = np.argsort(-keys, kind="stable")[:n]
    return keys[top], top


def _topk_chunk(X, index, centers_list, shift, n_trials, seeds, step, sample_weight=None):
    """Sampling without replacement by (weight x) squared distance."""
    mins = min_sq_distance_chunk(X, centers_list, shift, sample_weight)
    return [_top_keys(_rng(seed, step, index).uniform(size=d2.shape[0]), d2, n)
            for d2, n, seed in zip(mins, n_trials, seeds)]


def _draw_chunk(X, index, draws, sample_weight):
    """For each (seed, step, size) of ``draws``: the chunk's best keys of sampling
    ``size`` rows without replacement by weight (a stream of its own: the 1 in the key)."""
    return [_top_keys(_rng(seed, step, index, 1).uniform(size=len(sample_weight)),
                      sample_weight, size) for seed, step, size in draws]


def _potential_chunk(X, centers_list, candidates_list, shift, sample_weight=None):
    out = []
    mins = min_sq_distance_chunk(X, centers_list, shift)
    for d2, candidates in zip(mins, candidates_list):
        if X.shape[0] == 0:
            out.append({"potential": np.zeros(len(candidates))})
            continue
        potential = np.minimum(d2[:, None], _sq_distances(X, candidates, shift))
        out.append({"potential": potential.sum(axis=0) if sample_weight is None
                    else sample_weight @ potential})
    return out


def _global_indices(data, per_chunk):
    return np.concatenate([data.offsets[i] + np.asarray(idx, np.int64)
                           for i, idx in enumerate(per_chunk)] or [np.empty(0, np.int64)])


def _best_keys(data, per_chunk, j, n):
    """The ``n`` best keys over all chunks of the ``j``-th sampling of a gathered pass of
    :func:`_top_keys`: (keys, global row indices), best first, -inf keys dropped."""
    keys = np.concatenate([chunk[j][0] for chunk in per_chunk])
    idx = _global_indices(data, [chunk[j][1] for chunk in per_chunk])
    order = np.argsort(-keys, kind="stable")[:n]
    order = order[np.isfinite(keys[order])]
    return keys[order], idx[order]


def weighted_draws(data, draws):
    """Rows drawn without replacement with probability by sample weight (never a row of
    weight 0), for each (seed, step, size) of ``draws``: one pass for all.

    Returns
    -------
    indices : list of ndarray of shape (size,)
    """
    per_chunk = data.gather(_draw_chunk, draws)
    indices = []
    for j, (_, _, size) in enumerate(draws):
        _, idx = _best_keys(data, per_chunk, j, size)
        if len(idx) < size:
            raise ValueError(f"Expected at least {size} rows with a positive sample_weight "
                             f"to initialise from, got {len(idx)}.")
        indices.append(idx)
    return indices


def _first_rows(data, seeds):
    """The first center of each seed: a row drawn uniformly, or by weight."""
    if data.weighted:
        return [int(idx[0]) for idx in weighted_draws(data, [(seed, 0, 1) for seed in seeds])]
    return [int(_rng(seed, 0).integers(data.n_samples)) for seed in seeds]


# ------------------------------------------------------------------ k-means


def _positive_draw_chunk(X, index, seed, size, sample_weight):
    """The chunk's best keys of drawing ``size`` rows uniformly among those of positive
    weight (a stream of its own: the 2 in the key)."""
    return [_top_keys(_rng(seed, 0, index, 2).uniform(size=len(sample_weight)),
                      (sample_weight > 0).astype(np.float64), size)]


def sample_indices(data, seed, size):
    """Global indices of ``size`` rows drawn uniformly without replacement (among rows
    of positive weight when there are weights), sorted; every row when there are fewer.

    Unweighted, the draw is made here from the chunk sizes: no pass over the data.
    Weighted, one pass over the weights finds the rows of positive weight.
    """
    if not data.weighted:
        if size >= data.n_samples:
            return np.arange(data.n_samples, dtype=np.int64)
        return np.sort(_rng(seed, 0, 2).choice(data.n_samples, size=size, replace=False))
    _, idx = _best_keys(data, data.gather(_positive_draw_chunk, seed, size), 0, size)
    return np.sort(idx)


def kmeans_sample_size(n_clusters):
    return max(KMEANS_SAMPLE_ROWS, KMEANS_SAMPLE_ROWS_PER_CLUSTER * n_clusters)


def kmeans_centers(data, specs):
    """k-means for several (n_clusters, seed) specs at once, on a sample of the rows.

    For each seed, ``kmeans_sample_size`` rows are drawn uniformly (every row of a small
    data set; with weights, rows of positive weight, weighted by them) and k-means
    (:func:`pipeline.mixture._kmeans.kmeans`, scikit-learn's algorithm: k-means++
    seeding, Lloyd iterations to its tolerance, the best inertia of ``KMEANS_N_INIT``
    restarts) runs on them here, on the client. The caller's pass of
    the labels (each row's nearest center) then makes the initial parameters from every
    row: one more Lloyd step, on the whole data.

    A uniform sample of tens of thousands of rows places the centers of k-means on the
    whole data within its sampling error, at the cost of one gathering of the rows
    instead of a pass per Lloyd iteration (k-means|| on the cluster took 15 passes, the
    time of 12 EM iterations, at 1M x 16 x 8); benchmarks/init_quality.py compares the
    fits' final log-likelihoods with scikit-learn's k-means start.

    Returns
    -------
    centers : list of ndarray of shape (n_clusters, n_features)
    """
    seeds = sorted({seed for _, seed in specs})
    size = kmeans_sample_size(max(k for k, _ in specs))
    drawn = {seed: sample_indices(data, seed, size) for seed in seeds}
    everything = np.concatenate([drawn[seed] for seed in seeds])
    rows = data.take(everything)
    weights = data.take_weights(everything) if data.weighted else None
    bounds = dict(zip(seeds, np.cumsum([0] + [len(drawn[seed]) for seed in seeds])))
    centers = []
    for k, seed in specs:
        sample = slice(bounds[seed], bounds[seed] + len(drawn[seed]))
        centers.append(_kmeans.kmeans(
            rows[sample], k, sample_weight=None if weights is None else weights[sample],
            n_init=KMEANS_N_INIT, seed=seed))
    logger.debug("k-means: %d spec(s) on samples of %d rows", len(specs), size)
    return centers


def kmeanspp_indices(data, specs, describe):
    """Distributed greedy k-means++ (sklearn's 2 + log k local trials) for several specs.

    Two passes per center: one draws the trial points with probability proportional to
    their squared distance, one evaluates the potential of each trial.

    Returns
    -------
    indices : list of ndarray of shape (n_clusters,)
        Global row indices of the chosen centers.
    """
    n = data.n_samples
    shift = describe["mean"]
    seeds = [seed for _, seed in specs]
    chosen = [[row] for row in _first_rows(data, seeds)]
    rows = data.take([c[0] for c in chosen])
    centers = [rows[j : j + 1] for j in range(len(specs))]
    max_k = max(k for k, _ in specs)
    for c in range(1, max_k):
        active = [j for j, (k, _) in enumerate(specs) if k > c]
        n_trials = [2 + int(math.log(specs[j][0])) for j in active]
        per_chunk = data.gather(_topk_chunk, [centers[j] for j in active], shift, n_trials,
                                [seeds[j] for j in active], c)
        trial_idx = []
        for a, j in enumerate(active):
            # trials of key -inf (rows on a center, or of weight 0) are left out: the
            # former never lower the potential, the latter are never centers
            _, idx = _best_keys(data, per_chunk, a, n_trials[a])
            if not len(idx) and data.weighted:
                idx = weighted_draws(data, [(seeds[j], c, n_trials[a])])[0]
            elif not len(idx):
                # every row sits on a center already: fall back to uniform draws. The
                # stream is (seed, step, n_chunks), next to the per-chunk ones; a -1 in
                # the key made default_rng raise "expected non-negative integer".
                idx = _rng(seeds[j], c, data.n_chunks).choice(n, size=n_trials[a],
                                                              replace=False)
            trial_idx.append(idx)
        trial_rows = data.take(np.concatenate(trial_idx))
        bounds = np.cumsum([0] + [len(t) for t in trial_idx])
        trials = [trial_rows[bounds[a]:bounds[a + 1]] for a in range(len(active))]
        potentials = data.reduce(_potential_chunk, _kernels.combine_sums,
                                 [centers[j] for j in active], trials, shift)
        for a, j in enumerate(active):
            best = int(np.argmin(potentials[a]["potential"]))
            chosen[j].append(int(trial_idx[a][best]))
            centers[j] = np.vstack([centers[j], trials[a][best : best + 1]])
    return [np.asarray(c, dtype=np.int64) for c in chosen]


# ------------------------------------------------------------------ resp -> parameters


def label_stats(X, centers, covariance_type, sample_weight=None):
    """The statistics of every row given wholly to its nearest center (one k-means step),
    about the centers: what :func:`pipeline.mixture._kernels.resp_chunk` gives for those
    one-hot responsibilities, from each component's own rows (n D^2 products instead of
    K n D^2)."""
    n_components, n_features = centers.shape
    labels = nearest_center(X, centers, centers.mean(axis=0))
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(n_components + 1))
    per_feature = covariance_type in ("diag", "spherical")
    nk = np.zeros(n_components)
    s = np.zeros((n_components, n_features))
    S = np.zeros((n_components, n_features) if per_feature
                 else (n_components, n_features, n_features))
    for k in range(n_components):
        rows = order[bounds[k]:bounds[k + 1]]
        d = X[rows].astype(np.float64, copy=False)  # the rows taken: a copy already
        d -= centers[k]
        wd = d if sample_weight is None else d * sample_weight[rows][:, None]
        nk[k] = len(rows) if sample_weight is None else float(sample_weight[rows].sum())
        s[k] = wd.sum(axis=0)
        S[k] = (wd * d).sum(axis=0) if per_feature else np.dot(wd.T, d)
    if covariance_type == "tied":
        S = S.sum(axis=0)
    elif not per_feature:
        S = 0.5 * (S + S.transpose(0, 2, 1))
    return {"n": float(X.shape[0]), "loglik": 0.0, "nk": nk, "s": s, "S": S}


def _as_type(full_stats, covariance_type):
    """Statistics of another covariance type from those of ``full``: the scatter summed
    over components (tied) or its diagonals (diag, spherical)."""
    S = full_stats["S"]
    if covariance_type == "tied":
        S = S.sum(axis=0)
    elif covariance_type in ("diag", "spherical"):
        S = np.diagonal(S, axis1=1, axis2=2).copy()
    return {**full_stats, "S": S}


def _init_resp_chunk(X, index, specs, sample_weight=None):
    """Statistics of the initial responsibilities of each spec (times the rows' weights),
    for one chunk."""
    out = []
    labelled = {}  # one assignment per set of centers, whatever the covariance types
    for kind, payload, shift, covariance_type in specs:
        if kind == "labels":
            if id(payload) not in labelled:
                labelled[id(payload)] = label_stats(X, payload, "full", sample_weight)
            out.append(_as_type(labelled[id(payload)], covariance_type))
            continue
        else:  # random responsibilities, seeded by the chunk index
            seed, n_components = payload
            resp = _rng(seed, index).uniform(size=(X.shape[0], n_components))
            resp /= resp.sum(axis=1)[:, None]
        out.append(_kernels.resp_chunk(X, resp, shift, covariance_type, sample_weight))
    return out


def _parameters_from_stats(job, stats, shift, n_samples, eps):
    nk, means, covariances = _covariance.m_step(stats, shift, job.covariance_type,
                                                job.reg_covar, eps)
    return nk / n_samples, means, covariances


def parameters_from_resp(X, resp, job, eps):
    """The initial parameters of ``job`` from responsibilities ``resp`` (n_samples, K) on
    a numpy ``X``, as scikit-learn's ``_initialize`` (given pieces replace estimates)."""
    shift = np.repeat(np.mean(X, axis=0, dtype=np.float64)[None], np.shape(resp)[1], axis=0)
    stats = _kernels.resp_chunk(X, resp, shift, job.covariance_type)
    estimated = _parameters_from_stats(job, stats, shift, len(X), eps)
    return with_given_pieces(job, estimated, eps > np.finfo(np.float64).eps)


def initialize(data, jobs, describe, eps):
    """Initial parameters for every job, with as few passes as the methods allow.

    With sample weights, every method draws and counts rows by weight (a row of weight
    0 is never a center and never drawn); weights are per unit of total weight, and a
    row drawn as a component's start counts once, as one copy of a repeated row.

    Returns
    -------
    params : list of dict
        ``weights``, ``means``, ``covariances``, ``precisions_cholesky`` (float64),
        following scikit-learn's ``_initialize``: user-given pieces replace the
        estimated ones.
    """
    float32 = eps > np.finfo(np.float64).eps
    estimated = [None] * len(jobs)
    need = [j for j, job in enumerate(jobs) if not job.fully_given]
    kmeans_specs = sorted({(jobs[j].n_components, jobs[j].seed) for j in need
                           if jobs[j].init_params == "kmeans"})
    pp_specs = sorted({(jobs[j].n_components, jobs[j].seed) for j in need
                       if jobs[j].init_params == "k-means++"})
    centers = dict(zip(kmeans_specs, kmeans_centers(data, kmeans_specs))) \
        if kmeans_specs else {}
    pp_rows = dict(zip(pp_specs, kmeanspp_indices(data, pp_specs, describe))) \
        if pp_specs else {}

    total = describe["weight"] if data.weighted else data.n_samples
    from_data = [j for j in need if jobs[j].init_params == "random_from_data"]
    drawn = dict(zip(from_data, weighted_draws(
        data, [(jobs[j].seed, 0, jobs[j].n_components) for j in from_data]))) \
        if data.weighted and from_data else {}
    pass_specs, pass_jobs = [], []
    row_jobs = {}
    for j in need:
        job = jobs[j]
        key = (job.n_components, job.seed)
        if job.init_params == "kmeans":
            c = centers[key]
            pass_specs.append(("labels", c, c, job.covariance_type))
            pass_jobs.append(j)
        elif job.init_params == "random":
            shift = np.repeat(describe["mean"][None, :], job.n_components, axis=0)
            pass_specs.append(("random", (job.seed, job.n_components), shift,
                               job.covariance_type))
            pass_jobs.append(j)
        elif job.init_params == "k-means++":
            row_jobs[j] = pp_rows[key]
        elif data.weighted:  # random_from_data
            row_jobs[j] = drawn[j]
        else:
            row_jobs[j] = _rng(job.seed, 0).choice(data.n_samples, size=job.n_components,
                                                   replace=False)
    if pass_specs:
        results = data.reduce(_init_resp_chunk, _kernels.combine_sums, pass_specs,
                              with_index=True)
        for j, spec, stats in zip(pass_jobs, pass_specs, results):
            estimated[j] = _parameters_from_stats(jobs[j], stats, spec[2], total, eps)
    if row_jobs:
        order = list(row_jobs)
        rows = data.take(np.concatenate([row_jobs[j] for j in order]))
        start = 0
        for j in order:
            k = jobs[j].n_components
            r = rows[start : start + k]
            start += k
            stats = _kernels.resp_chunk(r, np.eye(k), r, jobs[j].covariance_type)
            estimated[j] = _parameters_from_stats(jobs[j], stats, r, total, eps)

    return [with_given_pieces(job, est, float32) for job, est in zip(jobs, estimated)]


def with_given_pieces(job, estimated, float32):
    """The initial parameters of ``job``: the ``estimated`` (weights, means, covariances)
    or None, with the user-given pieces in their place (scikit-learn's ``_initialize``).

    Returns
    -------
    params : dict
        ``weights``, ``means``, ``covariances``, ``precisions_cholesky`` (float64).
    """
    weights, means, covariances = estimated if estimated is not None else (None, None, None)
    if job.weights_init is not None:
        weights = np.asarray(job.weights_init, np.float64)
    if job.means_init is not None:
        means = np.asarray(job.means_init, np.float64)
    if job.precisions_init is None:
        precisions_cholesky = _covariance.precision_cholesky(
            covariances, job.covariance_type, float32) if job.with_precisions else None
    else:
        precisions_cholesky = _covariance.precision_cholesky_from_precisions(
            job.precisions_init, job.covariance_type)
        covariances = _covariance.covariances_from_cholesky(precisions_cholesky,
                                                            job.covariance_type)
    return {"weights": weights, "means": means, "covariances": covariances,
            "precisions_cholesky": precisions_cholesky}
