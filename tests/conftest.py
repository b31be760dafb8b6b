"""Shared fixtures: real dask.distributed clusters of worker processes."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")


def _local_cluster(n_workers):
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        memory_limit="2GiB",
    )


@pytest.fixture(scope="session")
def cluster2():
    """A 2-worker LocalCluster of separate processes, one thread each."""
    with _local_cluster(2) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def cluster1():
    """A 1-worker LocalCluster, to compare with the 2-worker one."""
    with _local_cluster(1) as cluster:
        yield cluster


@pytest.fixture
def client2(cluster2):
    from distributed import Client

    with Client(cluster2) as client:
        yield client


@pytest.fixture
def client1(cluster1):
    from distributed import Client

    with Client(cluster1) as client:
        yield client


@pytest.fixture(scope="session")
def prefect_harness():
    """Prefect's own test harness: a temporary server for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    import flows  # noqa: F401  (analytics off, startup timeout for 2 cores)

    with prefect_test_harness(server_startup_timeout=120):
        from prefect.settings import PREFECT_API_URL

        yield PREFECT_API_URL.value()


def _spawn(args, log):
    env = {**os.environ, "DASK_LOGGING__DISTRIBUTED": "warning"}
    return subprocess.Popen([sys.executable, "-m", "distributed.cli." + args[0], *args[1:]],
                            stdout=log, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def _stop(processes):
    for p in processes:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for p in processes:
        while p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


@contextlib.contextmanager
def dask_processes(folder, memory_limit="1GiB", nanny=False):
    """A real `dask scheduler` and two `dask worker` processes on 127.0.0.1, no fixed ports.

    Yields (address, processes); stops them afterwards, also when the test fails.
    """
    from distributed import Client

    scheduler_file = folder / "scheduler.json"
    log = open(folder / "cluster.log", "w")
    processes = []
    try:
        processes.append(_spawn(["dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                                 "--dashboard-address", "127.0.0.1:0",
                                 "--scheduler-file", str(scheduler_file)], log))
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert scheduler_file.exists(), (folder / "cluster.log").read_text()
        for _ in range(2):
            processes.append(_spawn(["dask_worker", "--scheduler-file", str(scheduler_file),
                                     "--nthreads", "1", "--memory-limit", str(memory_limit),
                                     "--dashboard-address", "127.0.0.1:0",
                                     "--nanny" if nanny else "--no-nanny"], log))
        address = json.loads(scheduler_file.read_text())["address"]
        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address, processes
    finally:
        _stop(processes)
        log.close()


@pytest.fixture
def process_cluster(tmp_path):
    """Two `dask worker` processes without nannies: a killed worker stays dead."""
    with dask_processes(tmp_path) as cluster:
        yield cluster


@pytest.fixture
def start_dask_processes():
    """The :func:`dask_processes` context manager, for tests that choose its settings."""
    return dask_processes

