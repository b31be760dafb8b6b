"""The engine on dask.distributed: determinism, tree reduction, lazy outputs, scale.

The merge order of the partial statistics follows chunk index, never completion order,
so a fit is bit-for-bit the same on 1 or 2 workers and from one run to the next.
"""

import pickle
import threading
import warnings

import dask.array as da
import numpy as np
import psutil
import pytest
from distributed import Client
from numpy.testing import assert_allclose
from sklearn.exceptions import ConvergenceWarning

from pipeline.mixture import GaussianMixture

PARAMETERS = ("weights_", "means_", "covariances_", "precisions_cholesky_", "lower_bounds_")
CHUNKS = (300, 123, 0, 577, 250, 250, 1000, 17, 483)


def _blobs(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(3, 3))
    labels = rng.integers(0, 3, n)
    return rng.normal(size=(n, 3)) + centers[labels]


def _fit(X, **kwargs):
    # few iterations and a cheap init by default: on a LocalCluster each pass over
    # a few dozen chunks costs ~3 ms per chunk in scheduling, whatever the data size
    params = {"n_components": 3, "random_state": 0, "tol": 1e-6, "max_iter": 10,
              "init_params": "random_from_data", **kwargs}
    with warnings.catch_warnings():
        # a fixed max_iter may stop short: irrelevant for comparing two runs
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianMixture(**params).fit(X)


def _assert_identical(a, b):
    for name in PARAMETERS:
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert (a.n_iter_, a.converged_, a.n_passes_) == (b.n_iter_, b.converged_, b.n_passes_)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_one_and_two_workers_give_identical_fits(cluster1, cluster2, init_params):
    X = da.from_array(_blobs(), chunks=(CHUNKS, -1))
    fits = []
    for cluster, n_workers in ((cluster1, 1), (cluster2, 2)):
        with Client(cluster) as client:
            assert len(client.scheduler_info()["workers"]) == n_workers
            fits.append(_fit(X, init_params=init_params, covariance_type="full"))
    assert fits[0].n_iter_ > 1
    _assert_identical(*fits)


@pytest.mark.parametrize("covariance_type", ["tied", "diag", "spherical"])
def test_a_rerun_gives_identical_parameters(client2, covariance_type):
    X = da.from_array(_blobs(), chunks=(CHUNKS, -1))
    _assert_identical(_fit(X, covariance_type=covariance_type),
                      _fit(X, covariance_type=covariance_type))


def test_a_rerun_on_numpy_gives_identical_parameters():
    _assert_identical(_fit(_blobs()), _fit(_blobs()))


def test_streaming_and_persisted_data_give_identical_fits(client2):
    X = da.from_array(_blobs(), chunks=(CHUNKS, -1))
    _assert_identical(_fit(X, persist=True), _fit(X, persist=False))


def test_a_single_chunk_gives_the_numpy_result_exactly(client2):
    X = _blobs(n=2000)
    _assert_identical(_fit(X), _fit(da.from_array(X, chunks=(2000, 3))))


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_split_every_changes_only_the_rounding(client2, covariance_type):
    X = da.from_array(_blobs(), chunks=(150, -1))  # 20 chunks: 5 levels with split_every=2
    # the same start for both, so that only the merge tree differs
    start = _fit(_blobs(), covariance_type=covariance_type, max_iter=1, init_params="kmeans")
    init = {"weights_init": start.weights_, "means_init": start.means_,
            "precisions_init": start.precisions_}
    default = _fit(X, covariance_type=covariance_type, tol=0, **init)
    binary = _fit(X, covariance_type=covariance_type, split_every=2, tol=0, **init)
    assert default.n_iter_ == binary.n_iter_ == 10
    for name in PARAMETERS:
        assert_allclose(getattr(binary, name), getattr(default, name), rtol=1e-10,
                        err_msg=name)


