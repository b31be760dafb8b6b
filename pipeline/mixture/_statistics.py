"""Statistics accumulators, one per covariance type and E-step form.

The table :data:`pipeline.mixture._covariance.COVARIANCES` names which one a model uses;
the kernels of :mod:`pipeline.mixture._kernels` create it per chunk, ``add`` every
sub-block to it and take its ``stats()`` (the dict described in ``_covariance``). Sums
over a sub-block are in its dtype (at most ``_kernels._MAX_BLOCK_ROWS`` rows in the
whitening form; the expanded forms compute in float64), and are accumulated in float64.
Products are ``np.dot``: it gives the GIL up around BLAS, where ``np.matmul`` of a
transposed operand held it, and worker threads share one GIL.

Arguments of ``add``: ``xt`` the sub-block ``[x - center; 1]`` with rows as columns,
(D + 1, rows); ``features`` those of the E-step (``xt`` itself for the whitening form);
``resp`` (K, rows); ``log_prob_norm`` (rows,); ``work`` the thread's workspace, whose
named buffers every sub-block reuses: allocating per call costs more than the arithmetic
of a sub-block (see benchmarks/RESULTS.md), and dask's nanny sets MALLOC_TRIM_THRESHOLD_,
which makes glibc map and unmap (and the kernel zero) every large temporary anew.
"""

import numpy as np


def summed_scatter(S, s, nk, d):
    """sum over k of sum r (x - a_k - d_k)(x - a_k - d_k)^T, from the same moments about
    the points a_k: ``S`` their scatter summed over k (D, D), ``s`` (K, D) and ``nk``."""
    sd = s.T @ d
    return S - sd - sd.T + (nk[:, None] * d).T @ d


def _stacked_differences(xt, resp, offsets, work):
    """``[r_k (x - center - offset_k); r_k]`` for every component: (K, D + 1, rows)."""
    n_components, n_features = offsets.shape
    diff = work.get("diff", (n_components, n_features + 1, xt.shape[1]), xt.dtype)
    np.subtract(xt[:n_features][None], offsets[:, :, None], out=diff[:, :n_features])
    diff[:, n_features] = 1
    diff *= resp[:, None, :]
    return diff


class Statistics:
    """Statistics of one model over the sub-blocks of a chunk, in float64.

    ``offsets`` (K, D): each component's shift relative to the center, as the model holds
    them (in the compute dtype: the sub-blocks' dtype on the whitening form). Subclasses
    keep their sums in ``_add`` and turn them into ``nk, s, S`` in ``_moments``.
    """

    def __init__(self, offsets):
        self.block_offsets = offsets
        self.offsets = offsets.astype(np.float64)
        self.n = 0
        self.loglik = 0.0

    def add(self, xt, features, resp, log_prob_norm, work):
        """Add one sub-block: ``features`` are those of the E-step (``xt`` itself for the
        whitening form), ``log_prob_norm`` (rows,)."""
        self.n += xt.shape[1]
        self.loglik += float(log_prob_norm.sum(dtype=np.float64))
        self._add(xt, features, resp, work)

    def add_weighted(self, xt, features, resp, log_prob_norm, work, weight):
        """:meth:`add` with frequency weights (rows,) float64: every sum is of the rows'
        terms times their weight (``resp`` is scaled in place)."""
        self.n += float(weight.sum())
        self.loglik += float(weight @ log_prob_norm)
        resp *= weight.astype(resp.dtype, copy=False)
        self._add(xt, features, resp, work, weight)

    def stats(self):
        """The statistics dict of the rows added so far (zeros before any)."""
        nk, s, S = self._moments()
        return {"n": float(self.n), "loglik": self.loglik, "nk": nk, "s": s, "S": S}


