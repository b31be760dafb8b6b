"""Shared fixtures: real dask.distributed clusters of worker processes."""

import os

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