def _one_pass_per_worker_thread(client, n_threads):
    from distributed import get_task_stream, wait

    from pipeline.mixture import _kernels
    from pipeline.mixture._chunks import ChunkedData

    X = _blobs(n=6400)
    persisted = da.from_array(X, chunks=(100, -1)).persist()  # 64 chunks, 8 merge groups
    wait(persisted)
    model = _kernels.prepare_model(np.full(3, 1 / 3), X[:3], np.stack([np.eye(3)] * 3),
                                   "full", np.float64)
    data = ChunkedData(persisted, persist=True)
    with get_task_stream(client) as stream:
        (ours,) = data.reduce(_kernels.em_chunk, _kernels.combine_sums, [model])
    keys = {str(task["key"]) for task in stream.data}
    assert 1 <= len(keys) <= n_threads and all("per-worker" in key for key in keys), keys
    streamed = ChunkedData(da.from_array(X, chunks=(100, -1)), persist=False)
    (theirs,) = streamed.reduce(_kernels.em_chunk, _kernels.combine_sums, [model])
    for name in ("n", "loglik", "nk", "s", "S"):
        assert np.array_equal(ours[name], theirs[name]), name
    return len(keys)


def test_a_persisted_pass_is_one_task_per_worker_with_the_same_merge_tree(client2):
    _one_pass_per_worker_thread(client2, n_threads=2)


def test_a_persisted_pass_uses_every_thread_of_a_worker():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=3, processes=True,
                      dashboard_address=None, memory_limit="2GiB") as cluster, \
            Client(cluster) as client:
        assert _one_pass_per_worker_thread(client, n_threads=3) == 3


def test_a_pass_goes_to_the_scheduler_in_one_message_and_the_last_pass_is_released():
    """The tasks of a persisted pass reach the scheduler as one graph (one per worker):
    task by task, the client's batched stream held the second for up to 10 ms on every
    pass. The previous pass's tasks are released once the next pass is out, so no pass
    leaves more than its own tasks behind."""
    from distributed import LocalCluster, wait
    from distributed.diagnostics.plugin import SchedulerPlugin

    from pipeline.mixture import _kernels
    from pipeline.mixture._chunks import ChunkedData

    class Graphs(SchedulerPlugin):
        def __init__(self):
            self.graphs = []

        def update_graph(self, scheduler, *, keys, **kwargs):
            self.graphs.append({str(k) for k in keys})

    X = _blobs(n=1600)
    model = _kernels.prepare_model(np.full(3, 1 / 3), X[:3], np.stack([np.eye(3)] * 3),
                                   "full", np.float64)
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        persisted = da.from_array(X, chunks=(200, -1)).persist()
        wait(persisted)
        data = ChunkedData(persisted, persist=True)
        graphs = Graphs()
        cluster.scheduler.add_plugin(graphs)
        # a grid's models are arguments of over 100 kB (which Client.map would turn into
        # one shared task named after the keyword: the same key on every pass)
        models = [model] * 200
        passes = [data.reduce(_kernels.em_chunk, _kernels.combine_sums, models)
                  for _ in range(3)]
        # (ChunkedData's own persist of the persisted chunks may arrive as a graph too)
        pass_graphs = [keys for keys in graphs.graphs
                       if any("per-worker" in key for key in keys)]
        assert [len(keys) for keys in pass_graphs] == [2, 2, 2], graphs.graphs
        assert all("per-worker" in key for keys in pass_graphs for key in keys)
        # only the last pass's tasks are still held
        held = {str(k) for k in cluster.scheduler.tasks} & set().union(*pass_graphs)
        assert held == pass_graphs[-1]
    assert len(passes[0]) == 200
    for other in passes[1:]:
        for name in ("n", "loglik", "nk", "s", "S"):
            assert np.array_equal(other[-1][name], passes[0][0][name]), name


# --------------------------------------------------------------- lazy outputs


@pytest.fixture(scope="module")
def fitted():
    X = _blobs()
    return X, _fit(X, tol=1e-3, max_iter=100)


@pytest.mark.parametrize(("method", "trailing"), [("predict", ()), ("predict_proba", ((3,),)),
                                                  ("score_samples", ())])
