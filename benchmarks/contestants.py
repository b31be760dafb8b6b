"""The contestants, each built inside its own process (see :mod:`benchmarks.procs`).

Every ``fit`` returns ``{"seconds", "peak", ...}``: wall time of the fit call alone (data
already loaded: in memory for scikit-learn, persisted on the workers for mixlake,
cached for Spark) and the peak resident memory of the processes involved.
"""

import os
import time
import warnings

import numpy as np

from benchmarks import data
from benchmarks.procs import peak_bytes, reset_peak, rss_bytes


def _quiet():
    import logging

    warnings.simplefilter("ignore")
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    for name in ("pipeline", "distributed", "py4j"):
        logging.getLogger(name).setLevel(logging.ERROR)


# ------------------------------------------------------------------ scikit-learn


class Sklearn:
    """sklearn.mixture.GaussianMixture on the whole array in this process."""

    def __init__(self, folder, spec):
        _quiet()
        self.spec = data.Spec(**spec)
        self.X = data.read_numpy(folder, self.spec)

    def fit(self, covariance_type, n_components, max_iter, seed=1):
        from sklearn.mixture import GaussianMixture

        init = data.initial_parameters(self.spec, n_components, covariance_type, seed)
        model = GaussianMixture(n_components, covariance_type=covariance_type, tol=0.0,
                                max_iter=max_iter, init_params="random_from_data",
                                random_state=0, **init)
        reset_peak(os.getpid())
        start = time.perf_counter()
        model.fit(self.X)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "peak": peak_bytes(os.getpid()),
                "data_bytes": self.X.nbytes, "lower_bound": float(model.lower_bound_)}

    def grid(self, component_counts, covariance_types, max_iter):
        total = 0.0
        for k in component_counts:
            for covariance_type in covariance_types:
                total += self.fit(covariance_type, k, max_iter)["seconds"]
        return {"seconds": total}


# ------------------------------------------------------------------ mixlake


class Mixlake:
    """pipeline.GaussianMixture on a LocalCluster of worker processes, data persisted."""

    def __init__(self, folder, spec, n_workers=2, memory_limit="6GiB", dtype="float64"):
        _quiet()
        from distributed import Client, LocalCluster

        self.spec = data.Spec(**spec)
        self.folder = folder
        self.cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                    dashboard_address=None, memory_limit=memory_limit)
        self.client = Client(self.cluster)
        self.worker_pids = list(self.client.run(os.getpid).values())
        # idle = every library a fit loads, no data yet
        self.client.run(_import_worker_libraries)
        self.worker_baseline = [rss_bytes(p) for p in self.worker_pids]
        self._arrays = {}
        self.dtype = dtype
        self.X = self._load(dtype)

    def _load(self, dtype):
        if dtype not in self._arrays:
            from distributed import wait

            from pipeline import source as input_source
            from pipeline.config import Source

            source = Source(path=self.folder, features=data.features(self.spec))
            X = input_source.load(source, dtype=dtype).X.persist()
            wait(X)
            self._arrays[dtype] = X
        return self._arrays[dtype]

    def _chunk_bytes_per_worker(self, X):
        from distributed import futures_of

        keys = {f.key for f in futures_of(X)}
        sizes = self.client.nbytes(summary=False)
        return {w: sum(sizes.get(k, 0) for k in held if k in keys)
                for w, held in self.client.has_what().items()}

    def _measured(self, call, X):
        pids = [os.getpid(), *self.worker_pids]
        before = [rss_bytes(p) for p in self.worker_pids]
        for pid in pids:
            reset_peak(pid)
        start = time.perf_counter()
        result = call()
        seconds = time.perf_counter() - start
        peaks = [peak_bytes(p) for p in self.worker_pids]
        return result, {"seconds": seconds, "peak": max(peaks), "worker_peaks": peaks,
                        "client_peak": peak_bytes(os.getpid()),
                        "worker_baseline": self.worker_baseline, "worker_rss_before": before,
                        "worker_chunk_bytes": sorted(self._chunk_bytes_per_worker(X).values())}

    def fit(self, covariance_type, n_components, max_iter, seed=1):
        from pipeline.mixture import GaussianMixture

        X = self.X
        init = data.initial_parameters(self.spec, n_components, covariance_type, seed)
        model = GaussianMixture(n_components, covariance_type=covariance_type, tol=0.0,
                                max_iter=max_iter, **init)
        _, out = self._measured(lambda: model.fit(X), X)
        out["lower_bound"] = float(model.lower_bound_)
        return out

    def grid(self, component_counts, covariance_types, max_iter):
        from pipeline.selection import select

        _, out = self._measured(lambda: select(
            self.X, n_components=list(component_counts),
            covariance_types=list(covariance_types), init_params="random_from_data",
            tol=0.0, max_iter=max_iter, random_state=0), self.X)
        return out

    def close(self):
        self.client.close()
        self.cluster.close()