class FullStatistics(Statistics):
    """Rows k of ``sums``: ``[sum r d (x - center)^T | sum r d]`` over
    ``[sum r (x - center)^T | n_k]``, with d = x - shift_k: one (K (D+1), rows) x
    (rows, D+1) product per sub-block. ``S_k`` follows exactly (``sum r d (x - center)^T``
    minus ``s_k offset_k^T``): no second moment about the center is formed, so rounding
    grows with the distance to the center, not its square."""

    def __init__(self, offsets):
        super().__init__(offsets)
        n_components, n_features = offsets.shape
        self.sums = np.zeros((n_components, n_features + 1, n_features + 1))

    def _add(self, xt, features, resp, work, weight=None):
        diff = _stacked_differences(xt, resp.astype(xt.dtype, copy=False),
                                    self.block_offsets, work)
        K, D = self.block_offsets.shape
        block = work.get("block", (K * (D + 1), D + 1), xt.dtype)
        np.dot(diff.reshape(K * (D + 1), -1), xt.T, out=block)
        self.sums += block.reshape(K, D + 1, D + 1)

    def _moments(self):
        D = self.offsets.shape[1]
        nk = self.sums[:, D, D].copy()
        s = self.sums[:, :D, D].copy()
        # sum r d x^T - s offset^T = sum r d d^T, with d = x - shift_k
        S = self.sums[:, :D, :D] - s[:, :, None] * self.offsets[:, None, :]
        return nk, s, 0.5 * (S + S.transpose(0, 2, 1))


class TiedStatistics(FullStatistics):
    """The whitening form: full's statistics, summed over components."""

    def _moments(self):
        nk, s, S = super()._moments()
        return nk, s, S.sum(axis=0)


class TiedExpandedStatistics(Statistics):
    """The expanded form: the M-step needs only the scatter summed over components, and
    responsibilities sum to 1 per row, so it is the rows' ``sum (x - center)(x - center)^T``
    (a D x D product, whatever the responsibilities) shifted by the first moments
    ``sum r [x - center; 1]`` (a (K, rows) x (rows, D+1) product). Shifting loses
    ~ eps * |whitened offset|^2 relative, the bound the expanded E-step already keeps."""

    def __init__(self, offsets):
        super().__init__(offsets)
        n_components, n_features = offsets.shape
        self.sums = np.zeros((n_components, n_features + 1))
        self.scatter = np.zeros((n_features, n_features))

    def _add(self, xt, features, resp, work, weight=None):
        D = xt.shape[0] - 1
        self.sums += np.dot(resp, xt.T)
        # the rows' own scatter: weighted here, as the responsibilities sum to the weight
        self.scatter += np.dot(xt[:D] if weight is None else xt[:D] * weight, xt[:D].T)

    def _moments(self):
        D = self.offsets.shape[1]
        nk = self.sums[:, D].copy()
        first = self.sums[:, :D]
        s = first - nk[:, None] * self.offsets
        S = summed_scatter(self.scatter, first, nk, self.offsets)
        return nk, s, 0.5 * (S + S.T)


class DiagStatistics(Statistics):
    """The whitening form: per feature, ``sum r d (x - center)`` and ``sum r d`` (d:
    the difference to shift_k), reduced elementwise from the stacked differences."""

    def __init__(self, offsets):
        super().__init__(offsets)
        n_components, n_features = offsets.shape
        self.sums = np.zeros((n_components, n_features + 1, 2))

    def _add(self, xt, features, resp, work, weight=None):
        diff = _stacked_differences(xt, resp.astype(xt.dtype, copy=False),
                                    self.block_offsets, work)
        self.sums[:, :, 0] += np.einsum("kdn,dn->kd", diff, xt)
        self.sums[:, :, 1] += diff.sum(axis=2)

    def _moments(self):
        D = self.offsets.shape[1]
        nk = self.sums[:, D, 1].copy()
        s = self.sums[:, :D, 1].copy()
        return nk, s, self.sums[:, :D, 0] - s * self.offsets


class DiagExpandedStatistics(Statistics):
    """The expanded form: ``sum r [x; 1; x^2]`` about the center (the E-step's features,
    as they are), shifted to each component on the chunk's totals."""

    def __init__(self, offsets):
        super().__init__(offsets)
        n_components, n_features = offsets.shape
        self.sums = np.zeros((n_components, 2 * n_features + 1))

    def _add(self, xt, features, resp, work, weight=None):
        self.sums += np.dot(resp, features.T)

    def _moments(self):
        D = self.offsets.shape[1]
        offsets = self.offsets
        nk = self.sums[:, D].copy()
        first = self.sums[:, :D]
        s = first - nk[:, None] * offsets
        return nk, s, self.sums[:, D + 1 :] - 2.0 * offsets * first + nk[:, None] * offsets**2