def test_predictions_on_dask_input_are_lazy_and_chunked_like_it(client2, fitted, method,
                                                                trailing):
    X, model = fitted
    Xd = da.from_array(X, chunks=(CHUNKS, -1))
    lazy = getattr(model, method)(Xd)
    assert isinstance(lazy, da.Array)
    assert lazy.chunks == (CHUNKS, *trailing)
    expected = getattr(model, method)(X)
    computed = lazy.compute()
    assert computed.dtype == expected.dtype
    assert_allclose(computed, expected, rtol=1e-12)


def test_predict_proba_rows_sum_to_one(client2, fitted):
    X, model = fitted
    for proba in (model.predict_proba(X),
                  model.predict_proba(da.from_array(X, chunks=(CHUNKS, -1))).compute()):
        assert np.all(proba >= 0)
        assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)


def test_fit_predict_on_dask_input_is_lazy_and_equals_fit_then_predict(client2):
    Xd = da.from_array(_blobs(), chunks=(CHUNKS, -1))
    kwargs = {"random_state": 0, "init_params": "k-means++"}
    labels = GaussianMixture(3, **kwargs).fit_predict(Xd)
    assert isinstance(labels, da.Array) and labels.chunks == (CHUNKS,)
    expected = GaussianMixture(3, **kwargs).fit(Xd).predict(Xd)
    assert np.array_equal(labels.compute(), expected.compute())


def test_score_bic_aic_on_dask_input_equal_numpy(client2, fitted):
    X, model = fitted
    Xd = da.from_array(X, chunks=(CHUNKS, -1))
    assert_allclose(model.score(Xd), model.score(X), rtol=1e-12)
    assert_allclose(model.bic(Xd), model.bic(X), rtol=1e-12)
    assert_allclose(model.aic(Xd), model.aic(X), rtol=1e-12)


def test_fully_given_initial_parameters_cost_no_initialisation_pass(client2, fitted):
    X, model = fitted
    refit = _fit(da.from_array(X, chunks=(CHUNKS, -1)), weights_init=model.weights_,
                 means_init=model.means_, precisions_init=model.precisions_, max_iter=3,
                 tol=0)
    # one pass checks for NaN and inf, then one per iteration
    assert refit.n_passes_ == 1 + refit.n_iter_ == 4


# --------------------------------------------------------------- scale


class _PeakRSS:
    """Peak resident memory of this process while the block runs, sampled every 10 ms."""

    def __init__(self):
        self._process = psutil.Process()
        self._stop = threading.Event()
        self.baseline = self.peak = 0

    def _sample(self):
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self):
        self.baseline = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def growth(self):
        return self.peak - self.baseline


@pytest.mark.slow
def test_a_large_fit_never_materialises_X_on_the_client(client2):
    n_samples, n_features, n_components = 2_000_000, 16, 8
    rng = da.random.default_rng(0)
    centers = np.random.default_rng(1).normal(scale=4.0, size=(n_components, n_features))
    labels = rng.integers(0, n_components, n_samples, chunks=n_samples // 16)
    # generated on the workers: the client holds a graph of a few kB, never the 256 MB
    X = rng.standard_normal((n_samples, n_features), chunks=(n_samples // 16, n_features))
    X = X + da.from_array(centers)[labels]
    assert X.nbytes == 256_000_000 and X.numblocks == (16, 1)
    assert len(pickle.dumps(dict(X.__dask_graph__()))) < 100_000

    model = GaussianMixture(n_components, init_params="random_from_data", max_iter=3, tol=0,
                            random_state=0)
    with _PeakRSS() as rss, pytest.warns(ConvergenceWarning):
        model.fit(X)
    assert rss.growth < 32 * 2**20, f"client RSS grew by {rss.growth / 2**20:.0f} MiB"
    # one pass checks for NaN and inf, then one per iteration: the random rows are
    # fetched from the chunks that hold them, which is not a pass
    assert model.n_iter_ == 3 and model.n_passes_ == 1 + 3
    assert np.all(np.diff(model.lower_bounds_) > 0)
    assert np.all(np.isfinite(model.covariances_))
    labels_out = model.predict(X)
    assert isinstance(labels_out, da.Array) and labels_out.numblocks == (16,)