def _import_worker_libraries():
    import pyarrow.parquet  # noqa: F401

    import pipeline.source  # noqa: F401
    from pipeline.mixture import _kernels  # noqa: F401


class MixlakeTiny(Mixlake):
    """Dask's per-iteration overhead: the same engine on 2,000 rows in 8 chunks."""

    def __init__(self, n_workers=2):
        _quiet()
        import dask.array as da
        from distributed import Client, LocalCluster, wait

        self.spec = data.Spec(2000, 16)
        self.cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                    dashboard_address=None, memory_limit="2GiB")
        self.client = Client(self.cluster)
        self.worker_pids = list(self.client.run(os.getpid).values())
        self.worker_baseline = [rss_bytes(p) for p in self.worker_pids]
        X = da.random.default_rng(0).normal(size=(2000, 16), chunks=(250, 16)) * 4.0
        self.X = X.persist()
        wait(self.X)
        self._arrays = {"float64": self.X}
        self.dtype = "float64"


# ------------------------------------------------------------------ Spark


def _spark_session(driver_memory):
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("mixlake-benchmark")
               .config("spark.driver.memory", driver_memory)
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", "2")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    return session


def _jvm_pid():
    import psutil

    for child in psutil.Process().children(recursive=True):
        try:
            if "java" in child.name():
                return child.pid
        except psutil.Error:
            continue
    return None


def _spark_frame(session, folder, spec):
    from pyspark.ml.feature import VectorAssembler

    frame = session.read.parquet(*data.files(folder))
    return VectorAssembler(inputCols=data.features(spec), outputCol="features").transform(
        frame)


class Spark:
    """pyspark.ml.clustering.GaussianMixture on local[2], the DataFrame cached."""

    def __init__(self, folder, spec, driver_memory="8g"):
        _quiet()
        self.spec = data.Spec(**spec)
        self.session = _spark_session(driver_memory)
        self.frame = _spark_frame(self.session, folder, self.spec).select("features").cache()
        self.rows = self.frame.count()
        self.jvm = _jvm_pid()

    def fit(self, n_components, max_iter, covariance_type="full"):
        from pyspark.ml.clustering import GaussianMixture

        assert covariance_type == "full", "Spark MLlib fits full covariances only"
        estimator = GaussianMixture(k=n_components, maxIter=max_iter, tol=0.0, seed=0)
        if self.jvm:
            reset_peak(self.jvm)
        start = time.perf_counter()
        model = estimator.fit(self.frame)
        seconds = time.perf_counter() - start
        return {"seconds": seconds, "peak": peak_bytes(self.jvm) if self.jvm else None,
                "lower_bound": float(model.summary.logLikelihood) / self.rows}

    def close(self):
        self.session.stop()


# ------------------------------------------------------------------ matmul


class Matmul:
    """The ceiling: numpy's matmul of two n x n matrices (OpenBLAS), best of a few."""

    def __init__(self):
        import threadpoolctl

        self.threads = threadpoolctl.threadpool_info()[0].get("num_threads")

    def gflops(self, n=4000, dtype="float64", seconds=3.0):
        rng = np.random.default_rng(0)
        a = rng.normal(size=(n, n)).astype(dtype)
        b = rng.normal(size=(n, n)).astype(dtype)
        out = np.empty((n, n), dtype)
        np.matmul(a, b, out=out)
        best, deadline = 0.0, time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            np.matmul(a, b, out=out)
            best = max(best, 2.0 * n**3 / (time.perf_counter() - start) / 1e9)
        return {"gflops": best, "threads": self.threads}


