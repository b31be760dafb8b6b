"""Larger than memory: data 3x the workers' total memory limit stream from Parquet each pass."""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.exceptions import ConvergenceWarning

WORKER_LIMIT = 256 * 2**20
N_FILES, ROWS, D = 210, 125_000, 8  # 210 x 8 MB = 1.56 GiB >= 3 x 2 x 256 MiB
CENTERS = np.random.default_rng(7).uniform(-6, 6, (3, D))


def _write(folder, i):
    rng = np.random.default_rng([7, i])
    labels = rng.integers(3, size=ROWS)
    X = CENTERS[labels] + rng.standard_normal((ROWS, D))
    pq.write_table(pa.table({f"x{j}": X[:, j] for j in range(D)}),
                   folder / f"part.{i}.parquet", compression="none")


# a lambda is pickled by value: the separate worker processes cannot import this module
_rss = lambda: __import__("psutil").Process().memory_info().rss  # noqa: E731


@pytest.mark.slow
def test_fit_on_data_three_times_the_cluster_memory(tmp_path, caplog, start_dask_processes):
    from distributed import Client

    from pipeline import GaussianMixture, source
    from pipeline.config import Source

    data = tmp_path / "data"
    data.mkdir()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda i: _write(data, i), range(N_FILES)))
    # plain `dask worker` processes with nannies (which kill a worker at 95% of its limit);
    # workers spawned from pytest would carry pytest's own imports in their baseline
    with start_dask_processes(tmp_path, memory_limit=WORKER_LIMIT, nanny=True) as (address, _), \
            Client(address) as client:
        dataset = source.load(Source(path=str(data)))
        assert dataset.X.nbytes >= 3 * 2 * WORKER_LIMIT
        workers = set(client.scheduler_info()["workers"])
        peak, done = {}, threading.Event()

        def sample():
            while not done.is_set():
                try:
                    for worker, rss in client.run(_rss).items():
                        peak[worker] = max(peak.get(worker, 0), rss)
                except Exception:  # noqa: BLE001 - a sample may miss a busy worker
                    pass
                time.sleep(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            with caplog.at_level(logging.INFO, logger="pipeline.mixture"), \
                    pytest.warns(ConvergenceWarning):  # two iterations only, on purpose
                gm = GaussianMixture(3, covariance_type="diag", init_params="random_from_data",
                                     max_iter=2, tol=0, random_state=0).fit(dataset.X)
        finally:
            done.set()
            sampler.join()
        assert "streaming from the source each pass" in caplog.text
        # no worker was killed and restarted for memory, and each stayed under its limit
        assert set(client.scheduler_info()["workers"]) == workers
        assert peak and all(rss < WORKER_LIMIT for rss in peak.values()), peak
        print(f"\npeak worker memory: {', '.join(f'{v / 2**20:.0f} MiB' for v in peak.values())}"
              f" of {WORKER_LIMIT / 2**20:.0f} MiB; data {dataset.X.nbytes / 2**30:.2f} GiB")
    # two EM iterations, the likelihood going up (the point is the memory, not the fit)
    assert gm.n_iter_ == 2 and np.all(np.isfinite(gm.means_))
    assert gm.lower_bounds_[1] > gm.lower_bounds_[0]
