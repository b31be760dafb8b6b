"""A dask.distributed Client from the config: an embedded LocalCluster or a scheduler address.

The run closes only what it created: a LocalCluster it started is stopped at the end;
a cluster reached by address is left running.
"""

import contextlib
import logging
import os

logger = logging.getLogger("pipeline.cluster")


class ClusterError(RuntimeError):
    """The Dask cluster cannot be reached or started."""


# LocalClusters being started ahead of their run, by the cluster config they are for
_STARTING = {}


def _key(cluster_config):
    return (cluster_config.n_workers, cluster_config.threads_per_worker,
            cluster_config.processes, str(cluster_config.memory_limit),
            cluster_config.local_directory)


def _process_memory_limit(memory_limit):
    """The limit of each worker that is a thread of the mixlake process: each watches the
    memory of the whole process, so each gets the whole limit; 'auto' is none (0: the
    data are then kept in memory when they take at most half of the machine's available
    memory, see ``_chunks.cluster_memory_bytes``)."""
    from dask.utils import parse_bytes

    if memory_limit == "auto":
        return 0
    return int(parse_bytes(memory_limit) if isinstance(memory_limit, str) else memory_limit)


def _local_cluster(cluster_config):
    from distributed import LocalCluster

    memory_limit = cluster_config.memory_limit
    if not cluster_config.processes:
        memory_limit = _process_memory_limit(memory_limit)
    kwargs = dict(n_workers=cluster_config.n_workers,
                  threads_per_worker=cluster_config.threads_per_worker,
                  memory_limit=memory_limit, processes=cluster_config.processes,
                  dashboard_address=":0")
    if cluster_config.local_directory:
        kwargs["local_directory"] = cluster_config.local_directory
    cluster = LocalCluster(**kwargs)
    if not cluster_config.processes:
        for worker in cluster.workers.values():
            # A worker thread that pauses frees nothing that the process's other threads
            # hold (the run's own client among them): it would wait for memory only the
            # run can release. With a limit, the workers spill, but never pause.
            worker.memory_manager.memory_pause_fraction = False
    return cluster


def prestart(cluster_config):
    """Start the embedded LocalCluster in the background, so that its worker processes
    come up while the run checks its output and reads the input's footers; the next
    :func:`connect` with this config takes it. Nothing for a cluster reached by address.
    """
    if cluster_config.address or os.environ.get("DASK_SCHEDULER_ADDRESS"):
        return
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    if _key(cluster_config) not in _STARTING:
        from concurrent.futures import ThreadPoolExecutor

        executor = ThreadPoolExecutor(1, thread_name_prefix="mixlake-cluster")
        _STARTING[_key(cluster_config)] = executor.submit(_local_cluster, cluster_config)
        executor.shutdown(wait=False)


def discard_prestarted():
    """Close a cluster started ahead of a run that ended before it needed it."""
    for future in list(_STARTING.values()):
        _STARTING.clear()
        try:
            future.result().close()
        except Exception as exc:  # noqa: BLE001 - it failed to start: nothing to close
            logger.debug("a cluster started ahead failed: %s", exc)


@contextlib.contextmanager
def connect(cluster_config):
    """Yield a Client for ``cluster_config`` (a :class:`pipeline.config.Cluster`)."""
    os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    from distributed import Client

    address = cluster_config.address or os.environ.get("DASK_SCHEDULER_ADDRESS")
    if address:
        try:
            client = Client(address, timeout=cluster_config.connect_timeout,
                            set_as_default=True)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(
                f"cluster.address: cannot reach the Dask scheduler at {address} within "
                f"{cluster_config.connect_timeout:g} s ({exc}); check the address or raise "
                "cluster.connect_timeout") from None
        logger.info("connected to the Dask scheduler at %s (%d workers)", address,
                    len(client.scheduler_info(n_workers=-1)["workers"]))
        try:
            yield client
        finally:
            client.close()
        return
    starting = _STARTING.pop(_key(cluster_config), None)
    cluster = starting.result() if starting is not None else _local_cluster(cluster_config)
    with cluster, Client(cluster, set_as_default=True) as client, _one_blas_thread(
            cluster_config):
        logger.info("started a LocalCluster: %d %s x %d threads", cluster_config.n_workers,
                    "worker processes" if cluster_config.processes else "workers (threads)",
                    cluster_config.threads_per_worker)
        yield client


@contextlib.contextmanager
def _one_blas_thread(cluster_config):
    """One BLAS thread per call while worker threads share this process, as dask's nanny
    sets it for worker processes: a multi-threaded BLAS call competing with the other
    workers for the cores runs many times slower."""
    if cluster_config.processes:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