# ------------------------------------------------------------------ end to end


def _write_assignments(out_dir, labels, proba, log_density, n_parts):
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(out_dir, exist_ok=True)
    bounds = np.linspace(0, len(labels), n_parts + 1).astype(int)
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        columns = {"cluster": labels[a:b].astype(np.int32)}
        columns.update({f"prob_{k}": proba[a:b, k] for k in range(proba.shape[1])})
        columns["log_density"] = log_density[a:b]
        pq.write_table(pa.table(columns), os.path.join(out_dir, f"part.{i}.parquet"))


def e2e_sklearn(folder, spec, component_counts, covariance_types, max_iter, out_dir):
    """Read the Parquet partitions, fit (k-means init, as sklearn does by default) every
    candidate, pick by BIC, write labels, probabilities and log-density."""
    _quiet()
    from sklearn.mixture import GaussianMixture

    start = time.perf_counter()
    spec = data.Spec(**spec)
    X = data.read_numpy(folder, spec)
    loaded = time.perf_counter()
    best = None
    for k in component_counts:
        for covariance_type in covariance_types:
            model = GaussianMixture(k, covariance_type=covariance_type, tol=0.0,
                                    max_iter=max_iter, random_state=0).fit(X)
            bic = model.bic(X)
            if best is None or bic < best[0]:
                best = (bic, model)
    fitted = time.perf_counter()
    model = best[1]
    _write_assignments(out_dir, model.predict(X), model.predict_proba(X), model.score_samples(X),
                       len(data.files(folder)))
    end = time.perf_counter()
    return {"seconds": end - start, "load": loaded - start, "fit": fitted - loaded,
            "write": end - fitted}


def e2e_spark(folder, spec, component_counts, max_iter, out_dir, driver_memory="8g"):
    """Session start, read, assemble, fit (Spark's own init), transform, write."""
    _quiet()
    start = time.perf_counter()
    from pyspark.ml.clustering import GaussianMixture

    spec = data.Spec(**spec)
    session = _spark_session(driver_memory)
    try:
        frame = _spark_frame(session, folder, spec).select("features").cache()
        frame.count()
        loaded = time.perf_counter()
        models = [GaussianMixture(k=k, maxIter=max_iter, tol=0.0, seed=0).fit(frame)
                  for k in component_counts]
        fitted = time.perf_counter()
        models[-1].transform(frame).select("prediction", "probability").write.mode(
            "overwrite").parquet(out_dir)
        end = time.perf_counter()
    finally:
        session.stop()
    return {"seconds": end - start, "load": loaded - start, "fit": fitted - loaded,
            "write": end - fitted}


def e2e_mixlake(folder, spec, component_counts, covariance_types, max_iter, out_dir):
    """The pipeline's fit job without Prefect (``pipeline.run.fit``): embedded 2-worker
    LocalCluster, load, k-means init, select by BIC, write assignments, model, report."""
    _quiet()
    from pipeline import run
    from pipeline.config import parse_config

    start = time.perf_counter()
    spec = data.Spec(**spec)
    raw = {
        "name": "benchmark",
        "source": {"path": folder, "features": data.features(spec)},
        "model": {"n_components": list(component_counts),
                  "covariance_type": list(covariance_types), "tol": 0.0,
                  "max_iter": max_iter, "random_state": 0},
        "cluster": {"n_workers": 2, "threads_per_worker": 1, "memory_limit": "6GiB"},
        "output": {"path": out_dir, "mode": "overwrite"},
    }
    summary = run.fit(parse_config(raw, base_dir=os.path.dirname(out_dir)))
    end = time.perf_counter()
    timings = summary.get("timings", {})
    return {"seconds": end - start, "load": timings.get("load"), "fit": timings.get("select"),
            "write": timings.get("write"), "passes": summary.get("passes")}
